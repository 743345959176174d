"""The mail store's on-disk round trip and the Inbucket JSON shapes of a message."""

from __future__ import annotations

import json
import os
from email.message import EmailMessage
from types import SimpleNamespace

import pytest


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("Ada.Lovelace+signup@Example.com", "ada.lovelace"),
        ("<bob@x.test>", "bob"),
        ("plain", "plain"),
        ('"two words"@x.test', None),
        ("@x.test", None),
        ("+only@x.test", None),
        ("ü@x.test", None),
    ],
)
def test_mailbox_names_follow_inbucket_local_naming(address: str, mailbox: str | None) -> None:
    from stackd.mail import mailbox_name

    assert mailbox_name(address) == mailbox


def raw_message(to: str = "Ada <ada+x@example.com>, bob@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Stack <noreply@stack.test>"
    msg["To"] = to
    msg["Subject"] = "Verify your email"
    msg.set_content("Open the link.\n")
    msg.add_alternative("<p>Open the <a href='x'>link</a>.</p>", subtype="html")
    msg.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream", filename="a.bin")
    return msg.as_bytes()


def test_deliver_stores_one_copy_per_mailbox(state: SimpleNamespace) -> None:
    store = state.mail
    raw = raw_message()
    ids = store.deliver("bounce@stack.test", ["ada+x@example.com", "ADA@example.com", "bob@example.com"], raw)
    assert len(ids) == 2
    assert store.mailboxes() == ["ada", "bob"]
    (entry,) = store.list("ada")
    assert entry["id"] == ids[0]
    assert entry["mailbox"] == "ada"
    assert entry["subject"] == "Verify your email"
    assert entry["from"] == '"Stack" <noreply@stack.test>'
    assert entry["to"] == ['"Ada" <ada+x@example.com>', "<bob@example.com>"]
    assert entry["size"] == len(raw)
    assert entry["seen"] is False
    assert entry["date"].endswith("+00:00")
    meta, got = store.get("ada", ids[0])
    assert (meta, got) == (entry, raw)
    # the layout: <root>/<mailbox>/<id>.eml next to <id>.json
    base = os.path.join(store.root, "ada", ids[0])
    with open(base + ".eml", "rb") as f:
        assert f.read() == raw
    with open(base + ".json", encoding="utf-8") as f:
        assert json.load(f) == entry


def test_seen_flag_and_deletes(state: SimpleNamespace) -> None:
    store = state.mail
    first = store.deliver("", ["c@x.test"], raw_message("c@x.test"))[0]
    second = store.deliver("", ["c@x.test"], raw_message("c@x.test"))[0]
    assert [m["id"] for m in store.list("c")] == [first, second]
    assert store.set_seen("c", first, True)
    assert store.get("c", first)[0]["seen"] is True
    assert not store.set_seen("c", "missing", True)
    assert store.delete("c", first)
    assert not store.delete("c", first)
    assert not store.delete("c", "../etc")
    assert store.get("c", "../c/" + second) == (None, None)
    assert [m["id"] for m in store.list("c")] == [second]
    assert store.delete("c")
    assert store.list("c") == []
    assert store.mailboxes() == []


def test_unsafe_mailbox_names_get_hashed_directories(state: SimpleNamespace) -> None:
    store = state.mail
    (msg_id,) = store.deliver("", ["a/b@x.test"], raw_message("a/b@x.test"))
    assert store.get("a/b", msg_id)[0]["mailbox"] == "a/b"
    assert store.mailboxes() == []  # hashed directories are not listed
    assert all(name.startswith("_") for name in os.listdir(store.root))


def test_envelope_fills_in_missing_headers(state: SimpleNamespace) -> None:
    store = state.mail
    store.deliver("sender@x.test", ["d@x.test"], b"no headers at all\r\n")
    (entry,) = store.list("d")
    assert (entry["from"], entry["to"], entry["subject"]) == ("<sender@x.test>", ["<d@x.test>"], "")


def test_message_details_has_text_html_headers_and_attachments() -> None:
    from stackd.mail import message_details

    meta = {"id": "1", "subject": "Verify your email"}
    details = message_details(meta, raw_message())
    assert details["id"] == "1"
    assert details["body"]["text"] == "Open the link.\n"
    assert "<a href='x'>link</a>" in details["body"]["html"]
    assert details["header"]["Subject"] == ["Verify your email"]
    assert details["attachments"] == [{"filename": "a.bin", "content-type": "application/octet-stream"}]


def test_message_details_of_a_plain_non_utf8_message() -> None:
    from stackd.mail import message_details

    raw = b"Subject: x\r\nContent-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9\r\n"
    details = message_details({"id": "2"}, raw)
    assert details["body"] == {"text": "caf\xe9\r\n", "html": ""}


def test_build_message_for_send() -> None:
    from stackd.config import MAIL_FROM
    from stackd.mail import build_message

    msg = build_message("ada@example.com", "Hello", "text body", html="<p>html</p>")
    assert (msg["From"], msg["To"], msg["Subject"]) == (MAIL_FROM, "ada@example.com", "Hello")
    assert msg["Message-ID"]
    assert msg["Date"]
    assert msg.get_body(("plain",)).get_content() == "text body\n"
    assert msg.get_body(("html",)).get_content() == "<p>html</p>\n"
    assert not build_message("a@x.test", "s", "t").is_multipart()
