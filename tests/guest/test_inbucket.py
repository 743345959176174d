"""The Inbucket-compatible mail API over the mail store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from werkzeug.test import Client

RAW = (
    b"From: Stack <noreply@stack.test>\r\nTo: ada@example.com\r\nSubject: Verify your email\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nOpen the link.\r\n"
)


@pytest.fixture
def client(state: SimpleNamespace) -> Client:
    from stackd import inbucket

    return Client(inbucket.create_app(state))


def test_listing_message_source_and_seen(client: Client, state: SimpleNamespace) -> None:
    (msg_id,) = state.mail.deliver("noreply@stack.test", ["ada+x@example.com"], RAW)
    r = client.get("/api/v1/mailbox/ada")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    (entry,) = r.json
    assert (entry["id"], entry["subject"], entry["seen"]) == (msg_id, "Verify your email", False)
    assert client.get("/api/v1/mailbox/Ada+other@example.com/").json == r.json
    message = client.get(f"/api/v1/mailbox/ada/{msg_id}").json
    assert message["to"] == ["<ada@example.com>"]
    assert message["body"] == {"text": "Open the link.\r\n", "html": ""}
    assert message["header"]["From"] == ["Stack <noreply@stack.test>"]
    assert client.get("/api/v1/mailbox/ada").json[0]["seen"] is True
    r = client.get(f"/api/v1/mailbox/ada/{msg_id}/source")
    assert (r.data, r.headers["Content-Type"]) == (RAW, "text/plain; charset=utf-8")
    assert client.patch(f"/api/v1/mailbox/ada/{msg_id}", json={"seen": False}).json == "OK"
    assert client.get("/api/v1/mailbox/ada").json[0]["seen"] is False


def test_deletes(client: Client, state: SimpleNamespace) -> None:
    first, *_ = state.mail.deliver("", ["bob@x.test"], RAW)
    state.mail.deliver("", ["bob@x.test"], RAW)
    assert client.delete(f"/api/v1/mailbox/bob/{first}").json == "OK"
    assert client.delete(f"/api/v1/mailbox/bob/{first}").status_code == 404
    assert len(client.get("/api/v1/mailbox/bob").json) == 1
    assert client.delete("/api/v1/mailbox/bob").json == "OK"
    assert client.get("/api/v1/mailbox/bob").json == []


def test_index_lists_mailboxes(client: Client, state: SimpleNamespace) -> None:
    state.mail.deliver("", ["carol@x.test"], RAW)
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<a href="/api/v1/mailbox/carol">carol</a>' in r.data
    assert client.head("/status").status_code == 200


def test_errors_are_json(client: Client, state: SimpleNamespace) -> None:
    (msg_id,) = state.mail.deliver("", ["dan@x.test"], RAW)
    cases = [
        (client.get("/api/v1/mailbox/dan/nope"), 404, "NOT_FOUND"),
        (client.get("/api/v1/mailbox/dan/nope/source"), 404, "NOT_FOUND"),
        (client.get("/api/v1/mailbox/two%20words"), 400, "INVALID_MAILBOX"),
        (client.get("/api/v2/nothing"), 404, "NOT_FOUND"),
        (client.post("/api/v1/mailbox/dan"), 405, "METHOD_NOT_ALLOWED"),
        (client.patch(f"/api/v1/mailbox/dan/{msg_id}", json={"seen": "yes"}), 400, "SCHEMA_ERROR"),
        (client.patch(f"/api/v1/mailbox/dan/{msg_id}", data=b"{"), 400, "BODY_PARSING_ERROR"),
        (client.patch(f"/api/v1/mailbox/dan/{msg_id}", data=b"x" * (1 << 21)), 413, "PAYLOAD_TOO_LARGE"),
    ]
    for r, status, code in cases:
        assert (r.status_code, r.json["code"]) == (status, code)
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert client.post("/api/v1/mailbox/dan").headers["Allow"] == "DELETE, GET, HEAD"
