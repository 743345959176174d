// What every flow gets: app factories configured as an app developer would configure them
// in Node, unique addresses, the mail catcher, JWT verification and small assertions.
import { randomBytes } from "node:crypto";
import { isDeepStrictEqual, inspect } from "node:util";
import { Mail } from "./mail.mjs";
import { verifyAccessToken } from "./jwt.mjs";

export const PASSWORD = "correct-horse-battery-1";
// Node has no window.location: links in mails need an explicit callback URL. The project
// trusts localhost (allow_localhost), as Stack's own examples assume.
export const CALLBACK = "http://localhost:3000/handler";

export function makeCtx({ loaded, env, recorder }) {
  const { StackClientApp, StackServerApp, StackAdminApp } = loaded.sdk;
  const common = {
    baseUrl: env.apiUrl,
    projectId: env.projectId,
    publishableClientKey: env.publishableClientKey,
    redirectMethod: "none",
  };
  const tag = loaded.alias === "sdk-latest" ? "l" : "g";
  return {
    loaded,
    env,
    recorder,
    mail: new Mail(env.inbucketUrl),
    clientApp: (extra = {}) => new StackClientApp({ ...common, tokenStore: "memory", ...extra }),
    serverApp: (extra = {}) => new StackServerApp({
      ...common, tokenStore: "memory", secretServerKey: env.secretServerKey, ...extra,
    }),
    adminApp: (extra = {}) => new StackAdminApp({
      ...common, tokenStore: null, secretServerKey: env.secretServerKey,
      superSecretAdminKey: env.superSecretAdminKey, ...extra,
    }),
    /** A fresh address; its local part is the mail catcher's mailbox name. */
    email: (what) => `${what}-${tag}${randomBytes(5).toString("hex")}@example.com`,
    verify: (token, options) => verifyAccessToken(token, env, options),
    /** Signs up on `app` (a client app with a memory token store) and returns the user. */
    async signUp(app, email, password = PASSWORD) {
      const result = await app.signUpWithCredential({
        email, password, noRedirect: true, verificationCallbackUrl: `${CALLBACK}/email-verification`,
      });
      expectOk(result, "signUpWithCredential");
      const user = await app.getUser();
      check(user, "getUser() after sign-up returned null");
      return user;
    },
    calls: (pattern) => (recorder.flow?.calls ?? []).filter((c) => pattern.test(`${c.method} ${c.path}`)),
  };
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

export function eq(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${inspect(expected, { depth: 4 })}, got ${inspect(actual, { depth: 4 })}`);
  }
}

export function expectOk(result, what) {
  if (result?.status !== "ok") {
    const err = result?.error;
    throw new Error(`${what} returned an error: ${err?.errorCode ?? ""} ${err?.message ?? inspect(result)}`);
  }
  return result.data;
}

function codeOf(err) {
  return err?.errorCode ?? err?.constructor?.errorCode ?? null;
}

/** `resultOrError` is an SDK Result or a thrown error; it must be the known error `code`. */
export function expectKnownError(resultOrError, code, what) {
  const err = resultOrError?.status === "error" ? resultOrError.error : resultOrError;
  if (resultOrError?.status === "ok") throw new Error(`${what}: succeeded, expected known error ${code}`);
  if (codeOf(err) !== code) {
    throw new Error(`${what}: expected known error ${code}, got ${codeOf(err) ?? "a plain error"}: ${err?.message ?? inspect(err)}`);
  }
  return err;
}

export async function rejects(promise, what) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error(`${what}: succeeded, expected it to fail`);
}
