// The emulator's out-of-band codes (like the Firebase Auth emulator's oobCodes): an app's
// end-to-end test triggers a mail with the SDK, then reads its code and link from
// GET <mail catcher>/api/v1/stack-emulator/messages?to=<address>&kind=<kind> instead of
// parsing the mail, and finishes the flow with the SDK.
import { CALLBACK, check, eq, expectOk } from "../lib/ctx.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** GET the route; returns {status, body}. */
async function oob(ctx, query) {
  const res = await fetch(`${ctx.env.inbucketUrl}/api/v1/stack-emulator/messages?${new URLSearchParams(query)}`);
  return { status: res.status, body: await res.json() };
}

/** The newest mail of `kind` to `to`, waiting for it as a test helper would. */
async function waitForMail(ctx, to, kind, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await oob(ctx, { to, kind });
    check(status === 200, `out-of-band route answered ${status}: ${JSON.stringify(body)}`);
    if (body.length) return body[0];
    if (Date.now() > deadline) throw new Error(`no ${kind} mail to ${to} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

export const flows = [
  {
    name: "mail-codes.verify-and-reset",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("oob");
      await ctx.signUp(app, email);
      const verification = await waitForMail(ctx, email, "verification");
      eq(verification.to, [email], "verification mail recipients");
      eq(verification.project_id, ctx.env.projectId, "verification mail project_id");
      eq(verification.code.length, 45, "length of the verification code");
      eq(verification.link, `${CALLBACK}/email-verification?code=${verification.code}`, "verification link");
      expectOk(await app.verifyEmail(verification.code), "verifyEmail(code from the out-of-band route)");
      eq((await app.getUser({ or: "throw" })).primaryEmailVerified, true, "primaryEmailVerified");

      expectOk(await app.sendForgotPasswordEmail(email, { callbackUrl: `${CALLBACK}/password-reset` }),
        "sendForgotPasswordEmail");
      const reset = await waitForMail(ctx, email, "reset");
      check(reset.link.startsWith(`${CALLBACK}/password-reset?`), `reset link ${reset.link}`);
      check(reset.text.includes(reset.link), "the reset mail's text carries the link the route reports");
      expectOk(await app.resetPassword({ code: reset.code, password: "oob-reset-password-2" }), "resetPassword");
      expectOk(await ctx.clientApp().signInWithCredential({ email, password: "oob-reset-password-2", noRedirect: true }),
        "sign-in with the new password");

      const { body: all } = await oob(ctx, { to: email });
      eq(all.map((m) => m.kind), ["reset", "verification"], "kinds of the mails to the address, newest first");
      check(Date.parse(all[0].received_at) >= Date.parse(all[1].received_at), "received_at is newest first");
      eq((await oob(ctx, { to: email, kind: "otp" })).body, [], "otp mails to an address that got none");
      eq((await oob(ctx, { to: ctx.email("nobody") })).body, [], "mails to an address that got none");
    },
  },
  {
    name: "mail-codes.otp",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("oobotp");
      const { nonce } = expectOk(await app.sendMagicLinkEmail(email, { callbackUrl: `${CALLBACK}/magic-link-callback` }),
        "sendMagicLinkEmail");
      const mail = await waitForMail(ctx, email, "otp");
      check(/^[0-9A-Z]{6}$/.test(mail.code), `the otp mail's code ${mail.code} is not 6 upper-case characters`);
      check(mail.subject.includes(mail.code), `subject ${JSON.stringify(mail.subject)} does not show the code`);
      eq(mail.link, `${CALLBACK}/magic-link-callback?code=${mail.code.toLowerCase()}${nonce}`, "magic link");
      // What a sign-in form does: the password as typed followed by the nonce of the send call.
      expectOk(await app.signInWithMagicLink(mail.code + nonce, { noRedirect: true }), "signInWithMagicLink(otp + nonce)");
      eq((await app.getUser({ or: "throw" })).primaryEmail, email, "primaryEmail of the user signed in by otp");
    },
  },
  {
    name: "mail-codes.bad-queries",
    async run(ctx) {
      let r = await oob(ctx, { kind: "magic" });
      eq([r.status, r.body.code], [400, "SCHEMA_ERROR"], "kind=magic");
      check(r.body.error.includes("verification, reset, otp, invitation, other"), `kind error: ${r.body.error}`);
      r = await oob(ctx, { to: "two words" });
      eq([r.status, r.body.code], [400, "INVALID_MAILBOX"], "to=two words");
      r = await oob(ctx, { limit: "0" });
      eq([r.status, r.body.code], [400, "SCHEMA_ERROR"], "limit=0");
    },
  },
];
