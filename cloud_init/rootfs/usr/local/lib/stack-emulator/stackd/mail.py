"""Caught mail: the on-disk store, the Inbucket JSON shapes, and sending through our own SMTP.

A message lives in <root>/<mailbox>/<id>.eml (the bytes the SMTP client sent) next to
<id>.json (the Inbucket listing entry). Mailboxes are named as Inbucket's default "local"
naming does: the local part of the recipient, lower-cased, without a "+extension".
"""

import email.parser
import email.policy
import hashlib
import json
import os
import re
import smtplib
import threading
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from .config import MAIL_FROM, log, short_error

MAILBOX_CHARS = re.compile(r"[a-z0-9!#$%&'*+\-=/?^_`.{|}~]+")
SAFE_DIR = re.compile(r"[a-z0-9_][a-z0-9._\-]{0,100}")
MESSAGE_ID = re.compile(r"[0-9A-Za-z\-]{1,64}")


class MailError(Exception):
    """A mail could not be handed to the mail catcher."""


def mailbox_name(address):
    """Inbucket's default 'local' naming: local part, lower-cased, '+extension' dropped.

    None when the address has no usable local part (such a recipient is refused)."""
    address = (address or "").strip().strip("<>").strip()
    local = address.rsplit("@", 1)[0] if "@" in address else address
    local = local.lower()
    if not local or len(local) > 128 or not MAILBOX_CHARS.fullmatch(local):
        return None
    return local.split("+", 1)[0] or None


def go_address(name, addr):
    """An address as Inbucket (Go's net/mail) prints it."""
    return '"%s" <%s>' % (name, addr) if name else "<%s>" % addr


def header_summary(envelope_from, rcpts, raw):
    """from, to and subject of a listing entry: from the headers, else from the envelope."""
    meta = {"from": go_address("", envelope_from) if envelope_from else "", "to": [], "subject": ""}
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        if head.get("Subject") is not None:
            meta["subject"] = str(head["Subject"])
        if head.get("From") is not None:
            addrs = getattr(head["From"], "addresses", ())
            meta["from"] = (go_address(addrs[0].display_name, addrs[0].addr_spec) if addrs
                            else str(head["From"]))
        if head.get("To") is not None:
            meta["to"] = [go_address(a.display_name, a.addr_spec)
                          for a in getattr(head["To"], "addresses", ())]
    except Exception as exc:
        log("mail: could not parse headers: %s" % short_error(exc))
    if not meta["to"]:
        meta["to"] = [go_address("", r) for r in rcpts]
    return meta


def message_bodies(msg):
    """(text, html) of a parsed message; "" for a part it lacks."""
    bodies = {}
    for subtype in ("plain", "html"):
        part = msg.get_body(preferencelist=(subtype,))
        content = part.get_content() if part is not None else ""
        bodies[subtype] = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    return bodies["plain"], bodies["html"]


def message_details(meta, raw):
    """The Inbucket message JSON: the listing entry plus header, body (text, html), attachments."""
    result = dict(meta)
    header, text, html, attachments = {}, "", "", []
    try:
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        for name, value in msg.items():
            header.setdefault(name, []).append(str(value))
        text, html = message_bodies(msg)
        for part in msg.iter_attachments():
            attachments.append({"filename": part.get_filename() or "",
                                "content-type": part.get_content_type()})
    except Exception as exc:
        log("mail: could not parse message %s: %s" % (meta.get("id"), short_error(exc)))
        if not text:
            text = raw.decode("utf-8", "replace")
    result.update(header=header, body={"text": text, "html": html}, attachments=attachments)
    return result


class MailStore:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.seq = 0

    def mailbox_dir(self, mailbox):
        if SAFE_DIR.fullmatch(mailbox):
            return os.path.join(self.root, mailbox)
        return os.path.join(self.root, "_" + hashlib.sha256(mailbox.encode("utf-8")).hexdigest())

    @staticmethod
    def valid_id(msg_id):
        return bool(MESSAGE_ID.fullmatch(msg_id or ""))

    def deliver(self, envelope_from, rcpts, raw):
        """Store one copy per distinct mailbox of the envelope recipients; return the message ids."""
        meta = header_summary(envelope_from, rcpts, raw)
        mailboxes = []
        for rcpt in rcpts:
            box = mailbox_name(rcpt)
            if box and box not in mailboxes:
                mailboxes.append(box)
        ids = []
        now = time.time()
        date = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
        for mailbox in mailboxes:
            with self.lock:
                self.seq = (self.seq + 1) % 10000
                msg_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-%04d" % self.seq
                directory = self.mailbox_dir(mailbox)
                os.makedirs(directory, mode=0o750, exist_ok=True)
                while os.path.exists(os.path.join(directory, msg_id + ".json")):
                    msg_id += "0"
                record = dict(meta, mailbox=mailbox, id=msg_id, size=len(raw), seen=False, date=date,
                              **{"posix-millis": int(now * 1000)})
                with open(os.path.join(directory, msg_id + ".eml"), "wb") as f:
                    f.write(raw)
                self._write_json(os.path.join(directory, msg_id + ".json"), record)
            ids.append(msg_id)
        return ids

    @staticmethod
    def _write_json(path, record):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)

    def list(self, mailbox):
        """The listing entries of a mailbox, oldest first."""
        directory = self.mailbox_dir(mailbox)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(directory, name), "rb") as f:
                        out.append(json.loads(f.read()))
                except (OSError, ValueError):
                    continue
        out.sort(key=lambda m: (m.get("posix-millis", 0), m.get("id", "")))
        return out

    def get(self, mailbox, msg_id):
        """(listing entry, raw bytes), or (None, None)."""
        if not self.valid_id(msg_id):
            return None, None
        base = os.path.join(self.mailbox_dir(mailbox), msg_id)
        try:
            with open(base + ".json", "rb") as f:
                meta = json.loads(f.read())
            with open(base + ".eml", "rb") as f:
                raw = f.read()
        except (FileNotFoundError, ValueError):
            return None, None
        return meta, raw

    def set_seen(self, mailbox, msg_id, seen=True):
        """False when there is no such message."""
        meta, _ = self.get(mailbox, msg_id)
        if meta is None or meta.get("seen") == seen:
            return meta is not None
        meta["seen"] = seen
        with self.lock:
            self._write_json(os.path.join(self.mailbox_dir(mailbox), msg_id + ".json"), meta)
        return True

    def delete(self, mailbox, msg_id=None):
        """Delete one message (False when there is none), or the whole mailbox (msg_id None)."""
        directory = self.mailbox_dir(mailbox)
        with self.lock:
            if msg_id is None:
                try:
                    names = os.listdir(directory)
                except FileNotFoundError:
                    return True
                for name in names:
                    os.unlink(os.path.join(directory, name))
                os.rmdir(directory)
                return True
            if not self.valid_id(msg_id):
                return False
            found = False
            for ext in (".json", ".eml"):
                try:
                    os.unlink(os.path.join(directory, msg_id + ext))
                    found = True
                except FileNotFoundError:
                    pass
            return found

    def mailboxes(self):
        """Names of the mailboxes that hold (or held) mail; hashed directories are left out."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if not n.startswith("_") and os.path.isdir(os.path.join(self.root, n))]


def build_message(to_address, subject, text, html=None, from_address=MAIL_FROM, headers=None):
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="stack-emulator.local")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def send(cfg, to_address, subject, text, html=None, from_address=MAIL_FROM, headers=None):
    """Send a mail (with extra `headers`, a dict) through the mail catcher's SMTP port, as any
    SMTP client would.

    Raises MailError, naming the address and the port, when the mail was not accepted."""
    msg = build_message(to_address, subject, text, html, from_address, headers)
    where = "127.0.0.1:%d" % cfg.smtp_port
    try:
        with smtplib.SMTP("127.0.0.1", cfg.smtp_port, local_hostname="stack-emulator",
                          timeout=10) as smtp:
            refused = smtp.send_message(msg)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise MailError("could not send mail to %s through SMTP %s: %s"
                        % (to_address, where, short_error(exc))) from exc
    if refused:
        raise MailError("SMTP %s refused %s: %s" % (where, to_address, refused))
