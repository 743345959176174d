#!/usr/bin/env node
// Runs every SDK flow against a Stack Auth-compatible backend with one pinned SDK release.
//
//   node tests/sdk/run.mjs sdk-latest|sdk-legacy [flow-name-substring ...]
//
// Environment: STACK_API_URL, STACK_PROJECT_ID, STACK_PUBLISHABLE_CLIENT_KEY,
// STACK_SECRET_SERVER_KEY, STACK_SUPER_SECRET_ADMIN_KEY, STACK_INBUCKET_URL.
// Output (stdout): one JSON line per flow {"flow","ok","error","ms"}, then one summary line.
// Exit status: 0 when every flow passed, 1 when one failed, 2 on a usage error.
import { loadSdk, ALIASES } from "./lib/sdk.mjs";
import { buildRouteTable } from "./lib/schemas.mjs";
import { Recorder } from "./lib/recorder.mjs";
import { makeCtx } from "./lib/ctx.mjs";
import { FLOWS } from "./flows/index.mjs";

const FLOW_TIMEOUT_MS = 90_000;
const ERROR_CHARS = 3000;

// The SDK may print; stdout carries only our JSON lines.
for (const level of ["log", "info", "warn", "debug"]) console[level] = (...args) => console.error(...args);
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function usage(message) {
  process.stderr.write(`run.mjs: ${message}\nusage: node run.mjs ${ALIASES.join("|")} [flow ...]\n`);
  process.exit(2);
}

function readEnv() {
  const names = {
    apiUrl: "STACK_API_URL",
    projectId: "STACK_PROJECT_ID",
    publishableClientKey: "STACK_PUBLISHABLE_CLIENT_KEY",
    secretServerKey: "STACK_SECRET_SERVER_KEY",
    superSecretAdminKey: "STACK_SUPER_SECRET_ADMIN_KEY",
    inbucketUrl: "STACK_INBUCKET_URL",
  };
  const missing = Object.values(names).filter((n) => !process.env[n]);
  if (missing.length) usage(`missing environment: ${missing.join(", ")}`);
  return Object.fromEntries(Object.entries(names).map(([k, n]) => [k, process.env[n].replace(/\/+$/, "")]));
}

function describe(err) {
  if (!(err instanceof Error)) return String(err);
  let text = err.errorCode ? `${err.errorCode}: ${err.message}` : `${err.name}: ${err.message}`;
  for (let cause = err.cause, depth = 0; cause && depth < 3; cause = cause.cause, depth++) {
    text += ` | caused by ${cause instanceof Response ? `HTTP ${cause.status}` : cause.message ?? String(cause)}`;
  }
  return text;
}

function lastCalls(calls, n = 4) {
  return calls.slice(-n).map((c) => `${c.method} ${c.path} [${c.access ?? "-"}] -> ${c.status} ${c.body.replace(/\s+/g, " ").slice(0, 240)}`);
}

async function runFlow(flow, ctx, recorder) {
  const record = { calls: [], problems: [] };
  recorder.flow = record;
  const started = performance.now();
  let error = null;
  let timer;
  try {
    await Promise.race([
      flow.run(ctx),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`flow timed out after ${FLOW_TIMEOUT_MS} ms`)), FLOW_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    error = describe(err);
  } finally {
    clearTimeout(timer);
  }
  const ms = Math.round(performance.now() - started);
  recorder.flow = null;
  const parts = [];
  if (error) parts.push(error);
  if (record.problems.length) parts.push(`response schema/contract problems: ${record.problems.join(" || ")}`);
  if (error) parts.push(`last calls: ${lastCalls(record.calls).join(" || ") || "none"}`);
  const ok = parts.length === 0;
  return { flow: flow.name, ok, error: ok ? null : parts.join("\n").slice(0, ERROR_CHARS), ms };
}

async function main() {
  const [alias, ...filters] = process.argv.slice(2);
  if (!ALIASES.includes(alias)) usage(`first argument must be an SDK alias, got ${alias ?? "nothing"}`);
  const env = readEnv();
  const loaded = await loadSdk(alias);
  const recorder = new Recorder({
    apiUrl: env.apiUrl,
    table: buildRouteTable(loaded),
    knownErrors: loaded.knownErrors,
  });
  recorder.install();
  process.on("unhandledRejection", (reason) => {
    recorder.flow?.problems.push(`unhandled rejection in the SDK: ${describe(reason)}`);
  });
  const ctx = makeCtx({ loaded, env, recorder });
  const selected = FLOWS.filter((f) => !filters.length || filters.some((s) => f.name.includes(s)));
  if (!selected.length) usage(`no flow matches ${filters.join(", ")}`);

  let passed = 0;
  for (const flow of selected) {
    const result = await runFlow(flow, ctx, recorder);
    if (result.ok) passed++;
    emit(result);
  }
  emit({
    summary: true,
    alias,
    sdk_version: loaded.version,
    shared_version: loaded.sharedVersion,
    header_prefixes: [...recorder.prefixesSeen],
    passed,
    failed: selected.length - passed,
    total: selected.length,
    unvalidated_routes: [...recorder.unvalidated].sort(),
  });
  return passed === selected.length ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`run.mjs: ${err?.stack ?? err}\n`);
    process.exit(2);
  },
);
