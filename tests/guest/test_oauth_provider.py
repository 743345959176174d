"""The mock OIDC provider: discovery, the authorization code flow with PKCE, userinfo."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from types import SimpleNamespace

import jwt
import pytest
from werkzeug.test import Client

REDIRECT = "http://localhost:8102/api/v1/auth/oauth/callback/mock?x=1"
SECRET = "s:cret-" + "x" * 32  # PyJWT warns about HMAC keys under 32 bytes


@pytest.fixture
def client(state: SimpleNamespace) -> Client:
    from stackd import oauth_provider

    return Client(oauth_provider.create_app(state))


@pytest.mark.parametrize(
    ("host", "issuer"),
    [
        ("localhost:27714", "http://localhost:27714"),
        ("127.0.0.1:26704", "http://localhost:26704"),
        ("[::1]:30000", "http://localhost:30000"),
        ("localhost", "http://localhost:26704"),
    ],
)
def test_discovery_follows_the_port_the_client_used(client: Client, host: str, issuer: str) -> None:
    r = client.get("/.well-known/openid-configuration", headers={"Host": host})
    doc = r.json
    assert doc["issuer"] == issuer
    assert doc["jwks_uri"] == issuer + "/jwks"
    assert doc["token_endpoint"] == issuer + "/token"
    assert r.headers["Cache-Control"] == "no-store"
    assert client.get("/jwks").json == {"keys": []}


def authorize(client: Client, **extra: str) -> dict[str, str]:
    params = {"client_id": "cid", "redirect_uri": REDIRECT, "state": "s1", **extra}
    page = client.get("/auth", query_string=params)
    assert page.status_code == 200
    assert b'name="state" value="s1"' in page.data
    r = client.post("/auth", data={**params, "email": "Ada@example.com"}, headers={"Host": "localhost:27714"})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(REDIRECT + "&")
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert (back["state"], back["iss"]) == ("s1", "http://localhost:27714")
    return back


def test_code_flow_with_pkce_basic_auth_and_refresh(client: Client) -> None:
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    back = authorize(client, nonce="n1", code_challenge=challenge, code_challenge_method="S256")
    form = {"grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT}
    credentials = "cid:" + urllib.parse.quote(SECRET)  # Basic credentials are form-encoded first
    basic = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    assert client.post("/token", data={**form, "code_verifier": "wrong"}, headers=basic).status_code == 400
    back = authorize(client, nonce="n1", code_challenge=challenge, code_challenge_method="S256")
    form["code"] = back["code"]
    r = client.post("/token", data={**form, "code_verifier": verifier}, headers=basic)
    tokens = r.json
    assert (r.status_code, tokens["token_type"]) == (200, "Bearer")
    claims = jwt.decode(tokens["id_token"], SECRET, algorithms=["HS256"], audience="cid")
    assert (claims["email"], claims["nonce"]) == ("Ada@example.com", "n1")
    assert claims["iss"] == "http://localhost:26704"  # the test client's Host has no port
    r = client.post("/token", data={**form, "code_verifier": verifier}, headers=basic)
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")  # a code is used once
    me = client.get("/me", headers={"Authorization": "Bearer " + tokens["access_token"]}).json
    assert (me["email"], me["sub"]) == ("Ada@example.com", claims["sub"])
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "cid"}
    again = client.post("/token", data=refresh).json
    assert again["refresh_token"] == tokens["refresh_token"]
    assert (
        client.post("/userinfo", headers={"Authorization": "Bearer " + again["access_token"]}).status_code
        == 200
    )


def test_login_hint_skips_the_form(client: Client) -> None:
    r = client.get("/auth", query_string={"redirect_uri": "https://app.test/cb", "login_hint": "h@x.test"})
    assert r.status_code == 302
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))["code"]
    tokens = client.post("/token", data={"grant_type": "authorization_code", "code": code}).json
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["email"] == "h@x.test"


def test_errors(client: Client) -> None:
    cases = [
        (client.get("/auth", query_string={"redirect_uri": "javascript:alert(1)"}), 400, "invalid_request"),
        (client.post("/token", data={"grant_type": "password"}), 400, "unsupported_grant_type"),
        (
            client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x"}),
            400,
            "invalid_grant",
        ),
        (client.post("/token", headers={"Authorization": "Basic !!!"}), 401, "invalid_client"),
        (client.get("/me"), 401, "invalid_token"),
        (client.get("/token"), 405, "METHOD_NOT_ALLOWED"),
        (client.get("/nothing"), 404, "not_found"),
    ]
    for r, status, code in cases:
        assert (r.status_code, r.json["error"]) == (status, code)
        assert r.json["error_description"]
    assert client.get("/me").headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert client.get("/token").headers["Allow"] == "POST"


def test_expired_codes_and_tokens_are_purged(state: SimpleNamespace) -> None:
    from stackd.oauth_provider import OAuthStore

    store = OAuthStore()
    code = store.issue_code({"redirect_uri": REDIRECT}, "e@x.test")
    _, access, _ = store.redeem({"grant_type": "authorization_code", "code": code}, "cid")
    assert store.user_of(access) == "e@x.test"
    store.tokens[access]["exp"] = 0
    assert store.user_of(access) is None
    store.issue_code({"redirect_uri": REDIRECT}, "e@x.test")
    assert access not in store.tokens


def test_authorize_alias_name_cancel_and_identities_used_before(client: Client) -> None:
    params = {"client_id": "github", "redirect_uri": REDIRECT, "state": "s2"}
    page = client.get("/authorize", query_string=params)
    assert page.status_code == 200
    assert b'<form id="sign-in" method="post" action="/authorize">' in page.data
    assert b'class="identity"' not in page.data  # nobody signed in yet
    r = client.post("/authorize", data={**params, "email": "grace@example.com", "name": "Grace Hopper"})
    assert r.status_code == 302
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))["code"]
    tokens = client.post("/token", data={"grant_type": "authorization_code", "code": code}).json
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (claims["email"], claims["name"]) == ("grace@example.com", "Grace Hopper")
    me = client.get("/me", headers={"Authorization": "Bearer " + tokens["access_token"]}).json
    assert (me["email"], me["name"], me["email_verified"]) == ("grace@example.com", "Grace Hopper", True)
    again = client.get("/authorize", query_string=params).data
    assert b'class="identity"' in again
    assert b"Grace Hopper (grace@example.com)" in again
    cancel = client.post("/authorize", data={**params, "cancel": "1"})
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(cancel.headers["Location"]).query))
    assert (cancel.status_code, back["error"], back["state"]) == (302, "access_denied", "s2")
    assert "code" not in back


def test_login_hint_with_a_name_and_no_name_without_one(client: Client) -> None:
    def sign_in(**hints: str) -> dict[str, str]:
        r = client.get("/auth", query_string={"redirect_uri": "https://app.test/cb", **hints})
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))["code"]
        access = client.post("/token", data={"grant_type": "authorization_code", "code": code}).json[
            "access_token"
        ]
        return dict(client.get("/me", headers={"Authorization": "Bearer " + access}).json)

    assert sign_in(login_hint="n@x.test", login_name="Nia")["name"] == "Nia"
    assert "name" not in sign_in(login_hint="m@x.test")


def test_an_identity_must_be_an_email_address(client: Client) -> None:
    r = client.post("/auth", data={"redirect_uri": REDIRECT, "email": "not an address"})
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert "email address" in r.json["error_description"]
