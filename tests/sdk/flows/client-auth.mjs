// Password sign-up / sign-in / sign-out with StackClientApp, as a browser or Node app does it.
import { PASSWORD, check, eq, expectKnownError, expectOk } from "../lib/ctx.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const flows = [
  {
    name: "client.sign-up",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("signup");
      const before = Date.now();
      const user = await ctx.signUp(app, email);
      check(UUID.test(user.id), `user id ${user.id} is not a UUID`);
      eq(user.primaryEmail, email, "primaryEmail");
      eq(user.primaryEmailVerified, false, "primaryEmailVerified");
      eq(user.hasPassword, true, "hasPassword");
      eq(user.emailAuthEnabled, true, "emailAuthEnabled");
      eq(user.displayName, null, "displayName");
      eq(user.isAnonymous, false, "isAnonymous");
      eq(user.isRestricted, false, "isRestricted");
      eq(user.otpAuthEnabled, false, "otpAuthEnabled");
      eq(user.isMultiFactorRequired, false, "isMultiFactorRequired");
      eq(user.oauthProviders, [], "oauthProviders");
      check(user.signedUpAt instanceof Date && !Number.isNaN(user.signedUpAt.getTime()), "signedUpAt is not a date");
      const skew = Math.abs(user.signedUpAt.getTime() - before);
      check(skew < 120_000, `signedUpAt is ${skew} ms away from the host clock`);
    },
  },
  {
    name: "client.sign-in",
    async run(ctx) {
      const email = ctx.email("signin");
      const signedUp = await ctx.signUp(ctx.clientApp(), email);
      const app = ctx.clientApp();
      eq(await app.getUser(), null, "getUser() before sign-in");
      expectOk(await app.signInWithCredential({ email, password: PASSWORD, noRedirect: true }), "signInWithCredential");
      const user = await app.getUser({ or: "throw" });
      eq(user.id, signedUp.id, "signed-in user id");
      eq(user.primaryEmail, email, "primaryEmail");
    },
  },
  {
    name: "client.sign-in-wrong-password",
    async run(ctx) {
      const email = ctx.email("wrongpw");
      await ctx.signUp(ctx.clientApp(), email);
      const app = ctx.clientApp();
      const wrong = await app.signInWithCredential({ email, password: "not-the-password-1", noRedirect: true });
      expectKnownError(wrong, "EMAIL_PASSWORD_MISMATCH", "wrong password");
      const unknown = await app.signInWithCredential({ email: ctx.email("nobody"), password: PASSWORD, noRedirect: true });
      expectKnownError(unknown, "EMAIL_PASSWORD_MISMATCH", "unknown email");
      eq(await app.getUser(), null, "getUser() after failed sign-ins");
    },
  },
  {
    name: "client.sign-up-existing-email",
    async run(ctx) {
      const email = ctx.email("dup");
      await ctx.signUp(ctx.clientApp(), email);
      const again = await ctx.clientApp().signUpWithCredential({
        email, password: PASSWORD, noRedirect: true, noVerificationCallback: true,
      });
      expectKnownError(again, "USER_EMAIL_ALREADY_EXISTS", "second sign-up with the same email");
    },
  },
  {
    name: "client.sign-up-short-password",
    async run(ctx) {
      const result = await ctx.clientApp().signUpWithCredential({
        email: ctx.email("shortpw"), password: "short", noRedirect: true, noVerificationCallback: true,
      });
      expectKnownError(result, "PASSWORD_TOO_SHORT", "sign-up with a 5-character password");
    },
  },
  {
    name: "client.sign-out",
    async run(ctx) {
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, ctx.email("signout"));
      const { refreshToken } = await user.getAuthJson();
      check(refreshToken, "no refresh token before sign-out");
      await user.signOut();
      eq(await app.getUser(), null, "getUser() after signOut()");
      eq(await app.getAccessToken(), null, "getAccessToken() after signOut()");
      // The session is gone on the server too: its refresh token no longer works.
      const stale = ctx.clientApp({ tokenStore: { accessToken: null, refreshToken } });
      eq(await stale.getUser(), null, "getUser() with the signed-out refresh token");
    },
  },
  {
    name: "client.update-profile",
    async run(ctx) {
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, ctx.email("profile"));
      const metadata = { theme: "dark", n: 3, nested: { list: [1, "two", null] } };
      await user.update({ displayName: "Ada Lovelace", clientMetadata: metadata });
      const again = await app.getUser({ or: "throw" });
      eq(again.displayName, "Ada Lovelace", "displayName after update");
      eq(again.clientMetadata, metadata, "clientMetadata after update");
      const token = await again.getAccessToken();
      eq((await ctx.verify(token)).payload.name, "Ada Lovelace", "access token name claim after update");
      await again.setDisplayName(null);
      eq((await app.getUser({ or: "throw" })).displayName, null, "displayName after setDisplayName(null)");
      const server = await ctx.serverApp().getUser(user.id);
      eq(server?.clientMetadata, metadata, "clientMetadata seen by the server");
    },
  },
  {
    name: "client.update-password",
    async run(ctx) {
      const email = ctx.email("chpw");
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, email);
      const mismatch = await user.updatePassword({ oldPassword: "wrong-old-password-1", newPassword: "new-password-123" });
      expectKnownError(mismatch, "PASSWORD_CONFIRMATION_MISMATCH", "updatePassword with a wrong old password");
      const done = await user.updatePassword({ oldPassword: PASSWORD, newPassword: "new-password-123" });
      check(done === undefined, `updatePassword returned ${done?.errorCode ?? done}`);
      const fresh = ctx.clientApp();
      expectKnownError(await fresh.signInWithCredential({ email, password: PASSWORD, noRedirect: true }),
        "EMAIL_PASSWORD_MISMATCH", "sign-in with the old password");
      expectOk(await fresh.signInWithCredential({ email, password: "new-password-123", noRedirect: true }),
        "sign-in with the new password");
      eq((await fresh.getUser({ or: "throw" })).id, user.id, "user after sign-in with the new password");
    },
  },
  {
    name: "client.project",
    async run(ctx) {
      const project = await ctx.clientApp().getProject();
      eq(project.id, ctx.env.projectId, "project id");
      check(typeof project.displayName === "string" && project.displayName, "project displayName is empty");
      const config = project.config;
      for (const key of ["signUpEnabled", "credentialEnabled", "magicLinkEnabled", "passkeyEnabled",
        "clientTeamCreationEnabled", "clientUserDeletionEnabled", "allowUserApiKeys", "allowTeamApiKeys"]) {
        check(typeof config[key] === "boolean", `config.${key} is ${config[key]}, not a boolean`);
      }
      eq(config.signUpEnabled, true, "config.signUpEnabled");
      eq(config.credentialEnabled, true, "config.credentialEnabled");
      check(Array.isArray(config.oauthProviders), "config.oauthProviders is not an array");
    },
  },
  {
    name: "client.delete-user",
    async run(ctx) {
      const app = ctx.clientApp();
      const user = await ctx.signUp(app, ctx.email("delete"));
      const { config } = await app.getProject();
      if (config.clientUserDeletionEnabled) {
        await user.delete();
        eq(await app.getUser(), null, "getUser() after delete()");
        eq(await ctx.serverApp().getUser(user.id), null, "server getUser() after client delete()");
      } else {
        let failed = false;
        await user.delete().catch(() => { failed = true; });
        check(failed, "delete() succeeded although client user deletion is disabled");
        check(await ctx.serverApp().getUser(user.id), "user vanished after a refused delete()");
      }
    },
  },
  {
    name: "sdk.request-headers",
    async run(ctx) {
      await ctx.clientApp().getProject();
      const expected = ctx.loaded.alias === "sdk-latest" ? "x-hexclave-" : "x-stack-";
      const prefixes = new Set(ctx.calls(/./).map((c) => c.prefix));
      eq([...prefixes], [expected], `header prefix sent by ${ctx.loaded.alias} ${ctx.loaded.version}`);
    },
  },
];
