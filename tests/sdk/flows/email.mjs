// Mails the backend sends (read back from the mail catcher) and the codes in their links.
import { CALLBACK, PASSWORD, check, eq, expectKnownError, expectOk } from "../lib/ctx.mjs";
import { codeFromMessage } from "../lib/mail.mjs";

function expectVerificationCodeError(ctx, result, what) {
  check(result?.status === "error", `${what}: succeeded, expected a verification code error`);
  const { VerificationCodeError } = ctx.loaded.knownErrors.KnownErrors;
  check(VerificationCodeError.isInstance(result.error),
    `${what}: expected a VERIFICATION_ERROR known error, got ${result.error?.errorCode ?? result.error}`);
}

export const flows = [
  {
    name: "email.sign-up-verification",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("verify");
      await ctx.signUp(app, email);
      const message = await ctx.mail.waitFor(email, { subject: /verif/i });
      check(message.to.join(" ").includes(email), `verification mail is addressed to ${message.to}`);
      const { code, link } = codeFromMessage(message);
      check(link.startsWith(`${CALLBACK}/email-verification`), `verification link ${link} does not use the callback URL`);
      expectOk(await app.verifyEmail(code), "verifyEmail(code from the mail)");
      const user = await app.getUser({ or: "throw" });
      eq(user.primaryEmailVerified, true, "primaryEmailVerified after verifyEmail()");
      // The session's token keeps its claims until it is refreshed (as upstream); a new sign-in
      // gets a token that says the address is verified.
      const again = ctx.clientApp();
      expectOk(await again.signInWithCredential({ email, password: PASSWORD, noRedirect: true }), "sign-in after verifying");
      const fresh = await (await again.getUser({ or: "throw" })).getAccessToken();
      eq((await ctx.verify(fresh)).payload.email_verified, true, "email_verified claim of a new session");
      expectVerificationCodeError(ctx, await app.verifyEmail(code), "verifyEmail() with a used code");
      // Codes are 45 characters (upstream's schema); a well-formed unknown one is not found.
      expectVerificationCodeError(ctx, await app.verifyEmail("0".repeat(45)), "verifyEmail() with a made-up code");
    },
  },
  {
    name: "email.resend-verification",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("resend");
      expectOk(await app.signUpWithCredential({ email, password: PASSWORD, noRedirect: true, noVerificationCallback: true }),
        "signUpWithCredential({noVerificationCallback: true})");
      const user = await app.getUser({ or: "throw" });
      const sent = await user.sendVerificationEmail({ callbackUrl: `${CALLBACK}/email-verification` });
      check(sent === undefined, `sendVerificationEmail() returned ${sent?.errorCode ?? sent}`);
      const { code } = codeFromMessage(await ctx.mail.waitFor(email, { subject: /verif/i }));
      expectOk(await app.verifyEmail(code), "verifyEmail(code from the resent mail)");
      const verified = await app.getUser({ or: "throw" });
      eq(verified.primaryEmailVerified, true, "primaryEmailVerified");
      expectKnownError(await verified.sendVerificationEmail({ callbackUrl: `${CALLBACK}/email-verification` }),
        "EMAIL_ALREADY_VERIFIED", "sendVerificationEmail() once verified");
    },
  },
  {
    name: "email.password-reset",
    async run(ctx) {
      const email = ctx.email("reset");
      await ctx.signUp(ctx.clientApp(), email);
      const app = ctx.clientApp();
      expectOk(await app.sendForgotPasswordEmail(email, { callbackUrl: `${CALLBACK}/password-reset` }), "sendForgotPasswordEmail");
      const message = await ctx.mail.waitFor(email, { subject: /reset|password/i });
      const { code, link } = codeFromMessage(message);
      check(link.startsWith(`${CALLBACK}/password-reset`), `reset link ${link} does not use the callback URL`);
      expectOk(await app.verifyPasswordResetCode(code), "verifyPasswordResetCode");
      expectOk(await app.resetPassword({ code, password: "after-reset-password-3" }), "resetPassword");
      expectVerificationCodeError(ctx, await app.resetPassword({ code, password: "again-password-4" }), "resetPassword() with a used code");
      expectKnownError(await app.signInWithCredential({ email, password: PASSWORD, noRedirect: true }),
        "EMAIL_PASSWORD_MISMATCH", "sign-in with the password from before the reset");
      expectOk(await app.signInWithCredential({ email, password: "after-reset-password-3", noRedirect: true }),
        "sign-in with the reset password");
    },
  },
  {
    name: "email.password-reset-unknown-email",
    async run(ctx) {
      const email = ctx.email("noone");
      // Stack Auth does not reveal whether an account exists: the call succeeds, no mail goes out.
      expectOk(await ctx.clientApp().sendForgotPasswordEmail(email, { callbackUrl: `${CALLBACK}/password-reset` }),
        "sendForgotPasswordEmail(unknown address)");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      eq(await ctx.mail.ids(email), [], "mails to an address without an account");
    },
  },
  {
    name: "email.contact-channels",
    async run(ctx) {
      const app = ctx.clientApp();
      const email = ctx.email("channels");
      const user = await ctx.signUp(app, email);
      const [primary, ...others] = await user.listContactChannels();
      eq(others.length, 0, "contact channels right after sign-up besides the primary email");
      eq([primary.type, primary.value, primary.isPrimary, primary.usedForAuth, primary.isVerified],
        ["email", email, true, true, false], "primary contact channel [type, value, isPrimary, usedForAuth, isVerified]");
      const second = ctx.email("channels2");
      const created = await user.createContactChannel({ type: "email", value: second, usedForAuth: false });
      eq([created.value, created.isPrimary, created.usedForAuth, created.isVerified], [second, false, false, false],
        "created channel [value, isPrimary, usedForAuth, isVerified]");
      await created.sendVerificationEmail({ callbackUrl: `${CALLBACK}/email-verification` });
      const { code } = codeFromMessage(await ctx.mail.waitFor(second, { subject: /verif/i }));
      expectOk(await app.verifyEmail(code), "verifyEmail(code sent to the second address)");
      let listed = await (await app.getUser({ or: "throw" })).listContactChannels();
      const verified = listed.find((c) => c.id === created.id);
      eq(verified?.isVerified, true, "second channel isVerified after verifyEmail()");
      await verified.update({ usedForAuth: true });
      listed = await user.listContactChannels();
      eq(listed.find((c) => c.id === created.id)?.usedForAuth, true, "usedForAuth after update()");
      await listed.find((c) => c.id === created.id).delete();
      eq((await user.listContactChannels()).map((c) => c.id), [primary.id], "channels after delete()");
    },
  },
  {
    name: "server.contact-channels",
    async run(ctx) {
      const server = ctx.serverApp();
      const user = await server.createUser({ primaryEmail: ctx.email("srvch") });
      const extra = ctx.email("srvch2");
      const channel = await user.createContactChannel({ type: "email", value: extra, usedForAuth: false, isVerified: true });
      eq([channel.value, channel.isVerified, channel.usedForAuth], [extra, true, false], "server-created channel");
      const listed = await (await ctx.serverApp().getUser(user.id)).listContactChannels();
      eq(listed.map((c) => c.value).sort(), [user.primaryEmail, extra].sort(), "server listContactChannels values");
      await channel.update({ isVerified: false });
      const after = await (await ctx.serverApp().getUser(user.id)).listContactChannels();
      eq(after.find((c) => c.id === channel.id)?.isVerified, false, "isVerified after server update()");
    },
  },
];
