"""OAuth sign-in through the mock provider with plain HTTP, the way a Python test without a
browser does it (README, "OAuth sign-in"): tests/vm/test_oauth.py runs it on the compat image,
on a port block of its own, so the backend must send the browser to that block's mock port."""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.parse
from typing import Any

import httpx

from pytest_stack_emulator.emulator import StackEmulator

REDIRECT_URI = "http://localhost:3000/handler/oauth-callback"


def sign_in(stack: StackEmulator, email: str, name: str = "") -> dict[str, Any]:
    """Authorize (redirect mode), sign in at the mock with login_hint, trade the code."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": stack.project_id, "client_secret": stack.publishable_client_key,
        "redirect_uri": REDIRECT_URI, "scope": "legacy", "state": "app-state",
        "grant_type": "authorization_code", "code_challenge": challenge, "code_challenge_method": "S256",
        "response_type": "code", "type": "authenticate",
    }  # fmt: skip
    with httpx.Client(timeout=30) as browser:  # a cookie jar: the callback wants authorize's cookie
        r = browser.get(f"{stack.backend_url}/api/v1/auth/oauth/authorize/github", params=query)
        assert r.status_code == 307, r.text
        mock = httpx.URL(r.headers["location"])
        assert (mock.host, mock.port) == ("localhost", stack.ports["mock_oauth"]), mock
        r = browser.get(mock.copy_merge_params({"login_hint": email, "login_name": name}))
        assert r.status_code == 302, r.text
        callback = r.headers["location"]
        assert callback.startswith(f"{stack.backend_url}/api/v1/auth/oauth/callback/github?"), callback
        r = browser.get(callback)
        assert r.status_code == 303, r.text
        landed = r.headers["location"]
        assert landed.startswith(REDIRECT_URI + "?"), landed
        back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))
        assert back["state"] == "app-state"
        form = {
            "grant_type": "authorization_code", "code": back["code"], "code_verifier": verifier,
            "redirect_uri": REDIRECT_URI, "client_id": stack.project_id, "client_secret": stack.publishable_client_key,
        }  # fmt: skip
        r = browser.post(f"{stack.backend_url}/api/v1/auth/oauth/token", data=form)
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


def check_oauth_sign_in(stack: StackEmulator) -> None:
    email = f"oauth-{secrets.token_hex(4)}@example.com"
    first = sign_in(stack, email, "Ada Lovelace")
    assert first["is_new_user"] is True
    signed_in = {"x-stack-access-token": first["access_token"]}
    with stack.client("client", headers=signed_in) as client:
        me = client.get("/api/v1/users/me").json()
        assert (me["primary_email"], me["primary_email_verified"], me["display_name"]) == (
            email,
            True,
            "Ada Lovelace",
        )
        assert [p["id"] for p in me["oauth_providers"]] == ["github"]
        r = client.post("/api/v1/connected-accounts/me/github/access-token", json={})
        assert r.status_code == 201, r.text
        provider_token = r.json()["access_token"]
    userinfo = httpx.get(f"{stack.mock_oauth_url}/me", headers={"authorization": f"Bearer {provider_token}"})
    assert userinfo.json()["email"] == email
    again = sign_in(stack, email)
    assert again["is_new_user"] is False
    with stack.client("client", headers={"x-stack-access-token": again["access_token"]}) as client:
        assert client.get("/api/v1/users/me").json()["id"] == me["id"]
