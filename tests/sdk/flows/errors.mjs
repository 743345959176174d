// Misconfigured apps must get the SDK's known errors quickly, not crashes or retry loops.
import { check, expectKnownError, rejects } from "../lib/ctx.mjs";

const FAST_MS = 5_000;

async function failsFast(promise, code, what) {
  const started = Date.now();
  const err = await rejects(promise, what);
  const ms = Date.now() - started;
  expectKnownError(err, code, what);
  check(ms < FAST_MS, `${what}: took ${ms} ms; a known error must not be retried`);
}

export const flows = [
  {
    name: "errors.wrong-publishable-key",
    async run(ctx) {
      const app = ctx.clientApp({ publishableClientKey: `pck_${"0".repeat(40)}` });
      await failsFast(app.getProject(), "INVALID_PUBLISHABLE_CLIENT_KEY", "getProject() with a wrong publishable key");
      await failsFast(app.signInWithCredential({ email: ctx.email("badkey"), password: "whatever-123", noRedirect: true }),
        "INVALID_PUBLISHABLE_CLIENT_KEY", "signInWithCredential() with a wrong publishable key");
    },
  },
  {
    name: "errors.wrong-secret-server-key",
    async run(ctx) {
      const app = ctx.serverApp({ secretServerKey: `ssk_${"0".repeat(40)}` });
      await failsFast(app.listUsers(), "INVALID_SECRET_SERVER_KEY", "listUsers() with a wrong secret server key");
    },
  },
  {
    name: "errors.unknown-project",
    async run(ctx) {
      const app = ctx.clientApp({ projectId: "7a1b7c3e-5d2f-4e8a-9b6c-0d1e2f3a4b5c" });
      await failsFast(app.getProject(), "CURRENT_PROJECT_NOT_FOUND", "getProject() of a project that does not exist");
    },
  },
  {
    name: "errors.wrong-admin-key",
    async run(ctx) {
      const app = ctx.adminApp({ superSecretAdminKey: `sak_${"0".repeat(40)}` });
      await failsFast(app.getProject(), "INVALID_SUPER_SECRET_ADMIN_KEY", "admin getProject() with a wrong admin key");
    },
  },
];
