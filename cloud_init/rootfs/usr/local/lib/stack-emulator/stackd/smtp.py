"""The SMTP mail catcher (internal port 2500): aiosmtpd, delivering to state.mail.

It accepts any sender, any credentials (AUTH PLAIN/LOGIN, no TLS) and every recipient that
names a mailbox; it relays nothing. Messages larger than cfg.max_mail_bytes get 552.
"""

import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from .config import log, short_error
from .mail import mailbox_name

MAX_RECIPIENTS = 200


class CatcherHandler:
    """aiosmtpd handler hooks: check recipients, store each message in the MailStore."""

    def __init__(self, store):
        self.store = store

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if mailbox_name(address) is None:
            return "550 5.1.1 invalid mailbox name"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        try:
            ids = self.store.deliver(envelope.mail_from, envelope.rcpt_tos, raw)
        except OSError as exc:
            log("smtp: cannot store a message: %s" % short_error(exc))
            return "451 4.3.0 cannot store the message"
        return "250 2.0.0 OK: queued as %s" % ",".join(ids)


def accept_any_login(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


class CatcherSMTP(SMTP):
    # RFC 5321 caps a line at 1000 octets; like Inbucket, catch what lax clients send anyway.
    line_length_limit = 64 * 1024


class CatcherController(Controller):
    def factory(self):
        return CatcherSMTP(self.handler, **self.SMTP_kwargs)


def start(state, bind, port):
    """Listen on bind:port in aiosmtpd's own thread; return the Controller (stop() ends it).

    Raises OSError when the port cannot be bound."""
    # aiosmtpd logs each session at INFO, and warns on every AUTH about its own deprecated
    # Session.login_data: keep its errors only
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    controller = CatcherController(
        CatcherHandler(state.mail), hostname=bind, port=port,
        server_hostname="stack-emulator", ident="stack-emulator mail catcher",
        data_size_limit=state.cfg.max_mail_bytes, enable_SMTPUTF8=True, decode_data=False,
        authenticator=accept_any_login, auth_require_tls=False)
    controller.start()
    return controller
