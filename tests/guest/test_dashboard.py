"""The dashboard port's handler pages."""

from __future__ import annotations

from types import SimpleNamespace

from werkzeug.test import Client


def test_pages(state: SimpleNamespace) -> None:
    from stackd import dashboard

    client = Client(dashboard.create_app(state))
    r = client.get("/handler/sign-in")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"host port 26701" in r.data
    assert b"<h1>Sign up</h1>" in client.get("/handler/signup/").data
    assert client.get("/").headers["Location"] == "/console/"
    assert b"<h1>&lt;b&gt;</h1>" in client.get("/handler/%3Cb%3E").data
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/nothing").status_code == 404
    r = client.post("/handler/sign-in", data=b"x")
    assert (r.status_code, r.headers["Allow"]) == (405, "GET, HEAD")
    assert client.get("/handler/email-verification?code=abc").status_code == 501


def test_email_verification_calls_the_backend_hook(state: SimpleNamespace) -> None:
    from stackd import dashboard

    pending = {"good"}

    def verify(code: str) -> bool:
        if code in pending:
            pending.remove(code)
            return True
        return False

    client = Client(dashboard.create_app(state, verify_email=verify))
    r = client.get("/handler/email-verification", query_string={"code": "good"})
    assert (r.status_code, b"is verified" in r.data) == (200, True)
    assert client.get("/handler/email-verification", query_string={"code": "good"}).status_code == 400
    assert client.get("/handler/email-verification").status_code == 400
