"""OAuth sign-in's parts without a database: the backend as a client of the mock provider
(stackd/oauth_client.py, over HTTP against the real mock) and OAuth accounts' shapes
(stackd/oauth_accounts.py)."""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from stackd import errors, oauth_accounts, oauth_client
from stackd.config import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(**env: str) -> Config:
    return Config(
        {
            "STACK_EMULATOR_PORT_PREFIX": "81",
            "STACK_EMULATOR_BACKEND_HOST_PORT": "26701",
            "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": "26704",
            **env,
        }
    )


# ---------------------------------------------------------------- where the browser finds the mock


@pytest.mark.parametrize(
    ("api_base", "mock"),
    [
        ("http://127.0.0.1:26701", "http://localhost:26704"),  # the capture-time ports
        ("http://localhost:26711", "http://localhost:26714"),  # worker 1's block: same offset
        ("http://10.0.2.15:8102", "http://localhost:26704"),  # the backend's guest port
        ("http://localhost", "http://localhost:26704"),  # no port: the guest's own
        ("http://127.0.0.1:65534", "http://localhost:26704"),  # no port at that offset: the guest's own
    ],
)
def test_the_browser_reaches_the_mock_at_the_backends_offset(api_base: str, mock: str) -> None:
    assert oauth_client.browser_base(config(), api_base) == mock


def test_authorization_url_asks_the_mock_for_a_pkce_code() -> None:
    url = oauth_client.authorization_url(
        config(),
        "http://localhost:26711",
        "github",
        "inner-state",
        "v" * 43,
        "http://localhost:26711/api/v1/auth/oauth/callback/github",
        "repo openid",
    )
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.netloc, parts.path) == ("localhost:26714", "/authorize")
    assert query["client_id"] == "github"
    assert query["scope"] == "openid offline_access repo"
    assert query["redirect_uri"] == "http://localhost:26711/api/v1/auth/oauth/callback/github"
    assert (query["state"], query["code_challenge_method"]) == ("inner-state", "S256")
    assert oauth_client.pkce_matches("v" * 43, query["code_challenge"], "S256")


def test_pkce() -> None:
    verifier = oauth_client.new_code_verifier()
    assert len(verifier) >= 43
    # RFC 7636 appendix B
    example = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oauth_client.code_challenge(example) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert oauth_client.pkce_matches(example, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256")
    assert not oauth_client.pkce_matches(
        "x" + example[1:], "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256"
    )
    assert oauth_client.pkce_matches("plain-one", "plain-one", "plain")
    assert not oauth_client.pkce_matches("plain-one", None, "plain")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost:3000/cb", "http://localhost:3000/cb?code=C&state=S"),
        ("http://localhost:3000", "http://localhost:3000/?code=C&state=S"),
        ("http://localhost:3000/cb?code=old&x=1", "http://localhost:3000/cb?x=1&code=C&state=S"),
        ("http://localhost:3000/cb#f", "http://localhost:3000/cb?code=C&state=S#f"),
    ],
)
def test_with_params_sets_the_answer_on_the_redirect_url(url: str, expected: str) -> None:
    assert oauth_client.with_params(url, {"code": "C", "state": "S"}) == expected


def test_scopes_are_split_and_deduplicated() -> None:
    assert oauth_client.scopes_of(" openid  offline_access openid repo ") == [
        "openid",
        "offline_access",
        "repo",
    ]
    assert oauth_client.scopes_of(None) == []


def test_token_set_defaults_an_hour_and_no_refresh_token() -> None:
    tokens = oauth_client.token_set({"access_token": "a", "refresh_token": ""})
    assert tokens["refresh_token"] is None
    assert 3590 < tokens["expires_at"] - datetime.now(UTC).timestamp() <= 3600
    with pytest.raises(oauth_client.ProviderError):
        oauth_client.token_set({"token_type": "Bearer"})


# ---------------------------------------------------------------- against the real mock provider


@pytest.fixture
def mock_cfg() -> Iterator[Config]:
    """The mock provider served on a free port, and a backend config that points at it."""
    from stackd import oauth_provider
    from werkzeug.serving import make_server

    port = free_port()
    cfg = config(STACK_EMULATOR_MOCK_OAUTH_HOST_PORT=str(port))
    server = make_server(
        "127.0.0.1", port, oauth_provider.create_app(SimpleNamespace(cfg=cfg)), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield cfg
    server.shutdown()
    server.server_close()
    thread.join(5)


def code_for(cfg: Config, email: str, verifier: str, redirect_uri: str, name: str = "") -> str:
    """What the browser does at the mock: sign in (login_hint shortcut) and come back with a code."""
    url = oauth_client.authorization_url(cfg, "http://localhost:8102", "github", "st", verifier, redirect_uri)
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode({"login_hint": email, "login_name": name})
    conn = http.client.HTTPConnection("127.0.0.1", cfg.oauth_port, timeout=5)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}&{extra}")
        response = conn.getresponse()
        assert response.status == 302
        location = response.getheader("Location") or ""
    finally:
        conn.close()
    assert location.startswith(redirect_uri + "?")
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert back["state"] == "st"
    return back["code"]


def test_code_exchange_userinfo_and_refresh(mock_cfg: Config) -> None:
    redirect_uri = "http://localhost:8102/api/v1/auth/oauth/callback/github"
    verifier = oauth_client.new_code_verifier()
    code = code_for(mock_cfg, "Ada@example.com", verifier, redirect_uri, name="Ada Lovelace")
    with pytest.raises(oauth_client.ProviderError) as wrong:
        oauth_client.exchange_code(mock_cfg, "github", code, "w" * 43, redirect_uri)
    assert wrong.value.code == "invalid_grant"  # and the code is gone
    code = code_for(mock_cfg, "Ada@example.com", verifier, redirect_uri, name="Ada Lovelace")
    tokens = oauth_client.exchange_code(mock_cfg, "github", code, verifier, redirect_uri)
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    info = oauth_client.user_info(mock_cfg, tokens["access_token"])
    assert (info["email"], info["display_name"], info["email_verified"]) == (
        "Ada@example.com",
        "Ada Lovelace",
        True,
    )
    assert info["account_id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, "mock-oauth:ada@example.com"))
    assert oauth_client.access_token_valid(mock_cfg, tokens["access_token"])
    assert not oauth_client.access_token_valid(mock_cfg, "not-a-token")
    fresh = oauth_client.refresh(mock_cfg, "github", tokens["refresh_token"])
    assert fresh["access_token"] != tokens["access_token"]
    assert oauth_client.user_info(mock_cfg, fresh["access_token"])["account_id"] == info["account_id"]
    with pytest.raises(oauth_client.ProviderError) as unknown:
        oauth_client.refresh(mock_cfg, "github", "unknown")
    assert unknown.value.code == "invalid_grant"


def test_no_name_means_no_display_name(mock_cfg: Config) -> None:
    redirect_uri = "http://localhost:8102/cb"
    verifier = oauth_client.new_code_verifier()
    tokens = oauth_client.exchange_code(
        mock_cfg,
        "google",
        code_for(mock_cfg, "b@example.com", verifier, redirect_uri),
        verifier,
        redirect_uri,
    )
    assert oauth_client.user_info(mock_cfg, tokens["access_token"])["display_name"] is None


def test_a_mock_that_does_not_answer_is_temporarily_unavailable() -> None:
    cfg = config(STACK_EMULATOR_MOCK_OAUTH_HOST_PORT=str(free_port()))
    with pytest.raises(errors.KnownError) as exc:
        oauth_client.user_info(cfg, "token")
    assert (exc.value.code, exc.value.status) == ("OAUTH_PROVIDER_TEMPORARILY_UNAVAILABLE", 503)


# ---------------------------------------------------------------- OAuth accounts


PROJECT_CONFIG = {
    "oauth_providers": [
        {"id": "github", "type": "shared"},
        {"id": "google", "type": "standard", "client_id": "c", "client_secret": "s"},
        {"id": "github", "type": "standard", "provider_config_id": "github-work"},
        {"id": "spotify", "type": "shared", "enabled": False},
    ]
}


def test_providers_are_found_by_config_id() -> None:
    find = oauth_accounts.provider_config
    assert find(PROJECT_CONFIG, "github") == {"id": "github", "type": "shared"}
    assert find(PROJECT_CONFIG, "github-work")["provider_config_id"] == "github-work"  # type: ignore[index]
    assert find(PROJECT_CONFIG, "spotify") is None  # disabled
    assert find(PROJECT_CONFIG, "gitlab") is None
    assert find({}, "github") is None
    assert oauth_accounts.is_shared(find(PROJECT_CONFIG, "github"))  # type: ignore[arg-type]
    assert not oauth_accounts.is_shared(find(PROJECT_CONFIG, "google"))  # type: ignore[arg-type]
    assert oauth_accounts.provider_type(PROJECT_CONFIG, "github-work") == "github"
    assert oauth_accounts.provider_type(PROJECT_CONFIG, "gitlab") == "gitlab"  # a known type, unconfigured
    assert oauth_accounts.provider_type(PROJECT_CONFIG, "my-idp") is None


def test_account_read_shapes() -> None:
    row = {
        "id": uuid.UUID(int=1),
        "user_id": uuid.UUID(int=2),
        "provider_config_id": "github",
        "provider_account_id": "acct",
        "email": None,
        "allow_sign_in": True,
        "allow_connected_accounts": False,
        "created_at": datetime.now(UTC),
    }
    client = oauth_accounts.account_json(row, PROJECT_CONFIG, server=False)
    assert client == {
        "user_id": str(uuid.UUID(int=2)),
        "id": str(uuid.UUID(int=1)),
        "provider_config_id": "github",
        "type": "github",
        "allow_sign_in": True,
        "allow_connected_accounts": False,
    }
    server = oauth_accounts.account_json(dict(row, email="a@b.c"), PROJECT_CONFIG, server=True)
    assert (server["account_id"], server["email"]) == ("acct", "a@b.c")
