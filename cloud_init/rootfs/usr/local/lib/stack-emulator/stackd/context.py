"""One API request: its headers (both spellings), project authentication, user and body."""

import json
import urllib.parse

from . import errors, internal_api_keys, keys, owned_projects, tokens
from .inputs import UUID_RE
from .validate import Fields, schema_error

ACCESS_TYPES = ("client", "server", "admin")
KEY_HEADERS = {
    "client": ("publishable-client-key", "publishable_client_key"),
    "server": ("secret-server-key", "secret_server_key"),
    "admin": ("super-secret-admin-key", "super_secret_admin_key"),
}


class Context:
    def __init__(self, state, request, body_bytes):
        self.state = state
        self.request = request
        self.method = request.method
        self.path = request.path
        self.body_bytes = body_bytes
        self.cur = None            # the transaction's cursor, set by the dispatcher
        self.project_id = None
        self.project = None        # the projects row
        self.access_type = None
        self.claims = None         # verified access token claims, if one was sent
        self.admin_user_id = None  # the user behind an x-stack-admin-access-token
        self.after_commit = []     # callables run once the transaction has committed
        self._body = None

    # ---------------------------------------------------------------- request parts

    def header(self, name):
        """x-stack-<name>, or the newer x-hexclave-<name>."""
        h = self.request.headers
        value = h.get("x-stack-" + name)
        return value if value is not None else h.get("x-hexclave-" + name)

    def query(self, name, default=None):
        return self.request.args.get(name, default)

    @property
    def api_base(self):
        """The backend's URL as the client used it (scheme, host and port)."""
        return self.request.host_url.rstrip("/")

    def body(self):
        """The JSON body (None when there is none), or BODY_PARSING_ERROR."""
        if self._body is None:
            self._body = parse_body(self.request, self.body_bytes)
        return self._body

    def fields(self):
        return Fields(self, self.body())

    # ---------------------------------------------------------------- authentication

    def authenticate(self, allowed):
        """Check the project headers and keys as upstream does, then the access token."""
        project_id = self.header("project-id")
        access_type = self.header("access-type")
        given = {kind: self.header(h) for h, kind in KEY_HEADERS.values()}
        if not access_type:
            if any(given.values()) or self.header("admin-access-token"):
                raise errors.project_key_without_access_type()
            raise errors.access_type_required()
        if access_type not in ACCESS_TYPES:
            raise errors.invalid_access_type(access_type)
        if not project_id:
            raise errors.access_type_without_project_id(access_type)
        self.cur.execute("SELECT * FROM emulator.projects WHERE id = %s", (project_id,))
        self.project = self.cur.fetchone()
        if self.project is None:
            raise errors.current_project_not_found(project_id)
        self.project_id = project_id
        self.access_type = access_type
        header_name, kind = KEY_HEADERS[access_type]
        admin_token = self.header("admin-access-token")
        if admin_token:  # a user of `internal` administering a project its team owns
            self.admin_user_id = owned_projects.check_admin_access_token(self.cur, admin_token, project_id)
        elif given[kind] or access_type != "client" or self.config.get("require_publishable_client_key", True):
            expected = keys.project_keys(self.cur, project_id)
            if not given[kind]:
                if access_type == "client":
                    raise errors.publishable_key_required(project_id)
                raise errors.key_required(kind)
            if not (keys.key_matches(expected.get(kind), given[kind])
                    or internal_api_keys.key_set_matches(self.cur, project_id, kind, given[kind])):
                raise errors.invalid_key(kind, project_id)
        token = self.header("access-token")
        if token:
            self.claims = tokens.decode_access_token(self.cur, token, project_id)
            self._check_token_user()
        if access_type not in allowed:
            raise errors.insufficient_access_type(access_type, allowed)

    def _check_token_user(self):
        """As upstream: a token of a deleted user signs nobody in; an anonymous user's token
        counts only when the client says it accepts anonymous users."""
        self.cur.execute("SELECT is_anonymous FROM emulator.users WHERE id::text = %s AND project_id = %s",
                         (str(self.claims.get("sub")), self.project_id))
        row = self.cur.fetchone()
        if row is None:
            self.claims = None
        elif row["is_anonymous"] and self.header("allow-anonymous-user") != "true":
            raise errors.anonymous_authentication_not_allowed()

    @property
    def config(self):
        return self.project["config"]

    @property
    def user_id(self):
        """The signed-in user's id (from the access token), or None."""
        return self.claims["sub"] if self.claims else None

    @property
    def session_id(self):
        return self.claims["refresh_token_id"] if self.claims else None

    def require_user(self):
        if not self.user_id:
            raise errors.user_authentication_required()
        return self.user_id

    def resolve_user_id(self, raw, where="params.user_id"):
        """A user_id path or query value, where 'me' is the signed-in user; the canonical UUID."""
        if raw == "me":
            if not self.user_id:
                raise errors.cannot_get_own_user_without_user()
            return self.user_id
        if not isinstance(raw, str) or not UUID_RE.fullmatch(raw):
            raise schema_error(self.method, self.path, ['%s must be a valid UUID or "me"' % where])
        return raw.lower()

    @property
    def is_server(self):
        return self.access_type in ("server", "admin")


def parse_body(request, data):
    if request.method in ("GET", "HEAD") or not data:
        return None
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.body_parsing_error("Request body cannot be parsed as UTF-8") from None
        try:  # as JavaScript's JSON.parse: no NaN; and nothing PostgreSQL cannot store
            body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
            _check_storable(body)
        except (ValueError, RecursionError) as exc:
            raise errors.body_parsing_error("Invalid JSON in request body: %s" % str(exc)[:200]) from None
        return body
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(data.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise errors.body_parsing_error("Invalid form data in request body") from None
        return dict(pairs)
    if not content_type:
        raise errors.body_parsing_error("Request body has no content type")
    raise errors.body_parsing_error("Unknown content type in request body: " + content_type)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("the number %s is out of range" % text[:40])
    return value


def _check_storable(value, depth=0):
    """Reject NUL characters (PostgreSQL text cannot hold them) and absurd nesting."""
    if depth > 200:
        raise ValueError("nested more than 200 levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a string contains a NUL character")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_storable(k, depth + 1)
            _check_storable(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_storable(v, depth + 1)
