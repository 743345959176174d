"""Request bodies, keys and callback URLs that once gave a 500 or slipped through."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from stackd import codes, errors, keys
from stackd.context import parse_body


def request(content_type: str = "application/json", method: str = "POST") -> SimpleNamespace:
    return SimpleNamespace(method=method, headers={"content-type": content_type})


@pytest.mark.parametrize(
    "body",
    [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": "x\\u0000y"}', b"[" * 5000 + b"]" * 5000],
)
def test_bodies_json_parse_refuses_or_postgres_cannot_store_are_body_parsing_errors(body: bytes) -> None:
    with pytest.raises(errors.KnownError) as info:
        parse_body(request(), body)
    assert info.value.code == "BODY_PARSING_ERROR"
    assert info.value.status == 400


def test_ordinary_json_and_forms_parse() -> None:
    assert parse_body(request(), json.dumps({"a": [1, 2.5, None, "é"]}).encode()) == {
        "a": [1, 2.5, None, "é"]
    }
    form = parse_body(request("application/x-www-form-urlencoded"), b"grant_type=refresh_token&x=")
    assert form == {"grant_type": "refresh_token", "x": ""}
    assert parse_body(request(method="GET"), b"ignored") is None


def test_a_non_ascii_key_does_not_match_instead_of_crashing() -> None:
    placeholder = "0" * 32 + "f" * 32
    assert keys.key_matches(placeholder, placeholder.upper())
    assert not keys.key_matches(placeholder, "é")
    assert not keys.key_matches(placeholder, "")


def test_callback_urls_are_read_as_a_browser_reads_them() -> None:
    assert codes.parse_url("http://evil.example\\@localhost/") == ("http", "evil.example", None)
    assert codes.parse_url("http://ev\til.example/") == ("http", "evil.example", None)
    assert codes.parse_url("http://localhost:3000/handler") == ("http", "localhost", 3000)
