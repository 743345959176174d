"""Error bodies and headers as upstream sends them (stackd/errors.py, stackd/validate.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from stackd import errors
from stackd.validate import MISSING, Fields


def test_known_error_body_and_headers() -> None:
    exc = errors.user_email_already_exists("a@example.com")
    assert exc.status == 409
    assert json.loads(exc.body()) == {
        "code": "USER_EMAIL_ALREADY_EXISTS",
        "details": {"email": "a@example.com", "would_work_if_email_was_verified": False},
        "error": "A user with email a@example.com already exists.",
    }
    assert ("X-Stack-Known-Error", "USER_EMAIL_ALREADY_EXISTS") in exc.headers()
    assert ("X-Hexclave-Known-Error", "USER_EMAIL_ALREADY_EXISTS") in exc.headers()


def test_errors_without_details_omit_the_key_as_upstream_does() -> None:
    body = json.loads(errors.email_password_mismatch().body())
    assert body == {"code": "EMAIL_PASSWORD_MISMATCH", "error": "Wrong e-mail or password."}


def test_status_errors_are_plain_text_without_a_known_error_header() -> None:
    exc = errors.route_not_found("http://127.0.0.1:26701/api/v1/nope")
    assert exc.status == 404
    assert all(name.lower() != "x-stack-known-error" for name, _ in exc.headers())
    assert b"/api/v1/nope" in exc.body()


def test_fields_collect_every_problem_into_one_schema_error() -> None:
    ctx = SimpleNamespace(method="POST", path="/api/v1/auth/password/sign-up")
    f = Fields(ctx, {"email": "not-an-email", "password": 12})
    assert f.email("email", required=True) is MISSING
    assert f.string("password", required=True) is MISSING
    assert f.string("callback", required=True) is MISSING
    with pytest.raises(errors.KnownError) as info:
        f.check()
    exc = info.value
    assert exc.code == "SCHEMA_ERROR"
    assert exc.details == {"message": exc.message}
    assert exc.message.splitlines() == [
        "Request validation failed on POST /api/v1/auth/password/sign-up:",
        "  - body.email must be a valid email address",
        "  - body.password must be a `string` type",
        "  - body.callback must be defined",
    ]


def test_fields_reject_a_body_that_is_not_an_object() -> None:
    ctx = SimpleNamespace(method="PATCH", path="/api/v1/users/me")
    f = Fields(ctx, [1, 2])
    assert f.problems == ["body must be a `object` type"]
