"""The host's Mailbox (stack_emulator.mail) against a fake mail catcher: what it asks, what it
makes of the answers, and what its errors say. tests/guest/test_mail_codes.py runs it
against the real route."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_stack_emulator.emulator import StackEmulator
from pytest_stack_emulator.mailbox import Mail, Mailbox, MailboxError, MailTimeout


def item(msg_id: str, kind: str, second: int, code: str | None = "c") -> dict[str, Any]:
    return {
        "id": msg_id,
        "mailbox": "ada",
        "to": ["ada@example.com"],
        "subject": f"{kind} mail",
        "kind": kind,
        "link": f"http://localhost:3000/x?code={code}" if code else None,
        "code": code,
        "project_id": "internal",
        "received_at": f"2026-01-02T03:04:{second:02d}.000+00:00",
        "text": "text",
        "html": "",
    }


class FakeCatcher:
    def __init__(self) -> None:
        self.status = 200
        self.body: Any = []
        self.requests: list[str] = []


@pytest.fixture
def fake() -> Iterator[tuple[FakeCatcher, str]]:
    catcher = FakeCatcher()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            catcher.requests.append(self.path)
            data = json.dumps(catcher.body).encode() if not isinstance(catcher.body, bytes) else catcher.body
            self.send_response(catcher.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield catcher, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_messages_are_parsed_and_the_query_is_sent(fake: tuple[FakeCatcher, str]) -> None:
    catcher, url = fake
    catcher.body = [item("2", "reset", 5), item("1", "verification", 4)]
    got = Mailbox(url).messages(to="ada@example.com", kind="reset")
    assert catcher.requests == ["/api/v1/stack-emulator/messages?to=ada%40example.com&kind=reset&limit=100"]
    assert got[0] == Mail(
        id="2",
        mailbox="ada",
        to=("ada@example.com",),
        subject="reset mail",
        kind="reset",
        code="c",
        link="http://localhost:3000/x?code=c",
        project_id="internal",
        received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        text="text",
        html="",
    )


def test_wait_for_picks_the_newest_of_its_kind_and_honours_after(fake: tuple[FakeCatcher, str]) -> None:
    catcher, url = fake
    catcher.body = [item("3", "otp", 6), item("2", "reset", 5), item("1", "reset", 4)]
    mailbox = Mailbox(url, poll_interval=0.01)
    assert mailbox.wait_for(to="ada@example.com", kind="reset").id == "2"
    assert mailbox.wait_for(to="ada@example.com").id == "3"
    first = Mail.from_json(item("1", "reset", 4))
    assert mailbox.wait_for(to="ada@example.com", kind="reset", after=first).id == "2"
    with pytest.raises(
        MailTimeout, match=r"no reset mail to ada@example.com newer than 2 arrived within 0.05 s"
    ):
        mailbox.wait_for(
            to="ada@example.com", kind="reset", after=Mail.from_json(item("2", "reset", 5)), timeout=0.05
        )
    with pytest.raises(ValueError, match="kind must be one of verification, reset, otp, invitation, other"):
        mailbox.wait_for(to="ada@example.com", kind="magic-link")


def test_timeout_says_what_was_waited_for_and_where_to_look(fake: tuple[FakeCatcher, str]) -> None:
    _, url = fake
    mailbox = Mailbox(url, console_url="http://127.0.0.1:26700/console/", poll_interval=0.01)
    with pytest.raises(MailTimeout) as info:
        mailbox.wait_for(to="bob@example.com", kind="verification", timeout=0.05)
    assert str(info.value) == (
        "no verification mail to bob@example.com arrived within 0.05 s. Its mailbox is empty: check that the "
        f"app sent the mail to this address. Look at {url}/api/v1/stack-emulator/messages?to=bob%40example.com "
        "or the console at http://127.0.0.1:26700/console/"
    )
    assert isinstance(info.value, TimeoutError)


def test_errors_of_the_mail_catcher(fake: tuple[FakeCatcher, str]) -> None:
    catcher, url = fake
    catcher.status, catcher.body = 404, {"code": "NOT_FOUND", "error": "no route"}
    with pytest.raises(
        MailboxError, match="no out-of-band route; use a compat image built from this release"
    ):
        Mailbox(url).messages()
    catcher.status, catcher.body = 400, {"code": "SCHEMA_ERROR", "error": "kind must be one of ..."}
    with pytest.raises(MailboxError, match=r"answered 400: kind must be one of \.\.\."):
        Mailbox(url).messages(kind="x")
    catcher.status, catcher.body = 200, b"<html>"
    with pytest.raises(MailboxError, match="answered 200: <html>"):
        Mailbox(url).messages()
    with pytest.raises(
        MailTimeout,
        match=r"within 0.05 s; the mail catcher did not answer: GET .* answered 200: <html>\. Look at ",
    ):
        Mailbox(url, poll_interval=0.01).wait_for(to="a@b.c", timeout=0.05)


def test_an_unreachable_catcher_times_out_naming_the_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        MailTimeout, match=r"arrived within 0.1 s; the mail catcher did not answer: .*(refused|connect)"
    ):
        Mailbox(f"http://127.0.0.1:{port}", poll_interval=0.02).wait_for(to="a@b.c", timeout=0.1)


def test_the_fixture_handle_offers_the_mailbox() -> None:
    handle = StackEmulator(
        ports={"dashboard": 26700, "backend": 26701, "minio": 26702, "inbucket": 26703, "mock_oauth": 26704},
        project_id="internal",
        publishable_client_key="p",
        secret_server_key="s",
        super_secret_admin_key="a",
        vm_dir=Path("/nonexistent"),
    )
    assert (handle.mail.inbucket_url, handle.mail.console_url) == (
        "http://127.0.0.1:26703",
        "http://127.0.0.1:26700/console/",
    )
    handle.project_id = "a project"
    assert handle.mail.console_url == "http://127.0.0.1:26700/console/?project=a+project"
