"""The backend as an OAuth client: of the mock OAuth provider, which serves every provider of
every project in the emulator (github, google, ...: oauth_provider.py, port
${STACK_EMULATOR_MOCK_OAUTH_HOST_PORT:-26704}), plus the protocol's small pure parts (PKCE,
scopes, redirect URLs) that oauth.py uses for its own outer flow.

As upstream's MockProvider does, the backend uses the provider id as the client id, asks for
`openid offline_access` (plus any extra scope), and reads the user from the userinfo endpoint.

Two addresses of the mock provider:
- the browser's: http://localhost:<port>. The mock binds inside the guest the port it was
  captured with, and each worker forwards its own host port to it, at the same offset from
  the backend's host port as at capture time (ports.py gives every worker one block). So the
  port is the port the client used for the backend plus that offset; a client that reached the
  backend on its guest port gets the guest port of the mock.
- the backend's own: http://127.0.0.1:<port inside the guest>, for the code exchange, userinfo
  and refresh.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

from . import errors

BASE_SCOPE = "openid offline_access"
CLIENT_SECRET = "MOCK-SERVER-SECRET"
TIMEOUT_SECONDS = 10


class ProviderError(Exception):
    """The provider answered with an OAuth error (`code` is its `error` field)."""

    def __init__(self, code, description, status):
        super().__init__("%s: %s" % (code, description))
        self.code, self.description, self.status = code, description, status


def port_of(base_url):
    try:
        return urllib.parse.urlsplit(base_url).port
    except ValueError:
        return None


def browser_base(cfg, api_base):
    """The mock provider's URL for the browser that reached the backend at api_base."""
    port = port_of(api_base)
    if port and port != cfg.backend_port:
        mapped = port + cfg.oauth_port - cfg.backend_host_port
        if 0 < mapped < 65536:
            return "http://localhost:%d" % mapped
    return "http://localhost:%d" % cfg.oauth_port


def internal_base(cfg):
    return "http://127.0.0.1:%d" % cfg.oauth_port


def scopes_of(text):
    """The distinct scopes of a space-separated scope string, in order."""
    out = []
    for scope in (text or "").split():
        if scope not in out:
            out.append(scope)
    return out


def new_code_verifier():
    return secrets.token_urlsafe(32)


def code_challenge(verifier):
    """The S256 challenge of a PKCE verifier."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier, challenge, method):
    """Whether a verifier answers a challenge (method S256 or plain)."""
    if method == "S256":
        verifier = code_challenge(verifier)
    return hmac.compare_digest(verifier.encode("utf-8"), (challenge or "").encode("utf-8"))


def with_params(url, values):
    """url with each of values set as a query parameter (replacing any of the same name)."""
    parts = urllib.parse.urlsplit(url)
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query = urllib.parse.urlencode(pairs + list(values.items()))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


def authorization_url(cfg, api_base, provider_id, state, code_verifier, redirect_uri, extra_scope=None):
    query = {
        "client_id": provider_id,
        "scope": " ".join(scopes_of(BASE_SCOPE + " " + (extra_scope or ""))),
        "code_challenge_method": "S256",
        "code_challenge": code_challenge(code_verifier),
        "state": state,
        "response_type": "code",
        "access_type": "offline",
        "prompt": "consent",
        "redirect_uri": redirect_uri,
    }
    return browser_base(cfg, api_base) + "/authorize?" + urllib.parse.urlencode(query)


def _call(cfg, path, form=None, bearer=None):
    """POST a form (or GET with a bearer token) to the mock provider; its JSON answer, or
    ProviderError for an OAuth error, or OAUTH_PROVIDER_TEMPORARILY_UNAVAILABLE."""
    data = urllib.parse.urlencode(form).encode("utf-8") if form is not None else None
    request = urllib.request.Request(internal_base(cfg) + path, data=data, method="POST" if data else "GET")
    if bearer:
        request.add_header("Authorization", "Bearer " + bearer)
    if data:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read().decode("utf-8"))
        except (ValueError, OSError):
            body = {}
        raise ProviderError(str(body.get("error") or "http_%d" % exc.code),
                            str(body.get("error_description") or exc.reason), exc.code) from None
    except (OSError, ValueError):
        raise errors.oauth_provider_temporarily_unavailable() from None


def token_set(answer):
    """{access_token, refresh_token, expires_at (epoch seconds)} of a token endpoint answer."""
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderError("invalid_response", "the token endpoint sent no access_token", 502)
    expires_in = answer.get("expires_in")
    lifetime = expires_in if isinstance(expires_in, (int, float)) and expires_in > 0 else 3600
    refresh = answer.get("refresh_token")
    return {"access_token": access, "refresh_token": refresh if isinstance(refresh, str) and refresh else None,
            "expires_at": time.time() + lifetime}


def exchange_code(cfg, provider_id, code, code_verifier, redirect_uri):
    return token_set(_call(cfg, "/token", {
        "grant_type": "authorization_code", "code": code, "code_verifier": code_verifier,
        "redirect_uri": redirect_uri, "client_id": provider_id, "client_secret": CLIENT_SECRET}))


def refresh(cfg, provider_id, refresh_token, scope=None):
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": provider_id,
            "client_secret": CLIENT_SECRET}
    if scope:
        form["scope"] = scope
    return token_set(_call(cfg, "/token", form))


def user_info(cfg, access_token):
    """The user as upstream's OAuthUserInfo: account id, email, display name, verified."""
    info = _call(cfg, "/me", bearer=access_token)
    sub = info.get("sub")
    if not isinstance(sub, str) or not sub:
        raise ProviderError("invalid_response", "the userinfo endpoint sent no sub", 502)
    email = info.get("email") if isinstance(info.get("email"), str) else None
    name = info.get("name") if isinstance(info.get("name"), str) and info.get("name") else None
    picture = info.get("picture") if isinstance(info.get("picture"), str) else None
    return {"account_id": sub, "email": email, "display_name": name, "profile_image_url": picture,
            "email_verified": True}


def access_token_valid(cfg, access_token):
    try:
        return bool(_call(cfg, "/me", bearer=access_token).get("sub"))
    except ProviderError:
        return False
