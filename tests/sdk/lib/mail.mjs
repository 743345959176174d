// The mail catcher's Inbucket API: GET /api/v1/mailbox/<name> lists a mailbox (the local
// part of the address), GET /api/v1/mailbox/<name>/<id> returns one message.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Mail {
  constructor(inbucketUrl) {
    this.base = inbucketUrl.replace(/\/+$/, "");
  }

  async #get(path) {
    const res = await fetch(`${this.base}/api/v1/mailbox/${path}`);
    if (!res.ok) throw new Error(`mail catcher GET ${path}: ${res.status} ${await res.text()}`);
    return await res.json();
  }

  /** Waits for a message to `address` whose subject matches `subject` and that is not in `skip`. */
  async waitFor(address, { subject = /./, skip = [], timeoutMs = 15_000 } = {}) {
    const box = address.split("@")[0];
    const deadline = Date.now() + timeoutMs;
    let seen = [];
    while (Date.now() < deadline) {
      seen = await this.#get(encodeURIComponent(box));
      const hit = seen.find((m) => subject.test(m.subject ?? "") && !skip.includes(m.id));
      if (hit) return await this.#get(`${encodeURIComponent(box)}/${encodeURIComponent(hit.id)}`);
      await sleep(250);
    }
    const subjects = seen.map((m) => JSON.stringify(m.subject)).join(", ") || "none";
    throw new Error(`no mail to ${address} with subject ${subject} within ${timeoutMs} ms (mailbox has: ${subjects})`);
  }

  async ids(address) {
    return (await this.#get(encodeURIComponent(address.split("@")[0]))).map((m) => m.id);
  }
}

/** The `code` query parameter of the first link in the message that has one. */
export function codeFromMessage(message) {
  const text = `${message.body?.text ?? ""}\n${message.body?.html ?? ""}`;
  for (const match of text.matchAll(/https?:\/\/[^\s"'<>]+/g)) {
    const href = match[0].replaceAll("&amp;", "&");
    try {
      const code = new URL(href).searchParams.get("code");
      if (code) return { code, link: href };
    } catch {
      // not a URL after all
    }
  }
  throw new Error(`no link with a code= parameter in the mail "${message.subject}": ${text.slice(0, 300)}`);
}
