"""What each caught mail is: its kind, the code and link it carries, the project that sent it.

The emulator's own mails (emails.py) say so in headers when they are sent, so nothing here
guesses from the text:

  X-Stack-Emulator-Kind     verification | reset | otp | invitation
  X-Stack-Emulator-Code     what the recipient types or what the link carries
                            (for otp: the one-time password as mailed)
  X-Stack-Emulator-Link     the link in the mail
  X-Stack-Emulator-Project  the project id

A mail without them (one an app sent through SMTP itself) has kind "other"; its link is the
first link in its text with a `code` query parameter, and its code is that parameter.
Used by the mail catcher's out-of-band route (inbucket.py) and the console (console.py).
"""

import email.parser
import email.policy
import re
import urllib.parse

from .config import log, short_error
from .mail import mailbox_name, message_bodies

KIND_HEADER = "X-Stack-Emulator-Kind"
CODE_HEADER = "X-Stack-Emulator-Code"
LINK_HEADER = "X-Stack-Emulator-Link"
PROJECT_HEADER = "X-Stack-Emulator-Project"

KINDS = ("verification", "reset", "otp", "invitation")
OTHER = "other"
MAX_LIMIT = 1000
URL_RE = re.compile(r"https?://[^\s\"'<>]+")
ADDRESS_RE = re.compile(r"<([^<>]*)>\s*$")


def headers(kind, project_id=None, code=None, link=None):
    """The headers an emulator mail of `kind` carries (for mail.send)."""
    if kind not in KINDS:
        raise ValueError("unknown mail kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    out = {KIND_HEADER: kind}
    for name, value in ((CODE_HEADER, code), (LINK_HEADER, link), (PROJECT_HEADER, project_id)):
        if value:
            out[name] = str(value)
    return out


def address_of(entry):
    """The bare, lower-cased address of a listing's `to` entry ('"Ada" <ada@x.test>' -> 'ada@x.test')."""
    match = ADDRESS_RE.search(entry or "")
    return (match.group(1) if match else entry or "").strip().lower()


def link_in_text(text):
    """(link, code) of the first link in text with a code query parameter, else (None, None)."""
    for match in URL_RE.finditer(text or ""):
        href = match.group(0).replace("&amp;", "&").rstrip(".,;)")
        try:
            code = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query).get("code")
        except ValueError:
            continue
        if code and code[0]:
            return href, code[0]
    return None, None


def describe(meta, raw):
    """The out-of-band view of one stored message (listing entry + raw bytes)."""
    kind = code = link = project = None
    text = html = ""
    try:
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        kind, code, link, project = (str(msg[h]).strip() if msg[h] is not None else None
                                     for h in (KIND_HEADER, CODE_HEADER, LINK_HEADER, PROJECT_HEADER))
        text, html = message_bodies(msg)
    except Exception as exc:
        log("mail: could not parse message %s: %s" % (meta.get("id"), short_error(exc)))
    if kind not in KINDS:
        kind = OTHER
    if link is None and code is None:
        link, code = link_in_text(text or html)
    return {
        "id": meta.get("id"),
        "mailbox": meta.get("mailbox"),
        "to": [address_of(a) for a in meta.get("to") or []],
        "subject": meta.get("subject", ""),
        "kind": kind,
        "link": link,
        "code": code,
        "project_id": project,
        "received_at": meta.get("date"),
        "text": text,
        "html": html,
    }


def entries(store, to=None):
    """Listing entries, newest first: of every mailbox, or of the mailbox `to` names and, when
    `to` is an address, only those addressed to it (case-insensitive)."""
    if to:
        box = mailbox_name(to)
        if box is None:
            return []
        found = store.list(box)
        if "@" in to:
            wanted = to.strip().strip("<>").lower()
            found = [m for m in found if wanted in (address_of(a) for a in m.get("to") or [])]
    else:
        found = [m for box in store.mailboxes() for m in store.list(box)]
    found.sort(key=lambda m: (m.get("posix-millis", 0), m.get("id", "")), reverse=True)
    return found


def messages(store, to=None, kind=None, project_id=None, limit=100):
    """Described messages, newest first, filtered by recipient, kind and project (a mail that
    names no project matches every project), at most `limit`."""
    out = []
    for meta in entries(store, to):
        if len(out) >= limit:
            break
        meta_, raw = store.get(meta["mailbox"], meta["id"])
        if meta_ is None:  # deleted meanwhile
            continue
        item = describe(meta_, raw)
        if kind is not None and item["kind"] != kind:
            continue
        if project_id is not None and item["project_id"] not in (None, project_id):
            continue
        out.append(item)
    return out
