"""One-time passwords and API keys without a database (stackd/otp.py, stackd/api_keys.py)."""

from __future__ import annotations

import datetime
import re
import uuid
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from stackd import api_keys, codes, errors, inputs, otp
from stackd.validate import MISSING, Fields

KEY_ID = "0f8e3c4a-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
RANDOM_PART = "0123456789abcdefghjkmnpqrstvwxyz0123456789abc"
# stack-shared's parseProjectApiKey (2.8.108) accepts both: prefix, id, type, flags and checksum.
UPSTREAM_SECRET_KEY = (
    "sk_0123456789abcdefghjkmnpqrstvwxyz0123456789abc0f8e3c4a1b2d4e5f8a9b0c1d2e3f4a5buser1574ck4u7h836b9842"
)
UPSTREAM_PUBLIC_KEY = (
    "pk_0123456789abcdefghjkmnpqrstvwxyz0123456789abc0f8e3c4a1b2d4e5f8a9b0c1d2e3f4a5bteam3574ck4u7h9c357012"
)
# stack-shared's parseApiKeyParts regex.
KEY_RE = re.compile(
    r"^([a-zA-Z0-9_]+)_([a-zA-Z0-9_]{45})([a-zA-Z0-9_]{32})([a-zA-Z0-9_]{4})([a-zA-Z0-9_]{1})(574ck4u7h)([a-zA-Z0-9_]{8})$"
)


def request(body: Any, method: str = "POST", path: str = "/api/v1/x") -> SimpleNamespace:
    """What inputs.read_body uses of a Context."""
    return SimpleNamespace(
        method=method, path=path, body=lambda: body, user_id=None, resolve_user_id=lambda raw: raw
    )


def problems(body: Any, spec: dict[str, Any], required: tuple[str, ...] = ()) -> list[str]:
    f, _ = inputs.read_body(request(body), spec, required)
    return f.problems


# ---------------------------------------------------------------- API key secrets


def test_secrets_match_stack_shared_byte_for_byte() -> None:
    assert api_keys.make_secret(KEY_ID, "user", False, random_part=RANDOM_PART) == UPSTREAM_SECRET_KEY
    assert (
        api_keys.make_secret(uuid.UUID(KEY_ID), "team", True, random_part=RANDOM_PART) == UPSTREAM_PUBLIC_KEY
    )


@pytest.mark.parametrize(
    ("key_type", "is_public"), [("user", False), ("user", True), ("team", False), ("team", True)]
)
def test_fresh_secrets_parse_as_upstreams(key_type: str, is_public: bool) -> None:
    key_id = str(uuid.uuid4())
    secret = api_keys.make_secret(key_id, key_type, is_public)
    match = KEY_RE.match(secret)
    assert match is not None, secret
    prefix, random_part, id_part, type_part, flag, _, checksum = match.groups()
    assert prefix == ("pk" if is_public else "sk")
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{45}", random_part)
    assert id_part == key_id.replace("-", "")
    assert type_part == key_type
    assert int(flag, 32) % 2 == 1  # self-hosted, as upstream reads the flag
    assert bool(int(flag, 32) & 2) is is_public
    assert checksum == "%08x" % (zlib.crc32(secret[:-8].encode()) & 0xFFFFFFFF)


def test_secrets_differ_and_are_stored_as_hashes() -> None:
    a, b = (api_keys.make_secret(KEY_ID, "user", False) for _ in range(2))
    assert a != b
    assert api_keys.secret_hash(a) != api_keys.secret_hash(b)
    assert re.fullmatch(r"[0-9a-f]{64}", api_keys.secret_hash(a))
    assert a not in api_keys.secret_hash(a)


# ---------------------------------------------------------------- API key shapes


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.UUID(KEY_ID),
        "user_id": uuid.UUID("11111111-1111-4111-8111-111111111111"),
        "team_id": None,
        "description": "CI token",
        "is_public": False,
        "created_at": datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
        "expires_at": None,
        "manually_revoked_at": None,
        "last_four": "9842",
    }
    base.update(overrides)
    return base


def test_read_shape_leaves_unset_times_out() -> None:
    assert api_keys.key_json(row()) == {
        "id": KEY_ID,
        "description": "CI token",
        "is_public": False,
        "created_at_millis": 1767323045678,
        "value": {"last_four": "9842"},
        "type": "user",
        "user_id": "11111111-1111-4111-8111-111111111111",
    }


def test_read_shape_of_a_revoked_expiring_team_key() -> None:
    when = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    out = api_keys.key_json(
        row(user_id=None, team_id=uuid.UUID(KEY_ID), expires_at=when, manually_revoked_at=when)
    )
    assert (out["type"], out["team_id"], "user_id" in out) == ("team", KEY_ID, False)
    assert out["expires_at_millis"] == out["manually_revoked_at_millis"] == 1798761600000


def test_first_view_carries_the_secret_itself() -> None:
    assert api_keys.key_json(row(), secret=UPSTREAM_SECRET_KEY)["value"] == UPSTREAM_SECRET_KEY


# ---------------------------------------------------------------- API key request bodies


@pytest.mark.parametrize(
    ("value", "expected", "problem"),
    [
        (None, None, None),
        (1767323045678, 1767323045678, None),
        (1767323045678.9, 1767323045678, None),  # as new Date(ms).getTime()
        ("soon", MISSING, "body.expires_at_millis must be a `number` type"),
        (True, MISSING, "body.expires_at_millis must be a `number` type"),
        (-1, MISSING, "body.expires_at_millis must be a time in milliseconds since 1970"),
        (1e300, MISSING, "body.expires_at_millis must be a time in milliseconds since 1970"),
    ],
)
def test_expiry_reader(value: Any, expected: Any, problem: str | None) -> None:
    f = Fields(request(None), {"expires_at_millis": value})
    assert api_keys._number(f, "expires_at_millis") == expected
    if problem is None:
        assert f.problems == []
    else:
        assert len(f.problems) == 1, f.problems
        assert f.problems[0].startswith(problem), f.problems


def test_create_body_needs_description_owner_and_expiry() -> None:
    assert problems({}, api_keys._create_body("team"), ("description", "team_id")) == [
        "body.description must be defined",
        "body.expires_at_millis must be defined",
        "body.team_id must be defined",
    ]
    assert problems(
        {"description": "d", "expires_at_millis": None, "team_id": "x", "prefix": "a"},
        api_keys._create_body("team"),
        ("description", "team_id"),
    ) == ["body.team_id must be a valid UUID", "body contains unknown properties: prefix"]


def test_a_revoked_key_stays_revoked() -> None:
    assert problems({"revoked": True, "description": "x"}, api_keys.UPDATE_BODY) == []
    assert problems({"revoked": False}, api_keys.UPDATE_BODY) == [
        "body.revoked must be one of the following values: true"
    ]
    assert problems({"expires_at_millis": 1}, api_keys.UPDATE_BODY) == [
        "body contains unknown properties: expires_at_millis"
    ]


def test_api_key_errors_carry_what_the_sdk_rebuilds() -> None:
    wrong = errors.wrong_api_key_type("team", "user")
    assert (wrong.code, wrong.status, wrong.details) == (
        "WRONG_API_KEY_TYPE",
        400,
        {"expected_type": "team", "actual_type": "user"},
    )
    statuses = {
        e.code: e.status
        for e in (errors.api_key_not_found(), errors.api_key_revoked(), errors.api_key_expired())
    }
    assert statuses == {"API_KEY_NOT_FOUND": 404, "API_KEY_REVOKED": 401, "API_KEY_EXPIRED": 401}


# ---------------------------------------------------------------- one-time passwords


def test_a_code_is_a_password_and_a_nonce() -> None:
    code = codes.generate()
    password, nonce = otp.split_code(code)
    assert (len(password), len(nonce)) == (6, 39)
    assert password == code[:6].upper()
    assert password.lower() + nonce == code


def test_codes_sharing_a_nonce_share_its_hash() -> None:
    code = codes.generate()
    _, nonce = otp.split_code(code)
    assert otp.nonce_hash(code) == otp.nonce_hash("ZZZZZZ" + nonce.upper())
    assert otp.nonce_hash(code) != otp.nonce_hash(codes.generate())
    assert codes.hash_code(code.upper()) == codes.hash_code(code)


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("a@example.com", None),
        ("throwaway.mail+token@example.com", None),
        ("a@example.c", 'body.email must match the following: "/'),
        ("a..b@example.com", 'body.email must match the following: "/'),
        ("a" * 250 + "@example.com", "body.email must be at most 256 characters"),
    ],
)
def test_sign_in_addresses_as_strict_email_schema(email: str, problem: str | None) -> None:
    found = otp.sign_in_email_problem(email)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem), found


def test_send_body_takes_the_sdks_bot_challenge_fields() -> None:
    body = {
        "email": "a@example.com",
        "callback_url": "http://localhost:3000/cb",
        "bot_challenge_unavailable": "true",
    }
    assert problems(body, otp.SEND_BODY, ("email", "callback_url")) == []
    assert problems(
        {"email": "a@example.com", "callback_url": "not a url", "bot_challenge_phase": "loud"},
        otp.SEND_BODY,
        ("email", "callback_url"),
    ) == [
        "body.callback_url contains spaces",
        "body.bot_challenge_phase must be one of the following values: invisible, visible",
    ]
    assert problems(None, otp.SEND_BODY) == ["body must be defined"]
