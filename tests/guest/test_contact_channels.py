"""Contact channels and one-time codes without a database (stackd/contact_channels.py, codes.py)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from types import SimpleNamespace

import pytest
from stackd import codes, contact_channels, errors
from stackd.validate import Fields

CTX = SimpleNamespace(method="POST", path="/api/v1/contact-channels")


def fields(data: object) -> Fields:
    return Fields(CTX, data)


# ---------------------------------------------------------------- codes


def test_codes_look_like_upstreams() -> None:
    for _ in range(50):
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{45}", codes.generate())


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (
            "http://localhost:3000/handler/email-verification",
            "http://localhost:3000/handler/email-verification?code=C",
        ),
        ("http://localhost:12345", "http://localhost:12345/?code=C"),
        ("http://localhost:3000/cb?x=1", "http://localhost:3000/cb?x=1&code=C"),
        ("http://localhost:3000/cb?code=old&y=2", "http://localhost:3000/cb?code=C&y=2"),
        ("http://localhost:3000/cb#frag", "http://localhost:3000/cb?code=C#frag"),
    ],
)
def test_link_sets_the_code_parameter_as_url_search_params_set(callback: str, expected: str) -> None:
    assert codes.link(callback, "C") == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://localhost:3000/x", None),
        ("https://example.com", None),
        ("ftp://example.com", None),
        ("not a url", "body.callback_url contains spaces"),
        ("notaurl", "body.callback_url is not a valid URL"),
        ("http://", "body.callback_url is not a valid URL"),
        ("", "body.callback_url is not a valid URL"),
    ],
)
def test_url_problem(value: str, problem: str | None) -> None:
    assert codes.url_problem("body.callback_url", value) == problem


@pytest.mark.parametrize(
    ("config", "url", "allowed"),
    [
        ({}, "http://localhost:3000/cb", True),
        ({}, "http://app.localhost/cb", True),
        ({}, "http://127.0.0.1:8080/cb", True),
        ({"allow_localhost": False}, "http://localhost:3000/cb", False),
        ({}, "http://evil-website.example.com", False),
        (
            {"domains": [{"domain": "https://app.example.com", "handler_path": "/handler"}]},
            "https://app.example.com/handler/x",
            True,
        ),
        ({"domains": [{"domain": "https://app.example.com"}]}, "http://app.example.com/x", False),
        ({"domains": [{"domain": "https://app.example.com"}]}, "https://app.example.com:8443/x", False),
        ({"domains": [{"domain": "https://app.example.com:443"}]}, "https://app.example.com/x", True),
        ({"domains": [{"domain": "https://*.example.com"}]}, "https://a.example.com/x", True),
        ({"domains": [{"domain": "https://*.example.com"}]}, "https://a.b.example.com/x", False),
        ({"domains": [{"domain": "https://**.example.com"}]}, "https://a.b.example.com/x", True),
        ({"domains": [{"domain": "http://*:3000"}]}, "http://web:3000/x", True),
        ({}, "not a url", False),
    ],
)
def test_redirect_allowed_as_upstreams_validate_redirect_url(config: dict, url: str, allowed: bool) -> None:
    assert codes.redirect_allowed(config, url) is allowed


def test_check_redirect_raises_the_known_error() -> None:
    with pytest.raises(errors.KnownError) as info:
        codes.check_redirect({}, "https://evil.example.com")
    assert (info.value.code, info.value.status, info.value.details) == (
        "REDIRECT_URL_NOT_WHITELISTED",
        400,
        None,
    )


def test_code_field_requires_45_characters() -> None:
    f = fields({"code": "abc"})
    codes.code_field(f)
    assert f.problems == ["body.code must be exactly 45 characters"]
    f = fields({})
    codes.code_field(f)
    assert f.problems == ["body.code must be defined"]
    f = fields({"code": "x" * 45})
    assert codes.code_field(f) == "x" * 45
    assert f.problems == []


class FakeCursor:
    """Answers the one UPDATE ... RETURNING of codes.lookup with a preset row."""

    def __init__(self, row: dict | None) -> None:
        self.row = row
        self.calls: list[tuple[str, tuple]] = []

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.calls.append((sql, params))

    def fetchone(self) -> dict | None:
        return self.row


def code_row(**kw: object) -> dict:
    row = {
        "code_hash": "h",
        "used_at": None,
        "expired": False,
        "attempts_before": 0,
        "user_id": None,
        "data": {},
    }
    row.update(kw)
    return row


@pytest.mark.parametrize(
    ("row", "code"),
    [
        (None, "VERIFICATION_CODE_NOT_FOUND"),
        (code_row(expired=True, used_at="yesterday"), "VERIFICATION_CODE_EXPIRED"),
        (code_row(used_at="yesterday"), "VERIFICATION_CODE_ALREADY_USED"),
        (code_row(attempts_before=20), "VERIFICATION_CODE_MAX_ATTEMPTS_REACHED"),
    ],
)
def test_lookup_errors_in_upstreams_order(row: dict | None, code: str) -> None:
    with pytest.raises(errors.KnownError) as info:
        codes.lookup(FakeCursor(row), "internal", "purpose", "x" * 45)
    assert info.value.code == code


def test_lookup_lowercases_the_code_and_counts_the_attempt() -> None:
    cur = FakeCursor(code_row(attempts_before=19))
    assert codes.lookup(cur, "internal", "purpose", "ABC")["code_hash"] == "h"
    sql, params = cur.calls[0]
    assert "attempts = attempts + 1" in sql
    assert params[0] == hashlib.sha256(b"abc").hexdigest()


# ---------------------------------------------------------------- contact channels


def test_channel_json_is_the_read_shape() -> None:
    uid, cid = uuid.uuid4(), uuid.uuid4()
    row = {
        "user_id": uid,
        "id": cid,
        "type": "email",
        "value": "a@example.com",
        "is_primary": True,
        "is_verified": False,
        "used_for_auth": True,
        "project_id": "internal",
        "created_at": None,
    }
    assert contact_channels.channel_json(row) == {
        "user_id": str(uid),
        "id": str(cid),
        "type": "email",
        "value": "a@example.com",
        "is_primary": True,
        "is_verified": False,
        "used_for_auth": True,
    }


def test_normalize_email_trims_and_lowercases() -> None:
    assert contact_channels.normalize_email("  Ann.Lee+X@Example.COM ") == "ann.lee+x@example.com"


def test_client_create_body() -> None:
    f = fields({"user_id": "me", "type": "email", "value": "A@example.com", "used_for_auth": False})
    data = contact_channels.read_channel_fields(f, contact_channels.CLIENT_CREATE)
    assert data == {"user_id": "me", "type": "email", "value": "A@example.com", "used_for_auth": False}


def test_client_create_rejects_is_verified_and_bad_values() -> None:
    f = fields(
        {"user_id": "nope", "type": "phone", "value": "x", "used_for_auth": "yes", "is_verified": True}
    )
    with pytest.raises(errors.KnownError) as info:
        contact_channels.read_channel_fields(f, contact_channels.CLIENT_CREATE)
    message = info.value.details["message"]
    assert message.startswith("Request validation failed on POST /api/v1/contact-channels:\n")
    for line in (
        "body.user_id must be a valid UUID",
        "body.type must be one of the following values: email",
        "body.used_for_auth must be a `boolean` type",
        "body contains unknown properties: is_verified",
    ):
        assert f"  - {line}" in message


def test_create_requires_user_id_type_value_and_used_for_auth() -> None:
    with pytest.raises(errors.KnownError) as info:
        contact_channels.read_channel_fields(fields({}), contact_channels.SERVER_CREATE)
    message = info.value.details["message"]
    for name in ("user_id", "type", "value", "used_for_auth"):
        assert f"body.{name} must be defined" in message


def test_update_body_is_optional_and_server_may_set_is_verified() -> None:
    assert contact_channels.read_channel_fields(fields({}), contact_channels.CLIENT_UPDATE) == {}
    f = fields({"is_verified": True, "is_primary": False})
    assert contact_channels.read_channel_fields(f, contact_channels.SERVER_UPDATE) == {
        "is_verified": True,
        "is_primary": False,
    }
    with pytest.raises(errors.KnownError):
        contact_channels.read_channel_fields(fields({"is_verified": True}), contact_channels.CLIENT_UPDATE)


def test_update_reports_body_and_path_problems_together() -> None:
    with pytest.raises(errors.KnownError) as info:
        contact_channels.read_channel_fields(
            fields({"value": "not-an-email"}),
            contact_channels.CLIENT_UPDATE,
            contact_channels.path_problems("me", "x"),
        )
    message = info.value.details["message"]
    assert "  - body.value must be a valid email" in message
    assert "  - params.contact_channel_id must be a valid UUID" in message


def test_path_problems() -> None:
    cid = str(uuid.uuid4())
    assert contact_channels.path_problems("me", cid) == []
    assert contact_channels.path_problems(str(uuid.uuid4()), cid) == []
    assert contact_channels.path_problems("bob", "x") == [
        "params.user_id must be a valid UUID",
        "params.contact_channel_id must be a valid UUID",
    ]


def test_used_for_auth_conflict_details_as_stack_shared_reads_them() -> None:
    exc = errors.contact_channel_already_used_for_auth("a@example.com")
    assert exc.status == 409
    body = json.loads(exc.body())
    assert body["details"] == {
        "type": "email",
        "contact_channel_value": "a@example.com",
        "would_work_if_email_was_verified": False,
    }
    assert (
        body["error"] == 'This email "(a@example.com)" is already used for authentication by another account.'
    )
    assert (
        json.loads(errors.contact_channel_already_used_for_auth().body())["details"]["contact_channel_value"]
        is None
    )


def test_email_is_not_primary_email_details() -> None:
    exc = errors.email_is_not_primary_email("b@example.com", "a@example.com")
    assert (exc.status, exc.details) == (400, {"email": "b@example.com", "primary_email": "a@example.com"})
