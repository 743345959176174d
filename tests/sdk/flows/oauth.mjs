// OAuth sign-in through the emulator's mock provider (authorization code + PKCE), account
// linking by email, linking a provider to a signed-in user, connected accounts and their
// access tokens, OAuth providers of a user.
//
// signInWithOAuth() and callOAuthCallback() of the app need a browser (window.location and
// cookies); in Node a test does what they do: the SDK's client interface builds the authorize
// URL (getOAuthUrl) and finishes the flow (callOAuthCallback), and fetch() plays the browser,
// following each redirect by hand and filling in the mock provider's sign-in form.
import { createHash, randomBytes } from "node:crypto";
import { CALLBACK, PASSWORD, check, eq, expectKnownError, expectOk, rejects } from "../lib/ctx.mjs";

const REDIRECT = `${CALLBACK}/oauth-callback`;

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

/** The authorize URL the SDK builds for `app` (with its session's token, if signed in). */
async function authorizeUrl(app, { provider = "github", type = "authenticate", redirectUrl = REDIRECT, ...extra } = {}) {
  const { verifier, challenge } = pkce();
  const state = randomBytes(16).toString("base64url");
  const url = await app._interface.getOAuthUrl({
    provider, redirectUrl, errorRedirectUrl: `${CALLBACK}/error`, codeChallenge: challenge, state, type,
    session: await app._getSession(), ...extra,
  });
  return { url: new URL(url), verifier, state, redirectUrl };
}

/** What the SDK's authorizeOAuth does in a browser: the JSON response mode, then the location. */
async function startFlow(app, options) {
  const flow = await authorizeUrl(app, options);
  flow.url.searchParams.set("stack_response_mode", "json");
  flow.url.searchParams.set("hexclave_response_mode", "json");
  const res = await fetch(flow.url);
  const body = await res.json();
  check(res.status === 200 && typeof body.location === "string",
    `authorize (JSON mode) answered ${res.status} ${JSON.stringify(body)}`);
  return { ...flow, location: new URL(body.location) };
}

const unescapeHtml = (s) => s.replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&lt;/g, "<")
  .replace(/&gt;/g, ">").replace(/&amp;/g, "&");

/** A form of the mock provider's page: its action URL and its hidden fields. */
function pageForm(html, pageUrl, selector) {
  const form = html.match(new RegExp(`<form ${selector}[^>]*action="([^"]*)"[^>]*>([\\s\\S]*?)</form>`));
  check(form, `the mock provider's page has no form ${selector}: ${html.slice(0, 300)}`);
  const fields = new URLSearchParams();
  for (const [, name, value] of form[2].matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    fields.set(unescapeHtml(name), unescapeHtml(value));
  }
  return { action: new URL(unescapeHtml(form[1]), pageUrl), fields };
}

/** At the mock provider: open the sign-in page, type an identity (or cancel); where it sends the browser. */
async function atMockProvider(location, { email, name, cancel = false }) {
  const page = await fetch(location);
  eq(page.status, 200, "status of the mock provider's sign-in page");
  const { action, fields } = pageForm(await page.text(), location, cancel ? 'id="cancel"' : 'id="sign-in"');
  if (!cancel) {
    fields.set("email", email);
    if (name) fields.set("name", name);
  }
  const res = await fetch(action, { method: "POST", body: fields, redirect: "manual" });
  eq(res.status, 302, "status of the mock provider's sign-in");
  return new URL(res.headers.get("location"));
}

/** The backend's callback: where it sends the browser (status and URL). */
async function callback(url, headers = {}) {
  const res = await fetch(url, { redirect: "manual", headers });
  const location = res.headers.get("location");
  check(location, `the callback answered ${res.status} without a redirect: ${await res.text()}`);
  return { status: res.status, url: new URL(location) };
}

/** A whole sign-in (or link) through the mock provider; the SDK's callOAuthCallback result. */
async function oauthFlow(app, identity, options) {
  const flow = await startFlow(app, options);
  const back = await callback(await atMockProvider(flow.location, identity));
  eq(back.status, 303, `callback status (landed on ${back.url})`);
  check(back.url.href.startsWith(`${flow.redirectUrl}?`), `callback sent the browser to ${back.url}, not ${flow.redirectUrl}`);
  eq(back.url.searchParams.get("state"), flow.state, "state on the redirect URL");
  return await app._interface.callOAuthCallback({
    oauthParams: back.url.searchParams, redirectUri: flow.redirectUrl, codeVerifier: flow.verifier, state: flow.state,
  });
}

/** Signs in through the mock provider; a fresh app holding the new session, and the callback result. */
async function oauthSignIn(ctx, identity, options) {
  const result = await oauthFlow(ctx.clientApp(), identity, options);
  const app = ctx.clientApp({ tokenStore: { accessToken: result.accessToken, refreshToken: result.refreshToken } });
  return { app, user: await app.getUser({ or: "throw" }), result };
}

/** A flow that must end on the app's redirect URL with a known error; that error, rebuilt by stack-shared. */
async function expectErrorRedirect(ctx, back, code, what) {
  eq(back.status, 307, `${what}: callback status`);
  const params = back.url.searchParams;
  eq(params.get("errorCode"), code, `${what}: errorCode on ${back.url}`);
  eq(params.get("error"), "server_error", `${what}: error`);
  const error = ctx.loaded.knownErrors.KnownError.fromJson({
    code, message: params.get("message"), details: JSON.parse(params.get("details")),
  });
  return expectKnownError(error, code, what);
}

const identity = (ctx, what) => ({ email: ctx.email(what), name: "Ada Lovelace" });

export const flows = [
  {
    name: "oauth.sign-up-then-sign-in",
    async run(ctx) {
      const who = identity(ctx, "oauth");
      const { user, result, app } = await oauthSignIn(ctx, who);
      eq(result.newUser, true, "newUser of the first sign-in");
      eq(user.primaryEmail, who.email, "primaryEmail");
      eq(user.primaryEmailVerified, true, "primaryEmailVerified (the provider vouches for it)");
      eq(user.displayName, who.name, "displayName (the provider's name)");
      eq(user.hasPassword, false, "hasPassword");
      eq(user.oauthProviders.length, 1, "oauthProviders");
      eq(user.oauthProviders[0].id, "github", "oauthProviders[0].id");
      eq(user.oauthProviders[0].email, who.email, "oauthProviders[0].email");
      check(user.oauthProviders[0].account_id, "oauthProviders[0] has no account_id");
      const { payload } = await ctx.verify(await user.getAccessToken());
      eq([payload.sub, payload.email, payload.email_verified], [user.id, who.email, true], "access token claims");
      const providers = await user.listOAuthProviders();
      eq(providers.map((p) => [p.type, p.email, p.allowSignIn, p.allowConnectedAccounts]),
        [["github", who.email, true, true]], "listOAuthProviders()");
      eq((await user.getOAuthProvider(providers[0].id))?.id, providers[0].id, "getOAuthProvider(id)");

      const again = await oauthSignIn(ctx, { email: who.email });
      eq(again.result.newUser, false, "newUser of the second sign-in");
      eq(again.user.id, user.id, "the second sign-in's user");
      eq((await again.user.getActiveSessions()).length, 2, "sessions after signing in twice");
      // The app's own refresh of the session works as for any other sign-in.
      const refreshed = ctx.clientApp({ tokenStore: { accessToken: null, refreshToken: (await app.getAuthJson()).refreshToken } });
      eq((await refreshed.getUser({ or: "throw" })).id, user.id, "user after refreshing the OAuth session");
    },
  },
  {
    name: "oauth.links-existing-verified-email",
    async run(ctx) {
      const email = ctx.email("oauthlink");
      const existing = await ctx.signUp(ctx.clientApp(), email);
      await (await ctx.serverApp().getUser(existing.id)).update({ primaryEmailVerified: true });
      const { user, result } = await oauthSignIn(ctx, { email }, { provider: "google" });
      eq(result.newUser, false, "newUser when linking by email");
      eq(user.id, existing.id, "the user with that verified email");
      eq(user.hasPassword, true, "hasPassword (still the password user)");
      eq(user.oauthProviders.map((p) => [p.id, p.email]), [["google", email]], "oauthProviders after linking");
      expectOk(await ctx.clientApp().signInWithCredential({ email, password: PASSWORD, noRedirect: true }),
        "password sign-in after linking");
    },
  },
  {
    name: "oauth.unverified-email-is-not-linked",
    async run(ctx) {
      const email = ctx.email("oauthunv");
      await ctx.signUp(ctx.clientApp(), email);
      const flow = await startFlow(ctx.clientApp());
      const back = await callback(await atMockProvider(flow.location, { email }));
      const error = await expectErrorRedirect(ctx, back, "CONTACT_CHANNEL_ALREADY_USED_FOR_AUTH_BY_SOMEONE_ELSE",
        "OAuth sign-in with the unverified email of another user");
      eq(error.details?.would_work_if_email_was_verified, true, "details.would_work_if_email_was_verified");
      eq(back.url.searchParams.get("state"), null, "state on an error redirect");
    },
  },
  {
    name: "oauth.anonymous-user-upgrade",
    async run(ctx) {
      const app = ctx.clientApp();
      const anonymous = await app.getUser({ or: "anonymous" });
      eq(anonymous.isAnonymous, true, "isAnonymous before");
      const email = ctx.email("oauthanon");
      const result = await oauthFlow(app, { email });
      eq(result.newUser, true, "newUser when an anonymous user signs up");
      const upgraded = await ctx.clientApp({ tokenStore: { accessToken: result.accessToken, refreshToken: result.refreshToken } })
        .getUser({ or: "throw" });
      eq([upgraded.id, upgraded.isAnonymous, upgraded.primaryEmail], [anonymous.id, false, email], "the upgraded user");
    },
  },
  {
    name: "oauth.connected-account-access-token",
    async run(ctx) {
      const who = identity(ctx, "oauthca");
      const { user } = await oauthSignIn(ctx, who);
      const accounts = await user.listConnectedAccounts();
      eq(accounts.map((a) => a.provider), ["github"], "listConnectedAccounts()");
      eq(accounts[0].providerAccountId, user.oauthProviders[0].account_id, "providerAccountId");
      const token = expectOk(await accounts[0].getAccessToken(), "connected account getAccessToken()");
      check(typeof token.accessToken === "string" && token.accessToken, "no access token");
      // The token is the provider's: its userinfo endpoint knows the user.
      const mock = new URL("/me", (await startFlow(ctx.clientApp())).location);
      const me = await (await fetch(mock, { headers: { authorization: `Bearer ${token.accessToken}` } })).json();
      eq([me.email, me.name], [who.email, who.name], "the provider's userinfo for the token");
      // The older API: getConnectedAccount(providerId).
      const legacy = await user.getConnectedAccount("github");
      check(legacy, "getConnectedAccount('github') returned null");
      check(await legacy.getAccessToken(), "getConnectedAccount('github').getAccessToken() is empty");
      eq(await user.getConnectedAccount("github", { scopes: ["repo"] }), null,
        "getConnectedAccount with a scope the sign-in did not ask for");
      eq(await user.getConnectedAccount("google"), null, "getConnectedAccount of a provider not connected");
      // The same from the server.
      const serverUser = await ctx.serverApp().getUser(user.id);
      const serverAccounts = await serverUser.listConnectedAccounts();
      eq(serverAccounts.map((a) => [a.provider, a.providerAccountId]), [["github", accounts[0].providerAccountId]],
        "server listConnectedAccounts()");
      expectOk(await serverAccounts[0].getAccessToken(), "server connected account getAccessToken()");
    },
  },
  {
    name: "oauth.link-provider-to-signed-in-user",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("oauthme");
      const me = await ctx.signUp(app, email);
      const github = { email: ctx.email("oauthgh") };
      const result = await oauthFlow(app, github, { type: "link" });
      eq(result.newUser, false, "newUser of a link");
      const linked = await ctx.clientApp({ tokenStore: { accessToken: result.accessToken, refreshToken: result.refreshToken } })
        .getUser({ or: "throw" });
      eq(linked.id, me.id, "the user after linking");
      eq(linked.primaryEmail, email, "primaryEmail (a link does not change it)");
      eq(linked.oauthProviders.map((p) => [p.id, p.email]), [["github", github.email]], "oauthProviders after linking");
      eq((await linked.listConnectedAccounts()).map((a) => a.provider), ["github"], "connected accounts after linking");
      // That GitHub account now signs in as this user...
      eq((await oauthSignIn(ctx, github)).user.id, me.id, "signing in with the linked account");
      // ...and cannot be linked to someone else.
      const other = ctx.clientApp();
      await ctx.signUp(other, ctx.email("oauthother"));
      const flow = await startFlow(other, { type: "link" });
      const back = await callback(await atMockProvider(flow.location, github));
      await expectErrorRedirect(ctx, back, "OAUTH_CONNECTION_ALREADY_CONNECTED_TO_ANOTHER_USER", "linking a taken account");
    },
  },
  {
    name: "oauth.redirect-mode-and-its-cookie",
    async run(ctx) {
      const app = ctx.clientApp();
      // Without stack_response_mode=json the backend redirects (307) and sets a cookie the
      // callback checks, as for a browser that opens the authorize URL itself.
      const start = async () => {
        const flow = await authorizeUrl(app);
        const res = await fetch(flow.url, { redirect: "manual" });
        eq(res.status, 307, "authorize status in redirect mode");
        const cookie = res.headers.get("set-cookie")?.split(";")[0];
        check(cookie?.startsWith("stack-oauth-inner-"), `authorize set no stack-oauth-inner- cookie: ${cookie}`);
        return { flow, cookie, next: await atMockProvider(new URL(res.headers.get("location")), { email: ctx.email("oauthrm") }) };
      };
      const withCookie = await start();
      const back = await callback(withCookie.next, { cookie: withCookie.cookie });
      eq(back.status, 303, "callback status with the cookie");
      const result = await app._interface.callOAuthCallback({
        oauthParams: back.url.searchParams, redirectUri: withCookie.flow.redirectUrl,
        codeVerifier: withCookie.flow.verifier, state: withCookie.flow.state,
      });
      eq(result.newUser, true, "newUser");
      const without = await start();
      const res = await fetch(without.next, { redirect: "manual" });
      eq(res.status, 400, "callback status without the cookie");
      check(/cookie/i.test(await res.text()), "the error does not name the missing cookie");
    },
  },
  {
    name: "oauth.errors",
    async run(ctx) {
      const app = ctx.clientApp();
      const answer = async (url) => {
        const res = await fetch(url, { redirect: "manual" });
        return [res.status, res.headers.get("x-stack-known-error")];
      };
      const flow = await authorizeUrl(app, { provider: "gitlab" });
      eq(await answer(flow.url), [400, "OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED"], "a provider the project does not enable");
      const foreign = await authorizeUrl(app, { redirectUrl: "https://evil.example.com/oauth-callback" });
      eq(await answer(foreign.url), [400, "REDIRECT_URL_NOT_WHITELISTED"], "a redirect URL the project does not trust");
      const badKey = await authorizeUrl(app);
      badKey.url.searchParams.set("client_secret", "f".repeat(64));
      eq(await answer(badKey.url), [401, "INVALID_PUBLISHABLE_CLIENT_KEY"], "a wrong publishable key");
      const noState = await authorizeUrl(app);
      noState.url.searchParams.delete("state");
      eq(await answer(noState.url), [400, "SCHEMA_ERROR"], "an authorize URL without state");

      // The user cancels at the provider: the app gets OAUTH_PROVIDER_ACCESS_DENIED.
      const cancelled = await startFlow(app);
      const back = await callback(await atMockProvider(cancelled.location, { cancel: true }));
      await expectErrorRedirect(ctx, back, "OAUTH_PROVIDER_ACCESS_DENIED", "cancelling at the provider");

      // A wrong code verifier, then a code used twice.
      const started = await startFlow(app);
      const landed = await callback(await atMockProvider(started.location, { email: ctx.email("oautherr") }));
      const finish = (codeVerifier) => app._interface.callOAuthCallback({
        oauthParams: landed.url.searchParams, redirectUri: started.redirectUrl, codeVerifier, state: started.state,
      });
      await rejects(finish(pkce().verifier), "callOAuthCallback with another code verifier");
      eq(ctx.calls(/^POST \/auth\/oauth\/token/).at(-1)?.status, 400, "token status with a wrong verifier");
      check(/INVALID_AUTHORIZATION_CODE/.test(ctx.calls(/^POST \/auth\/oauth\/token/).at(-1)?.body ?? ""),
        "a wrong verifier is not INVALID_AUTHORIZATION_CODE");
      const ok = await finish(started.verifier);
      check(ok.accessToken && ok.refreshToken, "no tokens with the right verifier");
      await rejects(finish(started.verifier), "callOAuthCallback with a code already used");
      check(/INVALID_AUTHORIZATION_CODE/.test(ctx.calls(/^POST \/auth\/oauth\/token/).at(-1)?.body ?? ""),
        "a used code is not INVALID_AUTHORIZATION_CODE");
    },
  },
  {
    name: "server.oauth-providers",
    async run(ctx) {
      const server = ctx.serverApp();
      const first = await server.createUser({ primaryEmail: ctx.email("oap1") });
      const second = await server.createUser({ primaryEmail: ctx.email("oap2") });
      const accountId = `acct-${randomBytes(6).toString("hex")}`;
      const create = (user, allowSignIn) => server.createOAuthProvider({
        userId: user.id, providerConfigId: "github", accountId, email: `${accountId}@example.com`,
        allowSignIn, allowConnectedAccounts: true,
      });
      const created = expectOk(await create(first, true), "createOAuthProvider");
      eq([created.type, created.accountId, created.allowSignIn], ["github", accountId, true], "the created provider");
      expectKnownError(await create(second, true), "OAUTH_PROVIDER_ACCOUNT_ID_ALREADY_USED_FOR_SIGN_IN",
        "the same account for sign-in of a second user");
      expectOk(await create(second, false), "the same account, without sign-in, for a second user");
      const listed = await (await server.getUser(first.id)).listOAuthProviders();
      eq(listed.map((p) => [p.id, p.accountId]), [[created.id, accountId]], "listOAuthProviders()");
      expectOk(await listed[0].update({ allowSignIn: false }), "update({allowSignIn: false})");
      const provider = await (await server.getUser(second.id)).getOAuthProvider(
        (await (await server.getUser(second.id)).listOAuthProviders())[0].id);
      expectOk(await provider.update({ allowSignIn: true }), "the second user's account may sign in now");
      eq((await server.getUser(first.id)).oauthProviders.map((p) => p.account_id), [accountId], "user.oauthProviders");
      await provider.delete();
      eq(await (await server.getUser(second.id)).listOAuthProviders(), [], "providers after delete()");
    },
  },
];
