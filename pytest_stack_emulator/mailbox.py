"""Out-of-band codes: the mails the emulator sent, with the code and link each carries.

Like the Firebase Auth emulator's ``oobCodes``: a test that triggers a verification,
password-reset, one-time-password or invitation mail reads its code here instead of parsing
mail bodies. The mail catcher answers
``GET /api/v1/stack-emulator/messages?to=<address>&kind=<kind>``, newest first; every mail
the emulator's backend sends carries its kind, code and link in headers.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from .errors import StackEmulatorError

KINDS = ("verification", "reset", "otp", "invitation", "other")
ROUTE = "/api/v1/stack-emulator/messages"


class MailTimeout(StackEmulatorError, TimeoutError):
    """No matching mail arrived in time."""


class MailboxError(StackEmulatorError):
    """The mail catcher refused the request or answered something unreadable."""


@dataclass(frozen=True)
class Mail:
    """One caught mail. ``code`` is what the recipient would type or what the link carries
    (for ``otp``: the one-time password as mailed); ``link`` is the link in the mail."""

    id: str
    mailbox: str
    to: tuple[str, ...]
    subject: str
    kind: str
    code: str | None
    link: str | None
    project_id: str | None
    received_at: datetime
    text: str
    html: str

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Mail:
        return cls(
            id=str(item["id"]),
            mailbox=str(item["mailbox"]),
            to=tuple(item.get("to") or ()),
            subject=str(item.get("subject") or ""),
            kind=str(item["kind"]),
            code=item.get("code"),
            link=item.get("link"),
            project_id=item.get("project_id"),
            received_at=datetime.fromisoformat(item["received_at"]),
            text=item.get("text") or "",
            html=item.get("html") or "",
        )


class Mailbox:
    """The mail catcher of one stack (``StackEmulator.mail``)."""

    def __init__(self, inbucket_url: str, console_url: str | None = None, poll_interval: float = 0.2) -> None:
        self.inbucket_url = inbucket_url.rstrip("/")
        self.console_url = console_url
        self.poll_interval = poll_interval

    def messages(self, to: str | None = None, kind: str | None = None, limit: int = 100) -> list[Mail]:
        """Caught mails, newest first: to one address (or mailbox name), of one kind."""
        with httpx.Client(timeout=10.0) as client:
            return self._fetch(client, to, kind, limit)

    def latest(self, to: str, kind: str | None = None) -> Mail | None:
        found = self.messages(to, kind, limit=1)
        return found[0] if found else None

    def wait_for(
        self, to: str, kind: str | None = None, *, timeout: float = 10.0, after: Mail | None = None
    ) -> Mail:
        """The newest mail to ``to`` (of ``kind``), waiting up to ``timeout`` seconds for one.

        With ``after``, only a mail that arrived after that one counts: pass the mail a
        previous ``wait_for`` returned to wait for the next one. Raises :class:`MailTimeout`."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        deadline = time.monotonic() + timeout
        seen: list[Mail] = []
        problem: str | None = None
        with httpx.Client(timeout=10.0) as client:
            while True:
                try:
                    seen = self._fetch(client, to, None)
                    problem = None
                except (httpx.HTTPError, MailboxError) as exc:
                    problem = str(exc)
                for mail in seen:
                    if after is not None and (mail.id == after.id or mail.received_at < after.received_at):
                        break  # newest first: the rest is older
                    if kind is None or mail.kind == kind:
                        return mail
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
        raise MailTimeout(self._timeout_message(to, kind, timeout, after, seen, problem))

    def clear(self, to: str) -> None:
        """Delete every mail in the mailbox of ``to`` (Inbucket's DELETE on the mailbox)."""
        box = urllib.parse.quote(to, safe="")
        r = httpx.delete(f"{self.inbucket_url}/api/v1/mailbox/{box}", timeout=10.0)
        if r.status_code != 200:
            raise MailboxError(
                f"DELETE {self.inbucket_url}/api/v1/mailbox/{box} answered {r.status_code}: {r.text[:300]}"
            )

    def _fetch(self, client: httpx.Client, to: str | None, kind: str | None, limit: int = 100) -> list[Mail]:
        params = {k: v for k, v in (("to", to), ("kind", kind)) if v} | {"limit": str(limit)}
        url = self.inbucket_url + ROUTE
        r = client.get(url, params=params)
        if r.status_code == 404:
            raise MailboxError(
                f"{url} answered 404: this image's mail catcher has no out-of-band route; "
                "use a compat image built from this release (`stack-emulator build-image`)"
            )
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200 or not isinstance(body, list):
            detail = body.get("error") if isinstance(body, dict) else r.text[:300]
            raise MailboxError(f"GET {r.url} answered {r.status_code}: {detail}")
        return [Mail.from_json(item) for item in body]

    def _timeout_message(
        self,
        to: str,
        kind: str | None,
        timeout: float,
        after: Mail | None,
        seen: list[Mail],
        problem: str | None,
    ) -> str:
        what = f"no {kind + ' ' if kind else ''}mail to {to}"
        if after is not None:
            what += f" newer than {after.id}"
        text = f"{what} arrived within {timeout:g} s"
        if problem:
            text += f"; the mail catcher did not answer: {problem}"
        elif seen:
            listed = "; ".join(f"{m.kind}: {m.subject!r} at {m.received_at:%H:%M:%S}" for m in seen[:5])
            text += f". Mails to it, newest first: {listed}"
        else:
            text += ". Its mailbox is empty: check that the app sent the mail to this address"
        query = urllib.parse.urlencode({"to": to})
        text += f". Look at {self.inbucket_url}{ROUTE}?{query}"
        if self.console_url:
            text += f" or the console at {self.console_url}"
        return text
