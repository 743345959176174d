// One-time passwords and magic links (sign-in by mail), and user and team API keys.
import { randomBytes } from "node:crypto";
import { CALLBACK, PASSWORD, check, eq, expectKnownError, expectOk, rejects } from "../lib/ctx.mjs";
import { codeFromMessage } from "../lib/mail.mjs";

const MAGIC_LINK_CALLBACK = `${CALLBACK}/magic-link-callback`;
const SUBJECT = /^Sign in to .*: Your code is ([0-9A-Z]{6})$/;
const HOUR = 60 * 60 * 1000;

/** Sends the sign-in mail and returns {nonce, code (of the link), link, otp (the 6 characters)}. */
async function sendSignInMail(ctx, app, email) {
  const skip = await ctx.mail.ids(email);
  const { nonce } = expectOk(await app.sendMagicLinkEmail(email, { callbackUrl: MAGIC_LINK_CALLBACK }),
    "sendMagicLinkEmail");
  check(typeof nonce === "string" && nonce.length === 39, `nonce ${nonce} is not the 39 characters after the password`);
  const message = await ctx.mail.waitFor(email, { subject: SUBJECT, skip });
  const otp = SUBJECT.exec(message.subject)[1];
  const { code, link } = codeFromMessage(message);
  check(link.startsWith(`${MAGIC_LINK_CALLBACK}?code=`), `magic link ${link} does not use the callback URL`);
  eq(code.slice(6), nonce, "the link's code after its first 6 characters (the nonce)");
  eq(code.slice(0, 6).toUpperCase(), otp, "the password in the subject (the link's code, upper case)");
  return { nonce, code, link, otp };
}

function expectVerificationCodeError(ctx, result, code, what) {
  check(result?.status === "error", `${what}: succeeded, expected ${code}`);
  expectKnownError(result, code, what);
  check(ctx.loaded.knownErrors.KnownErrors.VerificationCodeError.isInstance(result.error),
    `${what}: ${code} is not a VerificationCodeError`);
}

/** Sets project config flags (admin) for the length of fn, then puts the old values back. */
async function withConfig(ctx, config, fn) {
  const project = await ctx.adminApp().getProject();
  const before = Object.fromEntries(Object.keys(config).map((k) => [k, project.config[k]]));
  await project.update({ config });
  try {
    return await fn();
  } finally {
    await (await ctx.adminApp().getProject()).update({ config: before });
  }
}

/** The status and known-error code of the last call the SDK made to a path. */
function lastAnswer(ctx, pattern) {
  const call = ctx.calls(pattern).at(-1);
  check(call, `the SDK made no call matching ${pattern}`);
  let code = null;
  try {
    code = JSON.parse(call.body).code ?? null;
  } catch {
    // not JSON
  }
  return [call.status, code];
}

export const flows = [
  {
    name: "otp.magic-link-sign-up",
    async run(ctx) {
      // An app that sends new users to its onboarding page: the SDK redirects by is_new_user.
      const visited = [];
      const redirecting = (extra = {}) => ctx.clientApp({
        redirectMethod: { navigate: (url) => visited.push(url) },
        urls: { afterSignIn: "/after-sign-in", afterSignUp: "/after-sign-up" },
        ...extra,
      });
      const app = redirecting();
      const email = ctx.email("magic");
      const { code } = await sendSignInMail(ctx, app, email);
      expectOk(await app.signInWithMagicLink(code), "signInWithMagicLink(code from the link)");
      eq(visited, ["/after-sign-up"], "pages the SDK went to after a sign-up by magic link");
      const user = await app.getUser({ or: "throw" });
      eq([user.primaryEmail, user.primaryEmailVerified, user.otpAuthEnabled, user.hasPassword],
        [email, true, true, false], "new user [primaryEmail, primaryEmailVerified, otpAuthEnabled, hasPassword]");
      const { payload } = await ctx.verify(await user.getAccessToken());
      eq([payload.sub, payload.email, payload.email_verified], [user.id, email, true], "token [sub, email, email_verified]");
      const server = await ctx.serverApp().getUser(user.id);
      eq([server.primaryEmail, server.primaryEmailVerified, server.emailAuthEnabled], [email, true, true],
        "server view [primaryEmail, primaryEmailVerified, emailAuthEnabled]");
      expectVerificationCodeError(ctx, await ctx.clientApp().signInWithMagicLink(code, { noRedirect: true }),
        "VERIFICATION_CODE_ALREADY_USED", "signInWithMagicLink() with a used code");
      // The next mail signs in to the same account.
      const again = redirecting();
      const second = await sendSignInMail(ctx, again, email);
      expectOk(await again.signInWithMagicLink(second.code), "second signInWithMagicLink");
      eq(visited, ["/after-sign-up", "/after-sign-in"], "pages the SDK went to after a sign-in by magic link");
      eq((await again.getUser({ or: "throw" })).id, user.id, "user of the second magic link");
    },
  },
  {
    name: "otp.code-and-nonce",
    async run(ctx) {
      // An account that exists already (its address verified) signs in with the typed code.
      const email = ctx.email("otp");
      const created = await ctx.serverApp().createUser({
        primaryEmail: email, primaryEmailVerified: true, primaryEmailAuthEnabled: true, password: PASSWORD,
      });
      eq(created.otpAuthEnabled, false, "otpAuthEnabled before any code");
      const app = ctx.clientApp();
      const { nonce, otp } = await sendSignInMail(ctx, app, email);
      const wrong = otp === "000000" ? "111111" : "000000";
      expectVerificationCodeError(ctx, await app.signInWithMagicLink(wrong + nonce, { noRedirect: true }),
        "VERIFICATION_CODE_NOT_FOUND", "signInWithMagicLink(wrong password + nonce)");
      eq(await app.getUser(), null, "getUser() after a wrong password");
      // What a sign-in form does: the password as typed (upper case) followed by the nonce.
      expectOk(await app.signInWithMagicLink(otp + nonce, { noRedirect: true }), "signInWithMagicLink(password + nonce)");
      const user = await app.getUser({ or: "throw" });
      eq([user.id, user.hasPassword, user.otpAuthEnabled], [created.id, true, true],
        "signed-in user [id, hasPassword, otpAuthEnabled]");
      // The password still works, and the address signs in to the same account.
      expectOk(await ctx.clientApp().signInWithCredential({ email, password: PASSWORD, noRedirect: true }),
        "password sign-in after the OTP sign-in");
    },
  },
  {
    name: "otp.guessing-the-code",
    async run(ctx) {
      const email = ctx.email("guess");
      const app = ctx.clientApp();
      const { nonce, otp } = await sendSignInMail(ctx, app, email);
      // Every try counts against the code with this nonce: after 20, even the right one is refused.
      let tries = 0;
      for (let i = 0; tries < 20; i++) {
        const guess = String(i).padStart(6, "0");
        if (guess === otp) continue;
        const result = await app.signInWithMagicLink(guess + nonce, { noRedirect: true });
        check(result.status === "error", `guess ${guess} signed in`);
        tries++;
      }
      expectVerificationCodeError(ctx, await app.signInWithMagicLink(otp + nonce, { noRedirect: true }),
        "VERIFICATION_CODE_MAX_ATTEMPTS_REACHED", "the right password after 20 wrong ones");
      eq(await app.getUser(), null, "getUser() after the refused code");
    },
  },
  {
    name: "otp.anonymous-upgrade",
    async run(ctx) {
      const app = ctx.clientApp();
      const anon = await app.getUser({ or: "anonymous" });
      eq(anon.isAnonymous, true, "isAnonymous before the magic link");
      const email = ctx.email("anonotp");
      const { code } = await sendSignInMail(ctx, app, email);
      expectOk(await app.signInWithMagicLink(code, { noRedirect: true }), "signInWithMagicLink as an anonymous user");
      const user = await app.getUser({ or: "throw" });
      eq([user.id, user.isAnonymous, user.primaryEmail, user.primaryEmailVerified], [anon.id, false, email, true],
        "upgraded user [id, isAnonymous, primaryEmail, primaryEmailVerified]");
    },
  },
  {
    name: "otp.refusals",
    async run(ctx) {
      const app = ctx.clientApp();
      // A callback URL the project does not trust gets no mail.
      const stranger = ctx.email("stranger");
      expectKnownError(await app.sendMagicLinkEmail(stranger, { callbackUrl: "https://evil.example.com/cb" }),
        "REDIRECT_URL_NOT_WHITELISTED", "sendMagicLinkEmail(untrusted callback URL)");
      // A code cannot take over an account whose address was never verified.
      const unverified = ctx.email("unverified");
      await ctx.signUp(ctx.clientApp(), unverified);
      const taken = expectKnownError(await rejects(app.sendMagicLinkEmail(unverified, { callbackUrl: MAGIC_LINK_CALLBACK }),
        "sendMagicLinkEmail(unverified address of an account)"), "USER_EMAIL_ALREADY_EXISTS", "sendMagicLinkEmail(unverified)");
      eq(taken.details?.would_work_if_email_was_verified, true, "USER_EMAIL_ALREADY_EXISTS would_work_if_email_was_verified");
      // A made-up code of the right length.
      expectVerificationCodeError(ctx, await app.signInWithMagicLink("0".repeat(45), { noRedirect: true }),
        "VERIFICATION_CODE_NOT_FOUND", "signInWithMagicLink(made-up code)");
      // Without sign-up, only existing accounts get a code; without magic links, no one.
      await withConfig(ctx, { signUpEnabled: false }, async () => {
        expectKnownError(await rejects(app.sendMagicLinkEmail(ctx.email("nosignup"), { callbackUrl: MAGIC_LINK_CALLBACK }),
          "sendMagicLinkEmail with sign-up disabled"), "SIGN_UP_NOT_ENABLED", "sendMagicLinkEmail(new address, no sign-up)");
      });
      await withConfig(ctx, { magicLinkEnabled: false }, async () => {
        const err = await rejects(app.sendMagicLinkEmail(ctx.email("nomagic"), { callbackUrl: MAGIC_LINK_CALLBACK }),
          "sendMagicLinkEmail with magic links disabled");
        eq(lastAnswer(ctx, /send-sign-in-code/)[0], 403, `status with magic links disabled (${err.message})`);
      });
      eq(await ctx.mail.ids(stranger), [], "mails sent for the untrusted callback URL");
    },
  },
  {
    name: "api-keys.user",
    async run(ctx) {
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, ctx.email("keys"));
      const expiresAt = new Date(Date.now() + 24 * HOUR);
      const first = await user.createApiKey({ description: "CI token", expiresAt });
      check(typeof first.value === "string" && first.value.startsWith("sk_") && first.value.includes("574ck4u7h"),
        `first view value ${first.value} is not a secret key in Stack's format`);
      eq([first.description, first.type, first.userId, first.expiresAt?.getTime(), first.manuallyRevokedAt, first.isValid()],
        ["CI token", "user", user.id, expiresAt.getTime(), null, true], "created key [description, type, userId, expiresAt, revoked, valid]");
      const forever = await user.createApiKey({ description: "no expiry", expiresAt: null });
      eq(forever.expiresAt, undefined, "expiresAt of a key created with expiresAt: null");
      const listed = await user.listApiKeys();
      eq(listed.map((k) => k.id), [forever.id, first.id], "listApiKeys() ids, newest first");
      eq(listed[1].value, { lastFour: first.value.slice(-4) }, "listed value: only the last four characters");
      // The server resolves a key to its user (what an API route does with a key it is sent).
      const server = ctx.serverApp();
      eq((await server.getUser({ apiKey: first.value }))?.id, user.id, "server getUser({apiKey})");
      await listed[1].update({ description: "CI token (rotated)" });
      await listed[1].revoke();
      const after = (await user.listApiKeys()).find((k) => k.id === first.id);
      eq([after.description, after.isValid(), after.whyInvalid()], ["CI token (rotated)", false, "manually-revoked"],
        "revoked key [description, isValid, whyInvalid]");
      eq(await ctx.serverApp().getUser({ apiKey: first.value }), null, "server getUser({apiKey}) with a revoked key");
      eq(lastAnswer(ctx, /user-api-keys\/check/), [401, "API_KEY_REVOKED"], "check of a revoked key");
      eq(await ctx.serverApp().getUser({ apiKey: `sk_${randomBytes(20).toString("hex")}` }), null, "getUser({apiKey}) unknown");
      eq(lastAnswer(ctx, /user-api-keys\/check/), [404, "API_KEY_NOT_FOUND"], "check of an unknown key");
      // Another user sees none of these keys.
      const other = await ctx.signUp(ctx.clientApp(), ctx.email("keys2"));
      eq(await other.listApiKeys(), [], "another user's listApiKeys()");
    },
  },
  {
    name: "api-keys.team",
    async run(ctx) {
      const app = ctx.clientApp();
      const owner = await ctx.signUp(app, ctx.email("teamkeys"));
      const team = await owner.createTeam({ displayName: `Keys ${randomBytes(3).toString("hex")}` });
      const key = await team.createApiKey({ description: "deploy bot", expiresAt: null });
      eq([key.type, key.teamId, key.description], ["team", team.id, "deploy bot"], "team key [type, teamId, description]");
      eq((await team.listApiKeys()).map((k) => k.id), [key.id], "team.listApiKeys()");
      const server = ctx.serverApp();
      eq((await server.getTeam({ apiKey: key.value }))?.id, team.id, "server getTeam({apiKey})");
      // A user key is not a team key (and the other way round).
      eq(await ctx.serverApp().getUser({ apiKey: key.value }), null, "getUser({apiKey: a team key})");
      eq(lastAnswer(ctx, /user-api-keys\/check/), [400, "WRONG_API_KEY_TYPE"], "user check of a team key");
      // A plain member lacks $manage_api_keys: the team's keys do not exist for it.
      const memberApp = ctx.clientApp();
      const member = await ctx.signUp(memberApp, ctx.email("member"));
      await (await ctx.serverApp().getTeam(team.id)).addUser(member.id);
      const seen = await (await memberApp.getUser({ or: "throw" })).getTeam(team.id);
      check(seen, "the member does not see the team");
      expectKnownError(await rejects(seen.createApiKey({ description: "nope", expiresAt: null }), "member createApiKey"),
        "API_KEY_NOT_FOUND", "team.createApiKey() without $manage_api_keys");
      expectKnownError(await rejects(seen.listApiKeys(), "member listApiKeys"),
        "API_KEY_NOT_FOUND", "team.listApiKeys() without $manage_api_keys");
      // The server's view, and revoking from there.
      const serverKeys = await (await ctx.serverApp().getTeam(team.id)).listApiKeys();
      eq(serverKeys.map((k) => k.id), [key.id], "server team.listApiKeys()");
      await serverKeys[0].revoke();
      eq(await ctx.serverApp().getTeam({ apiKey: key.value }), null, "getTeam({apiKey}) after revoke()");
    },
  },
  {
    name: "api-keys.server-and-config",
    async run(ctx) {
      const server = ctx.serverApp();
      const user = await server.createUser({ primaryEmail: ctx.email("srvkeys") });
      const expired = await user.createApiKey({ description: "already expired", expiresAt: new Date(Date.now() - HOUR) });
      eq(expired.whyInvalid(), "expired", "whyInvalid() of a key created in the past");
      eq(await ctx.serverApp().getUser({ apiKey: expired.value }), null, "getUser({apiKey}) with an expired key");
      eq(lastAnswer(ctx, /user-api-keys\/check/), [401, "API_KEY_EXPIRED"], "check of an expired key");
      const live = await user.createApiKey({ description: "live", expiresAt: new Date(Date.now() + HOUR), isPublic: true });
      check(live.value.startsWith("pk_"), `a public key starts with pk_: ${live.value}`);
      eq((await ctx.serverApp().getUser({ apiKey: live.value }))?.id, user.id, "getUser({apiKey}) with a public key");
      eq((await (await ctx.serverApp().getUser(user.id)).listApiKeys()).map((k) => k.id).sort(),
        [expired.id, live.id].sort(), "server user.listApiKeys()");
      // With user API keys turned off, the routes refuse.
      await withConfig(ctx, { allowUserApiKeys: false }, async () => {
        await rejects(user.createApiKey({ description: "off", expiresAt: null }), "createApiKey with user keys disabled");
        eq(lastAnswer(ctx, /^POST \/user-api-keys/)[0], 400, "status of POST /user-api-keys with user keys disabled");
      });
      eq((await ctx.serverApp().getUser({ apiKey: live.value }))?.id, user.id, "getUser({apiKey}) once turned back on");
    },
  },
];
