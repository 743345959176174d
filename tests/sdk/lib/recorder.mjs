// Wraps globalThis.fetch before the SDK runs: every call to the backend's /api/v1 is
// recorded for the flow that is running, and every JSON body is checked against
// stack-shared's schema for its route and access type (see schemas.mjs).
import { findSchema, validateBody, validateKnownError } from "./schemas.mjs";

const BODY_PREVIEW = 400;

export class Recorder {
  constructor({ apiUrl, table, knownErrors }) {
    this.apiBase = `${apiUrl.replace(/\/+$/, "")}/api/v1`;
    this.table = table;
    this.knownErrors = knownErrors;
    this.flow = null; // {calls: [], problems: []} of the running flow
    this.unvalidated = new Set();
    this.prefixesSeen = new Set();
  }

  install() {
    const original = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      const res = await original(input, init);
      try {
        await this.#inspect(input, init, res);
      } catch (err) {
        this.flow?.problems.push(`recorder could not inspect a response: ${err.message}`);
      }
      return res;
    };
  }

  async #inspect(input, init, res) {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    if (!url.href.startsWith(this.apiBase)) return;
    const path = url.pathname.slice(new URL(this.apiBase).pathname.length) || "/";
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const access = headers.get("x-hexclave-access-type") ?? headers.get("x-stack-access-type");
    const prefix = ["x-hexclave-", "x-stack-"].find((p) => headers.has(`${p}project-id`)) ?? null;
    if (prefix) this.prefixesSeen.add(prefix);
    const status = Number(res.headers.get("x-hexclave-actual-status") ?? res.headers.get("x-stack-actual-status") ?? res.status);
    const text = await res.clone().text();
    const call = { method, path: path + url.search, access, prefix, status, body: text.slice(0, BODY_PREVIEW) };
    const flow = this.flow;
    flow?.calls.push(call);
    const problems = [];

    let body;
    const isJson = (res.headers.get("content-type") ?? "").includes("json");
    if (isJson) {
      try {
        body = JSON.parse(text);
      } catch {
        problems.push("content-type is JSON but the body does not parse");
      }
    }
    const knownCode = res.headers.get("x-hexclave-known-error") ?? res.headers.get("x-stack-known-error");
    if (knownCode) {
      problems.push(...validateKnownError(this.knownErrors, knownCode, status, body));
    } else if (status >= 200 && status < 300 && body !== undefined) {
      const found = findSchema(this.table, method, path, access);
      if (found) problems.push(...(await validateBody(found, body)));
      else this.unvalidated.add(`${method} ${path.replace(/[0-9a-f-]{36}/g, ":id")}`);
    } else if (status >= 500) {
      problems.push("server error");
    }
    for (const p of problems) flow?.problems.push(`${method} ${call.path} [${access ?? "-"}] -> ${status}: ${p}`);
  }
}
