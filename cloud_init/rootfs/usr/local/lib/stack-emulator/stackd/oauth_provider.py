"""The mock OAuth 2.0 / OIDC provider (port ${STACK_EMULATOR_MOCK_OAUTH_HOST_PORT:-26704}).

Any client id and secret are accepted. /auth (also /authorize) shows a sign-in form: type an
email address and an optional name, or pick an identity used before; Cancel answers the app
with error=access_denied. A client without a browser skips the form with query parameters:
login_hint=<email> (and login_name=<name>) signs in at once, or POST the form's fields plus
email= (and name=) to /auth. Either way it redirects back with a code; /token trades it (PKCE
checked) for an opaque access token, a refresh token and an HS256 id_token signed with the
client secret; /me returns the user (sub: a stable id per email address, email, and name when
one was given). The issuer is http://localhost:<port the client used>, so a VM reached
through another host port still hands out a matching issuer.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from html import escape

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from .dashboard import page
from .web import answer_json_service, drain, json_response

MAX_FORM = 64 * 1024
DEFAULT_EMAIL = "mock-user@example.com"
EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+")
HEADERS = [("Access-Control-Allow-Origin", "*"), ("Cache-Control", "no-store")]

URLS = Map([
    Rule("/", endpoint="index", methods=["GET"]),
    Rule("/authorize", endpoint="authorize", methods=["GET"]),
    Rule("/authorize", endpoint="authorize_submit", methods=["POST"]),
    Rule("/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
    Rule("/.well-known/oauth-authorization-server", endpoint="discovery", methods=["GET"]),
    Rule("/jwks", endpoint="jwks", methods=["GET"]),
    Rule("/auth", endpoint="authorize", methods=["GET"]),
    Rule("/auth", endpoint="authorize_submit", methods=["POST"]),
    Rule("/token", endpoint="token", methods=["POST"]),
    Rule("/me", endpoint="userinfo", methods=["GET", "POST"]),
    Rule("/userinfo", endpoint="userinfo", methods=["GET", "POST"]),
], strict_slashes=False, merge_slashes=False)


class OAuthError(Exception):
    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def invalid_grant(message):
    return OAuthError(400, "invalid_grant", message)


def subject(email):
    """A stable user id per email address."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mock-oauth:" + email.lower()))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_ok(verifier, challenge, method):
    if method == "S256":
        verifier = b64url(hashlib.sha256(verifier.encode("utf-8")).digest())
    return hmac.compare_digest(verifier.encode("utf-8"), challenge.encode("utf-8"))


def hs256_jwt(claims, secret):
    """A JWT signed HS256 with the client secret, however short (PyJWT refuses an empty key)."""
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signing_input = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(payload)
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


class OAuthStore:
    """Authorization codes, access tokens and refresh tokens, in memory (lost on restart)."""

    CODE_SECONDS = 600
    TOKEN_SECONDS = 3600
    MAX_REFRESH_TOKENS = 10000
    MAX_RECENT = 10

    def __init__(self):
        self.lock = threading.Lock()
        self.codes, self.tokens, self.refresh = {}, {}, {}
        self.recent = []  # (email, name) signed in lately, newest first: the form offers them

    def _purge(self):
        now = time.time()
        for table in (self.codes, self.tokens):
            for k in [k for k, v in table.items() if v["exp"] < now]:
                del table[k]
        if len(self.refresh) > self.MAX_REFRESH_TOKENS:
            self.refresh.clear()

    def issue_code(self, params, email, name=None):
        code = secrets.token_urlsafe(24)
        with self.lock:
            self._purge()
            self.recent = [(email, name)] + [r for r in self.recent if r[0].lower() != email.lower()]
            del self.recent[self.MAX_RECENT:]
            self.codes[code] = {
                "email": email, "name": name, "client_id": params.get("client_id", ""),
                "redirect_uri": params["redirect_uri"], "nonce": params.get("nonce"),
                "challenge": params.get("code_challenge"),
                "method": params.get("code_challenge_method", "plain"),
                "scope": params.get("scope", "openid"), "exp": time.time() + self.CODE_SECONDS}
        return code

    def redeem(self, params, client_id):
        """The grant behind an authorization_code or refresh_token request, and fresh tokens."""
        grant_type = params.get("grant_type")
        with self.lock:
            self._purge()
            if grant_type == "authorization_code":
                grant = self.codes.pop(params.get("code", ""), None)
                if grant is None:
                    raise invalid_grant("unknown or expired authorization code")
                if params.get("redirect_uri") and params["redirect_uri"] != grant["redirect_uri"]:
                    raise invalid_grant("redirect_uri does not match")
                if grant["challenge"] and not pkce_ok(params.get("code_verifier", ""),
                                                      grant["challenge"], grant["method"]):
                    raise invalid_grant("PKCE verification failed")
                refresh = secrets.token_urlsafe(32)
            elif grant_type == "refresh_token":
                refresh = params.get("refresh_token", "")
                grant = self.refresh.get(refresh)
                if grant is None:
                    raise invalid_grant("unknown refresh token")
            else:
                raise OAuthError(400, "unsupported_grant_type",
                                 "grant_type must be authorization_code or refresh_token")
            access = secrets.token_urlsafe(32)
            self.tokens[access] = {"email": grant["email"], "name": grant.get("name"),
                                   "exp": time.time() + self.TOKEN_SECONDS}
            self.refresh[refresh] = {"email": grant["email"], "name": grant.get("name"),
                                     "client_id": client_id or grant.get("client_id", ""),
                                     "nonce": None, "scope": grant.get("scope", "openid")}
        return grant, access, refresh

    def user_of(self, access_token):
        """The email address an unexpired access token belongs to, or None."""
        identity = self.identity_of(access_token)
        return identity[0] if identity else None

    def identity_of(self, access_token):
        """(email, name or None) of an unexpired access token, or None."""
        with self.lock:
            data = self.tokens.get(access_token)
        if data is None or data["exp"] < time.time():
            return None
        return data["email"], data.get("name")

    def recent_identities(self):
        with self.lock:
            return list(self.recent)


ERROR_CODES = {"not_found": "not_found", "method": "METHOD_NOT_ALLOWED", "http": "invalid_request", "internal": "server_error"}


class OAuthProviderApp:
    def __init__(self, state, store=None):
        self.default_port = state.cfg.oauth_port
        self.store = store or OAuthStore()

    def __call__(self, environ, start_response):
        return answer_json_service("mock-oauth", environ, start_response, self.route, OAuthError, error_response,
                                   ERROR_CODES, MAX_FORM)

    def route(self, request):
        endpoint, _ = URLS.bind_to_environ(request.environ).match()
        return getattr(self, endpoint)(request)

    def issuer(self, request):
        """http://localhost:<port the client used>: right even when a resumed VM is reached
        through another host port than the one it was captured with."""
        host = (request.headers.get("Host") or "").strip()
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]*):(\d{1,5})", host)
        port = int(m.group(2)) if m else 0
        if not 0 < port < 65536:
            port = self.default_port
        return "http://localhost:%d" % port

    # ------------------------------------------------------------------ endpoints

    def index(self, request):
        return html_response(page("Mock OAuth provider", "<p>Discovery: <code>%s/.well-known/openid-"
                                  "configuration</code></p>" % escape(self.issuer(request))))

    def discovery(self, request):
        iss = self.issuer(request)
        return json_response({
            "issuer": iss,
            "authorization_endpoint": iss + "/auth",
            "token_endpoint": iss + "/token",
            "userinfo_endpoint": iss + "/me",
            "jwks_uri": iss + "/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "scopes_supported": ["openid", "email", "profile", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified",
                                 "name"],
            "code_challenge_methods_supported": ["S256", "plain"],
        }, headers=HEADERS)

    def jwks(self, request):
        # id_tokens are HS256 with the client secret: there is no public key to publish
        return json_response({"keys": []}, headers=HEADERS)

    def authorize(self, request):
        params = first_values(request.args.lists())
        check_redirect_uri(params)
        if params.get("login_hint") or params.get("prompt") == "none":
            return self.redirect_with_code(request, params, params.get("login_hint") or DEFAULT_EMAIL,
                                           params.get("login_name"))
        return html_response(page("Mock OAuth sign-in", self.sign_in_form(params, request.path)))

    def sign_in_form(self, params, action="/auth"):
        """The sign-in page: type an identity, pick one used before, or cancel. Plain HTML forms,
        each carrying the authorization request's parameters, so a script can post them too."""
        params = {k: v for k, v in params.items() if k not in ("email", "name", "cancel")}
        hidden = "".join('<input type="hidden" name="%s" value="%s">' % (escape(k), escape(v))
                         for k, v in params.items())
        parts = ['<p>A mock OAuth provider: any email address signs in, no password. The app gets '
                 'that address, verified, and the name if you give one.</p>',
                 '<form id="sign-in" method="post" action="%s">%s<p><label>Email <input type="email" '
                 'name="email" value="%s" required></label></p><p><label>Name (optional) <input type="text" '
                 'name="name"></label></p><p><button type="submit">Sign in</button></p></form>'
                 % (escape(action), hidden, DEFAULT_EMAIL)]
        recent = self.store.recent_identities()
        if recent:
            parts.append("<h2>Signed in before</h2>")
            for email, name in recent:
                label = "%s (%s)" % (name, email) if name else email
                name_input = '<input type="hidden" name="name" value="%s">' % escape(name) if name else ""
                parts.append('<form class="identity" method="post" action="%s">%s<input type="hidden" '
                             'name="email" value="%s">%s<button type="submit">%s</button></form>'
                             % (escape(action), hidden, escape(email), name_input, escape(label)))
        parts.append('<form id="cancel" method="post" action="%s">%s<input type="hidden" name="cancel" '
                     'value="1"><button type="submit">Cancel</button></form>' % (escape(action), hidden))
        return "".join(parts)

    def authorize_submit(self, request):
        params = read_form(request)
        check_redirect_uri(params)
        if params.get("cancel"):
            return self.redirect_back(params, {"error": "access_denied",
                                               "error_description": "End-User aborted interaction"})
        return self.redirect_with_code(request, params, params.get("email") or DEFAULT_EMAIL,
                                       params.get("name"))

    def redirect_with_code(self, request, params, email, name=None):
        email = email.strip()
        if not EMAIL_RE.fullmatch(email):
            raise OAuthError(400, "invalid_request", "%r is not an email address; type one such as "
                             "ada@example.com" % email[:200])
        code = self.store.issue_code(params, email, (name or "").strip() or None)
        return self.redirect_back(params, {"code": code, "iss": self.issuer(request)})

    def redirect_back(self, params, query):
        if params.get("state") is not None:
            query["state"] = params["state"]
        uri = params["redirect_uri"]
        target = uri + ("&" if "?" in uri else "?") + urllib.parse.urlencode(query)
        return Response(b"", status=302, headers=HEADERS + [("Location", target)])

    def token(self, request):
        params = read_form(request)
        client_id, client_secret = client_credentials(request, params)
        grant, access, refresh = self.store.redeem(params, client_id)
        email = grant["email"]
        now = int(time.time())
        ttl = self.store.TOKEN_SECONDS
        claims = {"iss": self.issuer(request), "sub": subject(email),
                  "aud": client_id or grant.get("client_id", ""), "iat": now, "exp": now + ttl,
                  "email": email, "email_verified": True}
        if grant.get("name"):
            claims["name"] = grant["name"]
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        return json_response({"access_token": access, "token_type": "Bearer", "expires_in": ttl,
                              "refresh_token": refresh, "scope": grant.get("scope", "openid"),
                              "id_token": hs256_jwt(claims, client_secret)}, headers=HEADERS)

    def userinfo(self, request):
        auth = request.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        identity = self.store.identity_of(token) if token else None
        if identity is None:
            raise OAuthError(401, "invalid_token", "missing, unknown or expired access token",
                             [("WWW-Authenticate", 'Bearer error="invalid_token"')])
        email, name = identity
        info = {"sub": subject(email), "email": email, "email_verified": True}
        if name:
            info["name"] = name
        return json_response(info, headers=HEADERS)


# ---------------------------------------------------------------------- request and response parts

def first_values(lists):
    """{name: first value} of a form or query, names with no value left out."""
    return {k: v[0] for k, v in lists if v}


def read_form(request):
    """The form-encoded body (whatever its Content-Type), as {name: first value}."""
    raw = drain(request, MAX_FORM)
    if raw is None:
        raise OAuthError(413, "invalid_request", "request body larger than %d bytes" % MAX_FORM)
    text = raw.decode("utf-8", "replace")
    return first_values(urllib.parse.parse_qs(text, keep_blank_values=True).items())


def check_redirect_uri(params):
    if not params.get("redirect_uri", "").startswith(("http://", "https://")):
        raise OAuthError(400, "invalid_request", "redirect_uri must be an http(s) URL")


def client_credentials(request, params):
    """(client_id, client_secret) from HTTP Basic (form-encoded parts) or from the form."""
    client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
    auth = request.headers.get("Authorization") or ""
    if auth.lower().startswith("basic "):
        try:
            cid, _, csec = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeError):
            raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
        client_id, client_secret = urllib.parse.unquote(cid), urllib.parse.unquote(csec)
    return client_id, client_secret


def html_response(html, status=200):
    return Response(html, status=status, headers=HEADERS, content_type="text/html; charset=utf-8")


def error_response(status, code, message, headers=()):
    return json_response({"error": code, "error_description": message}, status, HEADERS + list(headers))


def create_app(state):
    return OAuthProviderApp(state)
