"""What each caught mail is (mail_codes.py), the mail catcher's out-of-band route, and the
host's Mailbox (pytest_stack_emulator.mailbox) polling that route on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from pytest_stack_emulator.mailbox import Mailbox, MailTimeout
from tests.guest.conftest import free_port

LONG_LINK = "http://localhost:3000/handler/email-verification?after_auth_return_to=%2F" + "x" * 120 + "&code="


def emulator_mail(to: str, kind: str, code: str, link: str, project: str = "internal") -> bytes:
    from stackd import mail, mail_codes

    text = f"Open this link:\n\n{link}\n\nCode: {code}\n"
    msg = mail.build_message(
        to, f"{kind} mail", text, "<p>html</p>", headers=mail_codes.headers(kind, project, code, link)
    )
    return msg.as_bytes()


def deliver(state: SimpleNamespace, to: str, raw: bytes) -> str:
    (msg_id,) = state.mail.deliver("noreply@stack-emulator.local", [to], raw)
    time.sleep(0.002)  # distinct posix-millis, so "newest first" is well defined
    return str(msg_id)


def test_headers_round_trip_even_for_long_links(state: SimpleNamespace) -> None:
    from stackd import mail_codes

    code = "a" * 45
    link = LONG_LINK + code
    msg_id = deliver(state, "Ada@Example.com", emulator_mail("Ada@Example.com", "verification", code, link))
    meta, raw = state.mail.get("ada", msg_id)
    item = mail_codes.describe(meta, raw)
    assert {k: item[k] for k in ("id", "mailbox", "to", "kind", "code", "link", "project_id")} == {
        "id": msg_id,
        "mailbox": "ada",
        "to": ["ada@example.com"],
        "kind": "verification",
        "code": code,
        "link": link,
        "project_id": "internal",
    }
    assert item["text"].startswith("Open this link:")
    assert item["received_at"] == meta["date"]
    with pytest.raises(ValueError, match="unknown mail kind 'magic'"):
        mail_codes.headers("magic")


def test_a_mail_without_emulator_headers_is_other_with_the_link_from_its_text(state: SimpleNamespace) -> None:
    from stackd import mail, mail_codes

    raw = mail.build_message("bob@x.test", "Hello", "See https://app.test/go?x=1&code=abc123. Bye").as_bytes()
    msg_id = deliver(state, "bob@x.test", raw)
    item = mail_codes.describe(*state.mail.get("bob", msg_id))
    assert (item["kind"], item["code"], item["link"], item["project_id"]) == (
        "other",
        "abc123",
        "https://app.test/go?x=1&code=abc123",
        None,
    )
    plain = mail.build_message("bob@x.test", "No link", "Nothing to click").as_bytes()
    item = mail_codes.describe(*state.mail.get("bob", deliver(state, "bob@x.test", plain)))
    assert (item["kind"], item["code"], item["link"]) == ("other", None, None)


def test_messages_filter_by_address_kind_and_project_newest_first(state: SimpleNamespace) -> None:
    from stackd import mail_codes

    first = deliver(
        state, "cat@a.test", emulator_mail("cat@a.test", "verification", "c1", "http://l/?code=c1")
    )
    deliver(state, "cat@b.test", emulator_mail("cat@b.test", "reset", "c2", "http://l/?code=c2"))
    third = deliver(
        state, "cat@a.test", emulator_mail("cat@a.test", "otp", "ABC123", "http://l/?code=c3", "p2")
    )
    store = state.mail
    assert [m["id"] for m in mail_codes.messages(store, "cat@a.test")] == [third, first]
    assert [m["code"] for m in mail_codes.messages(store, "CAT@A.TEST", kind="otp")] == ["ABC123"]
    assert [m["code"] for m in mail_codes.messages(store, "cat")] == ["ABC123", "c2", "c1"]
    assert [m["code"] for m in mail_codes.messages(store, project_id="internal")] == ["c2", "c1"]
    assert [m["code"] for m in mail_codes.messages(store, limit=1)] == ["ABC123"]
    assert mail_codes.messages(store, "nobody@a.test") == []


@pytest.fixture
def client(state: SimpleNamespace) -> Client:
    from stackd import inbucket

    return Client(inbucket.create_app(state))


def test_the_route_answers_json_with_cors_and_clear_errors(client: Client, state: SimpleNamespace) -> None:
    deliver(
        state, "dan@x.test", emulator_mail("dan@x.test", "reset", "r" * 45, "http://l/r?code=" + "r" * 45)
    )
    r = client.get("/api/v1/stack-emulator/messages", query_string={"to": "dan@x.test", "kind": "reset"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    (item,) = r.json
    assert (item["kind"], item["code"], item["to"]) == ("reset", "r" * 45, ["dan@x.test"])
    assert client.get("/api/v1/stack-emulator/messages?kind=otp").json == []
    cases = [
        (
            "kind=magic",
            400,
            "SCHEMA_ERROR",
            "kind must be one of verification, reset, otp, invitation, other",
        ),
        ("limit=0", 400, "SCHEMA_ERROR", "limit must be a whole number from 1 to 1000"),
        ("limit=x", 400, "SCHEMA_ERROR", "limit must be"),
        ("to=two%20words", 400, "INVALID_MAILBOX", "to=two words is not an email address"),
        ("email=dan@x.test", 400, "SCHEMA_ERROR", "unknown query parameter email: use to, kind"),
    ]
    for query, status, code, message in cases:
        r = client.get(f"/api/v1/stack-emulator/messages?{query}")
        assert (r.status_code, r.json["code"]) == (status, code), query
        assert r.json["error"].startswith(message), r.json
    assert client.post("/api/v1/stack-emulator/messages").status_code == 405


@pytest.fixture
def served(state: SimpleNamespace) -> Iterator[str]:
    from stackd import inbucket

    server = make_server("127.0.0.1", free_port(), inbucket.create_app(state), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_host_mailbox_waits_for_a_mail_that_arrives_later(served: str, state: SimpleNamespace) -> None:
    mailbox = Mailbox(served, console_url="http://127.0.0.1:1/console/", poll_interval=0.05)
    address = "eve@x.test"
    old = deliver(state, address, emulator_mail(address, "verification", "v1", "http://l/?code=v1"))
    later = threading.Timer(
        0.3, deliver, (state, address, emulator_mail(address, "otp", "XYZ789", "http://l/?code=x"))
    )
    later.start()
    started = time.monotonic()
    mail = mailbox.wait_for(to=address, kind="otp", timeout=5)
    assert 0.25 < time.monotonic() - started < 3
    assert (mail.kind, mail.code, mail.to, mail.project_id) == ("otp", "XYZ789", (address,), "internal")
    assert mailbox.latest(address) == mail
    assert mailbox.wait_for(to=address, kind="verification").id == old
    with pytest.raises(MailTimeout) as info:
        mailbox.wait_for(to=address, timeout=0.2, after=mail)
    message = str(info.value)
    assert message.startswith(f"no mail to {address} newer than {mail.id} arrived within 0.2 s.")
    assert "otp: 'otp mail'" in message
    assert f"{served}/api/v1/stack-emulator/messages?to=eve%40x.test" in message
    assert "console at http://127.0.0.1:1/console/" in message
    mailbox.clear(address)
    assert mailbox.messages(to=address) == []
