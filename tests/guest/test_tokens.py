"""Access-token claims, signing and verification (stackd/tokens.py)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from stackd import errors, tokens

USER: dict[str, Any] = {
    "id": "3f1c2a4e-0000-4000-8000-000000000001",
    "display_name": "Ann",
    "primary_email": "ann@example.com",
    "primary_email_verified": True,
    "selected_team_id": None,
    "signed_up_at_millis": 1_700_000_000_123,
    "is_anonymous": False,
    "is_restricted": False,
    "restricted_reason": None,
    "requires_totp_mfa": False,
}
# Every claim of stack-shared's accessTokenPayloadSchema (schema-fields.js).
PAYLOAD_SCHEMA_CLAIMS = {
    "sub",
    "exp",
    "iat",
    "iss",
    "aud",
    "project_id",
    "branch_id",
    "refresh_token_id",
    "role",
    "name",
    "email",
    "email_verified",
    "selected_team_id",
    "signed_up_at",
    "is_anonymous",
    "is_restricted",
    "restricted_reason",
    "requires_totp_mfa",
}


class FakeCursor:
    """Just enough of a cursor for the signing-key queries of tokens.py."""

    def __init__(self) -> None:
        self.kid, self.pem = tokens.new_signing_key()
        self.active = True
        self._rows: list[dict[str, Any]] = []

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        row = {"kid": self.kid, "private_pem": self.pem}
        if "WHERE kid = %s" in sql:
            self._rows = [row] if params[0] == self.kid and self.active else []
        else:
            self._rows = [row] if self.active else []

    def fetchone(self) -> dict[str, Any] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[dict[str, Any]]:
        return self._rows


def test_claims_carry_every_field_of_the_payload_schema() -> None:
    claims = tokens.access_token_claims(USER, "internal", "sess-1", "http://127.0.0.1:26701/", now=1000)
    assert set(claims) == PAYLOAD_SCHEMA_CLAIMS
    assert claims["iss"] == "http://127.0.0.1:26701/api/v1/projects/internal"
    assert claims["aud"] == "internal"
    assert claims["exp"] - claims["iat"] == tokens.ACCESS_TOKEN_SECONDS
    assert claims["signed_up_at"] == 1_700_000_000
    assert claims["role"] == "authenticated"
    assert claims["refresh_token_id"] == "sess-1"


def test_anonymous_users_get_upstreams_anonymous_issuer_and_audience() -> None:
    claims = tokens.access_token_claims(dict(USER, is_anonymous=True), "p1", "s", "http://h:1", now=0)
    assert claims["iss"] == "http://h:1/api/v1/projects-anonymous-users/p1"
    assert claims["aud"] == "p1:anon"


def test_a_signed_token_verifies_with_the_published_jwks() -> None:
    cur = FakeCursor()
    token = tokens.sign_access_token(cur, tokens.access_token_claims(USER, "internal", "s", "http://h:1"))
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": cur.kid, "typ": "JWT"}
    [jwk] = tokens.jwks(cur)["keys"]
    assert (jwk["kid"], jwk["alg"], jwk["crv"]) == (cur.kid, "ES256", "P-256")
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience="internal")
    assert claims["sub"] == USER["id"]
    assert tokens.decode_access_token(cur, token, "internal")["email"] == "ann@example.com"


def test_expired_tokens_raise_access_token_expired_with_details() -> None:
    cur = FakeCursor()
    claims = tokens.access_token_claims(USER, "internal", "s9", "http://h:1", now=time.time() - 3600)
    token = tokens.sign_access_token(cur, claims)
    with pytest.raises(errors.KnownError) as info:
        tokens.decode_access_token(cur, token, "internal")
    assert info.value.code == "ACCESS_TOKEN_EXPIRED"
    assert info.value.details == {
        "expired_at_millis": claims["exp"] * 1000,
        "project_id": "internal",
        "user_id": USER["id"],
        "refresh_token_id": "s9",
    }


def test_tokens_of_another_project_or_a_retired_key_are_refused() -> None:
    cur = FakeCursor()
    token = tokens.sign_access_token(cur, tokens.access_token_claims(USER, "other", "s", "http://h:1"))
    with pytest.raises(errors.KnownError) as info:
        tokens.decode_access_token(cur, token, "internal")
    assert info.value.code == "INVALID_PROJECT_FOR_ACCESS_TOKEN"
    cur.active = False  # the key was rotated away
    with pytest.raises(errors.KnownError) as info:
        tokens.decode_access_token(cur, token, "other")
    assert info.value.code == "UNPARSABLE_ACCESS_TOKEN"
    with pytest.raises(errors.KnownError):
        tokens.decode_access_token(cur, "not-a-jwt", "internal")
