"""The SMTP mail catcher (aiosmtpd on a free port) and mail.send, over a real socket."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from types import SimpleNamespace

import pytest


@pytest.fixture
def catcher(state: SimpleNamespace) -> Iterator[SimpleNamespace]:
    from stackd import smtp

    controller = smtp.start(state, "127.0.0.1", state.cfg.smtp_port)
    yield state
    controller.stop()


def test_send_goes_through_smtp_to_the_store(catcher: SimpleNamespace) -> None:
    from stackd import mail

    mail.send(catcher.cfg, "Ada+x@example.com", "Verify your email", "Open the link.\n", html="<p>link</p>")
    (entry,) = catcher.mail.list("ada")
    assert entry["subject"] == "Verify your email"
    assert entry["from"] == f"<{mail.MAIL_FROM}>"
    _, raw = catcher.mail.get("ada", entry["id"])
    details = mail.message_details(entry, raw)
    assert details["body"]["text"] == "Open the link.\r\n"  # as sent: SMTP lines end in CRLF
    assert details["body"]["html"] == "<p>link</p>\r\n"


def test_any_sender_and_credentials_long_lines_and_dots(catcher: SimpleNamespace) -> None:
    body = "Subject: raw\r\nTo: b@x.test\r\n\r\n.leading dot\r\n" + "L" * 5000 + "\r\n"
    with smtplib.SMTP("127.0.0.1", catcher.cfg.smtp_port, timeout=10) as client:
        client.login("anyone", "anything")
        assert client.sendmail("", ["b@x.test", "c@y.test", "B+2@x.test"], body) == {}
    assert len(catcher.mail.list("b")) == 1  # one copy per mailbox
    assert len(catcher.mail.list("c")) == 1
    _, raw = catcher.mail.get("b", catcher.mail.list("b")[0]["id"])
    assert raw.endswith(b"\r\n\r\n.leading dot\r\n" + b"L" * 5000 + b"\r\n")


def test_refusals_raise_mail_error(catcher: SimpleNamespace) -> None:
    from stackd import mail

    with pytest.raises(mail.MailError, match="550"):
        mail.send(catcher.cfg, '"two words"@example.com', "s", "t")
    with smtplib.SMTP("127.0.0.1", catcher.cfg.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size")
        assert int(client.esmtp_features["size"]) == catcher.cfg.max_mail_bytes
        assert not client.has_extn("starttls")


def test_size_limit(state: SimpleNamespace) -> None:
    from stackd import mail, smtp

    state.cfg.max_mail_bytes = 1000
    controller = smtp.start(state, "127.0.0.1", state.cfg.smtp_port)
    try:
        with pytest.raises(mail.MailError, match="552"):
            mail.send(state.cfg, "a@x.test", "big", "x" * 2000)
        mail.send(state.cfg, "a@x.test", "small", "x")
    finally:
        controller.stop()
    assert [m["subject"] for m in state.mail.list("a")] == ["small"]


def test_send_without_a_server_names_the_port(state: SimpleNamespace) -> None:
    from stackd import mail

    with pytest.raises(mail.MailError, match=f"127.0.0.1:{state.cfg.smtp_port}"):
        mail.send(state.cfg, "a@x.test", "s", "t")
