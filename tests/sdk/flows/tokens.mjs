// Access tokens (ES256 JWTs checked against the project's JWKS), refresh, sessions.
import * as jose from "jose";
import { PASSWORD, check, eq, expectOk } from "../lib/ctx.mjs";

export const flows = [
  {
    name: "client.access-token-claims",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("jwt");
      const user = await ctx.signUp(app, email);
      const auth = await app.getAuthJson();
      check(auth.accessToken && auth.refreshToken, "getAuthJson() lacks a token");
      eq(await app.getAccessToken(), auth.accessToken, "getAccessToken() vs getAuthJson().accessToken");
      const { header, payload } = await ctx.verify(auth.accessToken);
      eq(header.alg, "ES256", "JWT alg");
      check(header.kid, "JWT header has no kid");
      // The SDK's own parser of the payload (AccessToken.createIfValid) uses this schema.
      await ctx.loaded.schemaFields.accessTokenPayloadSchema.validate(payload, { strict: true });
      const { projectId } = ctx.env;
      eq(payload.sub, user.id, "sub");
      eq(payload.aud, projectId, "aud");
      eq(payload.project_id, projectId, "project_id");
      check(String(payload.iss).endsWith(`/api/v1/projects/${projectId}`), `iss ${payload.iss} is not <api>/api/v1/projects/${projectId}`);
      eq(payload.branch_id, "main", "branch_id");
      eq(payload.role, "authenticated", "role");
      eq(payload.email, email, "email");
      eq(payload.email_verified, false, "email_verified");
      eq(payload.name, null, "name");
      eq(payload.selected_team_id, user.selectedTeam?.id ?? null, "selected_team_id vs user.selectedTeam");
      eq(payload.signed_up_at, Math.floor(user.signedUpAt.getTime() / 1000), "signed_up_at");
      eq(payload.is_anonymous, false, "is_anonymous");
      eq(payload.is_restricted, false, "is_restricted");
      eq(payload.restricted_reason, null, "restricted_reason");
      eq(payload.requires_totp_mfa, false, "requires_totp_mfa");
      check(typeof payload.refresh_token_id === "string" && payload.refresh_token_id, "refresh_token_id is empty");
      const now = Date.now() / 1000;
      check(Math.abs(payload.iat - now) < 60, `iat is ${Math.round(payload.iat - now)} s away from the host clock`);
      check(payload.exp - payload.iat >= 60, `access tokens live ${payload.exp - payload.iat} s; the SDK needs well over 20 s`);
    },
  },
  {
    name: "client.token-refresh",
    async run(ctx) {
      const user = await ctx.signUp(ctx.clientApp(), ctx.email("refresh"));
      const { accessToken, refreshToken } = await user.getAuthJson();
      const original = (await ctx.verify(accessToken)).payload;
      // An app that only kept the refresh token: the SDK must get an access token itself.
      const app = ctx.clientApp({ tokenStore: { accessToken: null, refreshToken } });
      const again = await app.getUser({ or: "throw" });
      eq(again.id, user.id, "user after refresh");
      const refreshes = ctx.calls(/^POST \/auth\/oauth\/token/);
      check(refreshes.length > 0, "the SDK never called POST /api/v1/auth/oauth/token");
      eq(refreshes.at(-1).status, 200, "status of POST /auth/oauth/token");
      const fresh = (await ctx.verify(await again.getAccessToken())).payload;
      eq(fresh.sub, user.id, "sub of the refreshed token");
      eq(fresh.refresh_token_id, original.refresh_token_id, "refresh_token_id of the refreshed token");
      check(fresh.iat >= original.iat, "refreshed token is older than the original");
    },
  },
  {
    name: "client.token-refresh-after-profile-change",
    async run(ctx) {
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, ctx.email("refresh2"));
      const before = await user.getAccessToken();
      await user.update({ displayName: "Grace Hopper" });
      const after = await user.getAccessToken();
      check(after !== before, "access token unchanged after update(); the SDK marks it stale and refreshes");
      eq((await ctx.verify(after)).payload.name, "Grace Hopper", "name claim after update()");
    },
  },
  {
    name: "client.foreign-access-token-is-refreshed",
    async run(ctx) {
      const user = await ctx.signUp(ctx.clientApp(), ctx.email("foreign"));
      const { accessToken, refreshToken } = await user.getAuthJson();
      // Same claims, signed by a key the backend does not know: it must answer with an
      // INVALID_ACCESS_TOKEN known error, so the SDK refreshes instead of failing.
      const { privateKey } = await jose.generateKeyPair("ES256");
      const forged = await new jose.SignJWT(jose.decodeJwt(accessToken))
        .setProtectedHeader({ alg: "ES256", kid: "not-a-key-of-this-project" })
        .sign(privateKey);
      const app = ctx.clientApp({ tokenStore: { accessToken: forged, refreshToken } });
      const again = await app.getUser({ or: "throw" });
      eq(again.id, user.id, "user after the forged token was replaced");
      const rejected = ctx.calls(/^GET \/users\/me/).filter((c) => c.status === 401);
      check(rejected.length > 0, "the backend accepted an access token signed by a foreign key");
      check(ctx.calls(/^POST \/auth\/oauth\/token/).length > 0, "the SDK did not refresh after the rejection");
    },
  },
  {
    name: "client.sessions-list-and-revoke",
    async run(ctx) {
      const email = ctx.email("sessions");
      const appA = ctx.clientApp();
      const userA = await ctx.signUp(appA, email);
      const appB = ctx.clientApp();
      expectOk(await appB.signInWithCredential({ email, password: PASSWORD, noRedirect: true }), "second sign-in");
      const authB = await appB.getAuthJson();
      const idA = (await ctx.verify(await appA.getAccessToken())).payload.refresh_token_id;
      const idB = (await ctx.verify(authB.accessToken)).payload.refresh_token_id;
      const sessions = await userA.getActiveSessions();
      const ids = sessions.map((s) => s.id);
      check(ids.includes(idA) && ids.includes(idB), `sessions ${ids} do not include both refresh_token_ids ${idA}, ${idB}`);
      const current = sessions.filter((s) => s.isCurrentSession).map((s) => s.id);
      eq(current, [idA], "sessions marked isCurrentSession");
      for (const s of sessions) {
        eq(s.userId, userA.id, "session userId");
        check(s.createdAt instanceof Date && !Number.isNaN(s.createdAt.getTime()), "session createdAt is not a date");
        eq(s.isImpersonation, false, "session isImpersonation");
      }
      await userA.revokeSession(idB);
      const left = (await userA.getActiveSessions()).map((s) => s.id);
      check(!left.includes(idB) && left.includes(idA), `sessions after revoking ${idB}: ${left}`);
      const stale = ctx.clientApp({ tokenStore: { accessToken: null, refreshToken: authB.refreshToken } });
      eq(await stale.getUser(), null, "getUser() with the revoked session's refresh token");
    },
  },
  {
    name: "client.anonymous-user",
    async run(ctx) {
      const app = ctx.clientApp();
      const anon = await app.getUser({ or: "anonymous" });
      eq([anon.isAnonymous, anon.primaryEmail, anon.isRestricted], [true, null, true],
        "anonymous user [isAnonymous, primaryEmail, isRestricted]");
      eq(anon.restrictedReason, { type: "anonymous" }, "restrictedReason");
      eq(await app.getUser(), null, "getUser() without {or: 'anonymous'} for an anonymous session");
      const token = await anon.getAccessToken();
      const { payload } = await ctx.verify(token, { anonymous: true });
      eq([payload.sub, payload.is_anonymous, payload.aud], [anon.id, true, `${ctx.env.projectId}:anon`],
        "anonymous token [sub, is_anonymous, aud]");
      let plain = null;
      await ctx.verify(token).catch((err) => { plain = err; });
      check(plain, "an anonymous user's token verifies against the plain JWKS; apps would take it for a signed-up user");
      // Signing up from an anonymous session upgrades that user.
      const email = ctx.email("upgrade");
      const user = await ctx.signUp(app, email);
      eq([user.id, user.isAnonymous, user.primaryEmail], [anon.id, false, email], "upgraded user [id, isAnonymous, primaryEmail]");
      eq((await ctx.verify(await user.getAccessToken())).payload.is_anonymous, false, "is_anonymous claim after upgrade");
    },
  },
];
