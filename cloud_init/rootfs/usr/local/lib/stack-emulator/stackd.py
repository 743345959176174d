#!/usr/bin/python3
"""stackd: every guest-side service of the stack emulator VM in one process.

One thread per listening port (ThreadingHTTPServer / ThreadingTCPServer):

  dashboard   ${STACK_EMULATOR_PORT_PREFIX:-81}01   sign-in page
  backend     ${STACK_EMULATOR_PORT_PREFIX:-81}02   Stack Auth-shaped REST API
  S3          9090                                  path-style object store
  mail web    9001                                  Inbucket-compatible JSON API
  SMTP        2500                                  mail catcher (internal only)
  mock OAuth  ${STACK_EMULATOR_MOCK_OAUTH_HOST_PORT:-26704}   OIDC provider

State lives in PostgreSQL (users, sessions, API keys) and on disk under
/var/lib/stack-emulator (S3 objects, mail).  Redis is only health-checked.

Usage:  stackd.py             run the services
        stackd.py --init-db   create the schema and (re)set the placeholder keys
"""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from html import escape as _html_escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors

PROJECT_ID = "internal"
DEFAULT_DB_URL = "postgresql://stack:stack-emulator@127.0.0.1:5432/stackframe"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAIL_FROM = "noreply@stack-emulator.local"
HEX64 = re.compile(r"[0-9A-Fa-f]{64}")

# kind -> placeholder secret (CONTRACT section 4: non-secret by construction)
PLACEHOLDER_KEYS = {
    "publishable_client_key": "0" * 32 + "f" * 32,
    "secret_server_key": "0" * 32 + "e" * 32,
    "super_secret_admin_key": "0" * 32 + "d" * 32,
    "cron_secret": "0" * 32 + "c" * 32,
}

# Environment variable -> key kind.  Applied once per boot if the value is 64 hex digits.
ENV_KEY_NAMES = {
    "STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "publishable_client_key",
    "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "publishable_client_key",
    "STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY": "secret_server_key",
    "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY": "secret_server_key",
    "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY": "super_secret_admin_key",
    "STACK_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY": "super_secret_admin_key",
    "CRON_SECRET": "cron_secret",
}

# access type -> (level, header suffix, key kind, error code)
ACCESS_TYPES = {
    "client": (0, "publishable-client-key", "publishable_client_key", "INVALID_PUBLISHABLE_CLIENT_KEY"),
    "server": (1, "secret-server-key", "secret_server_key", "INVALID_SECRET_SERVER_KEY"),
    "admin": (2, "super-secret-admin-key", "super_secret_admin_key", "INVALID_SUPER_SECRET_ADMIN_KEY"),
}
CLIENT, SERVER, ADMIN = 0, 1, 2

EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
MAILBOX_CHARS = re.compile(r"[a-z0-9!#$%&'*+\-=/?^_`.{|}~]+")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS emulator;
CREATE TABLE IF NOT EXISTS emulator.projects (
    id           text PRIMARY KEY,
    display_name text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS emulator.api_keys (
    project_id text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('publishable_client_key', 'secret_server_key',
                                             'super_secret_admin_key', 'cron_secret')),
    secret     text NOT NULL CHECK (secret ~ '^[0-9A-Fa-f]{64}$'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, kind)
);
CREATE TABLE IF NOT EXISTS emulator.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS emulator.users (
    id                     uuid PRIMARY KEY,
    project_id             text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    primary_email          text,
    primary_email_verified boolean NOT NULL DEFAULT false,
    display_name           text,
    password_hash          text,
    signed_up_at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_project_email_key
    ON emulator.users (project_id, lower(primary_email));
CREATE INDEX IF NOT EXISTS users_project_signed_up_idx
    ON emulator.users (project_id, signed_up_at, id);
CREATE TABLE IF NOT EXISTS emulator.sessions (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    refresh_token_hash text NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS emulator.email_verifications (
    code_hash  text PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
"""

USER_COLUMNS = "id, primary_email, primary_email_verified, display_name, password_hash, signed_up_at"


def xml_escape(text):
    """Escape text for XML/HTML content and attribute values."""
    return _html_escape(text, quote=True)


def format_exc():
    import traceback  # only on errors: keeps start-up imports small
    return traceback.format_exc()


def log(msg):
    try:
        sys.stderr.write("stackd: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def short_error(exc):
    text = str(exc).strip().splitlines()
    text = text[0] if text else ""
    # never let a key leak into a log line or a response
    text = re.sub(r"[0-9A-Fa-f]{32,}", "<redacted>", text)
    return "%s: %s" % (type(exc).__name__, text[:300]) if text else type(exc).__name__


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_millis():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- config

def _env_port(env, name, default):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        log("ignoring %s=%r: not a TCP port, using %d" % (name, raw, default))
        return default
    return port


class Config:
    def __init__(self, env):
        prefix = (env.get("STACK_EMULATOR_PORT_PREFIX") or "81").strip()
        if not re.fullmatch(r"[1-9][0-9]{0,2}", prefix) or int(prefix + "02") > 65535:
            log("ignoring STACK_EMULATOR_PORT_PREFIX=%r, using 81" % prefix)
            prefix = "81"
        self.port_prefix = prefix
        self.dashboard_port = int(prefix + "01")
        self.backend_port = int(prefix + "02")
        self.s3_port = _env_port(env, "STACK_EMULATOR_S3_PORT", 9090)
        self.mail_web_port = _env_port(env, "STACK_EMULATOR_MAIL_WEB_PORT", 9001)
        self.smtp_port = _env_port(env, "STACK_EMULATOR_SMTP_PORT", 2500)
        self.oauth_port = _env_port(env, "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT", 26704)
        self.dashboard_host_port = _env_port(env, "STACK_EMULATOR_DASHBOARD_HOST_PORT", 26700)
        self.backend_host_port = _env_port(env, "STACK_EMULATOR_BACKEND_HOST_PORT", 26701)
        self.bind = (env.get("STACK_EMULATOR_BIND") or "0.0.0.0").strip()
        self.db_url = (env.get("STACK_EMULATOR_DATABASE_URL")
                       or env.get("STACK_DATABASE_CONNECTION_STRING") or DEFAULT_DB_URL).strip()
        self.redis_url = (env.get("STACK_EMULATOR_REDIS_URL") or DEFAULT_REDIS_URL).strip()
        self.data_dir = (env.get("STACK_EMULATOR_DATA_DIR") or env.get("STATE_DIRECTORY")
                         or "/var/lib/stack-emulator").split(":")[0]
        self.run_dir = (env.get("STACK_EMULATOR_RUN_DIR") or env.get("RUNTIME_DIRECTORY")
                        or "/run/stackd").split(":")[0]
        self.access_log = (env.get("STACK_EMULATOR_ACCESS_LOG") or "") in ("1", "true", "yes")
        self.max_object_bytes = 512 * 1024 * 1024
        self.max_mail_bytes = 32 * 1024 * 1024


# --------------------------------------------------------------------------- database

class Unavailable(Exception):
    """A dependency (PostgreSQL, Redis) is not answering: reported as HTTP 503."""


class Database:
    """A tiny thread-safe connection pool.  Every run() is one transaction."""

    def __init__(self, url, size=8):
        self.url = url
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self):
        try:
            return psycopg2.connect(self.url, connect_timeout=5, application_name="stackd",
                                    options="-c statement_timeout=20000")
        except psycopg2.Error as exc:
            raise Unavailable("PostgreSQL: %s" % short_error(exc)) from None

    def _release(self, conn):
        with self._lock:
            self._idle.append(conn)

    @staticmethod
    def _discard(conn):
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def run(self, fn):
        if not self._slots.acquire(timeout=20):
            raise Unavailable("PostgreSQL: connection pool exhausted")
        try:
            for attempt in (0, 1):
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                pooled = conn is not None
                if conn is None:
                    conn = self._connect()
                try:
                    with conn.cursor() as cur:
                        result = fn(cur)
                    conn.commit()
                except BaseException as exc:
                    broken = bool(conn.closed)
                    if not broken:
                        try:
                            conn.rollback()
                        except Exception:
                            broken = True
                    if broken:
                        self._discard(conn)
                    else:
                        self._release(conn)
                    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                        if broken and pooled and attempt == 0:
                            continue  # stale pooled connection (PostgreSQL restarted): retry once
                        if broken:
                            raise Unavailable("PostgreSQL: %s" % short_error(exc)) from None
                    raise
                self._release(conn)
                return result
        finally:
            self._slots.release()
        raise Unavailable("PostgreSQL: unreachable")

    def close_all(self):
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            self._discard(conn)


def init_schema(cur, force_placeholders):
    cur.execute("SELECT pg_advisory_xact_lock(727274)")
    cur.execute(SCHEMA_SQL)
    cur.execute("INSERT INTO emulator.projects (id, display_name) VALUES (%s, %s) "
                "ON CONFLICT (id) DO NOTHING", (PROJECT_ID, "Stack Dashboard"))
    for kind, secret in PLACEHOLDER_KEYS.items():
        if force_placeholders:
            cur.execute("INSERT INTO emulator.api_keys (project_id, kind, secret) VALUES (%s, %s, %s) "
                        "ON CONFLICT (project_id, kind) DO UPDATE SET secret = EXCLUDED.secret, "
                        "updated_at = now()", (PROJECT_ID, kind, secret))
        else:
            cur.execute("INSERT INTO emulator.api_keys (project_id, kind, secret) VALUES (%s, %s, %s) "
                        "ON CONFLICT (project_id, kind) DO NOTHING", (PROJECT_ID, kind, secret))
    cur.execute("INSERT INTO emulator.settings (name, value) VALUES ('jwt_signing_secret', %s) "
                "ON CONFLICT (name) DO NOTHING", (secrets.token_hex(32),))


def keys_from_env(env):
    """64-hex key values found in env, by kind.  Invalid or conflicting values are skipped."""
    found, bad = {}, set()
    for name, kind in ENV_KEY_NAMES.items():
        value = (env.get(name) or "").strip()
        if not value:
            continue
        if not HEX64.fullmatch(value):
            log("not applying %s from the environment: not 64 hex digits" % name)
            continue
        if kind in found and found[kind] != value:
            log("not applying %s from the environment: conflicts with an alias" % name)
            bad.add(kind)
        found[kind] = value
    return {k: v for k, v in found.items() if k not in bad}


# --------------------------------------------------------------------------- request bodies

class BadRequestBody(Exception):
    pass


class LengthReader:
    def __init__(self, f, length):
        self.f = f
        self.left = length

    def read(self, size=65536):
        if self.left <= 0:
            return b""
        data = self.f.read(min(size, self.left))
        if not data:
            raise ConnectionError("client closed the connection in the middle of the body")
        self.left -= len(data)
        return data

    @property
    def done(self):
        return self.left <= 0


class LineBuffer:
    """Gives readline() to a reader that only has read()."""

    def __init__(self, src):
        self.src = src
        self.buf = b""

    def read(self, size=65536):
        if self.buf:
            data, self.buf = self.buf[:size], self.buf[size:]
            return data
        return self.src.read(size)

    def readline(self, limit=8192):
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0 or len(self.buf) >= limit:
                end = idx + 1 if idx >= 0 else limit
                line, self.buf = self.buf[:end], self.buf[end:]
                return line
            more = self.src.read(4096)
            if not more:
                line, self.buf = self.buf, b""
                return line
            self.buf += more


class ChunkedReader:
    """HTTP/1.1 chunked framing; also used for S3 'aws-chunked' bodies (same framing)."""

    def __init__(self, f):
        self.f = f
        self.chunk_left = 0
        self.eof = False

    def _next_chunk(self):
        line = self.f.readline(8192)
        if not line:
            raise ConnectionError("client closed the connection in a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequestBody("malformed chunk size") from None
        if size < 0:
            raise BadRequestBody("malformed chunk size")
        if size == 0:
            while True:  # trailers up to the empty line
                trailer = self.f.readline(8192)
                if not trailer:
                    raise ConnectionError("client closed the connection in chunk trailers")
                if trailer in (b"\r\n", b"\n"):
                    break
            self.eof = True
        self.chunk_left = size

    def read(self, size=65536):
        while not self.eof and self.chunk_left == 0:
            self._next_chunk()
        if self.eof:
            return b""
        data = self.f.read(min(size, self.chunk_left))
        if not data:
            raise ConnectionError("client closed the connection in a chunk")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            tail = self.f.readline(16)
            if tail.strip():
                raise BadRequestBody("chunk not followed by CRLF")
        return data

    @property
    def done(self):
        return self.eof


# --------------------------------------------------------------------------- HTTP plumbing

class ApiError(Exception):
    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        log("unhandled error serving %s: %s" % (client_address[0], short_error(exc)))


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stack-emulator"

    def version_string(self):
        return self.server_version
    timeout = 120
    service = "http"
    max_body = 1024 * 1024

    # -- logging (journald via stderr) --
    def log_message(self, fmt, *args):
        if APP.cfg.access_log:
            log("%s: %s %s" % (self.service, self.address_string(), fmt % args))

    def log_error(self, fmt, *args):
        log("%s: %s" % (self.service, fmt % args))

    # -- dispatch --
    def _handle(self):
        self._responded = False
        self._body_taken = False
        try:
            parts = urllib.parse.urlsplit(self.path)
            self.url_path = parts.path or "/"
            self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
            self.route()
            if not self._responded:
                raise RuntimeError("route sent no response")
        except ApiError as exc:
            self._fail(lambda: self.send_api_error(exc))
        except Unavailable as exc:
            log("%s: %s %s: %s" % (self.service, self.command, self.url_path, exc))
            self._fail(lambda: self.send_api_error(ApiError(503, "SERVICE_UNAVAILABLE", str(exc))))
        except BadRequestBody as exc:
            self.close_connection = True
            self._fail(lambda: self.send_api_error(ApiError(400, "BODY_PARSING_ERROR", str(exc))))
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True
        except Exception:
            log("%s: internal error on %s %s:\n%s" % (self.service, self.command, self.path[:200],
                                                     format_exc()))
            self._fail(lambda: self.send_api_error(
                ApiError(500, "INTERNAL_ERROR", "internal error in the emulator (see the guest journal)")))
        finally:
            if not self._body_taken and self._has_body():
                self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _fail(self, send):
        if self._responded:
            self.close_connection = True
            return
        try:
            send()
        except Exception:
            self.close_connection = True

    def _has_body(self):
        if self.headers.get("Transfer-Encoding"):
            return True
        try:
            return int(self.headers.get("Content-Length") or 0) > 0
        except ValueError:
            return True

    # -- responses --
    def extra_headers(self):
        return ()

    def send(self, status, body=b"", content_type="application/json; charset=utf-8", headers=(),
             length=None):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status != 204 and status >= 200:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in list(self.extra_headers()) + list(headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._responded = True
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        self.send(status, jdump(obj), headers=headers)

    def send_html(self, status, html, headers=()):
        self.send(status, html.encode("utf-8"), "text/html; charset=utf-8", headers)

    def send_api_error(self, exc):
        headers = [("x-stack-known-error", exc.code)] + exc.headers
        self.send_json(exc.status, {"code": exc.code, "error": exc.message}, headers)

    def send_error(self, code, message=None, explain=None):
        # Used by http.server itself for malformed requests: answer JSON, never HTML/tracebacks.
        self.close_connection = True
        try:
            body = jdump({"code": "HTTP_%d" % code,
                          "error": self.responses.get(code, ("Error",))[0]})
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except Exception:
            pass

    def method_not_allowed(self, allowed):
        raise ApiError(405, "METHOD_NOT_ALLOWED", "%s is not allowed here" % self.command,
                       [("Allow", ", ".join(allowed))])

    # -- requests --
    def body_stream(self):
        self._body_taken = True
        te = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if te:
            if te != "chunked":
                self.close_connection = True
                raise ApiError(501, "NOT_IMPLEMENTED", "Transfer-Encoding %r is not supported" % te)
            return ChunkedReader(self.rfile)
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "BODY_PARSING_ERROR", "invalid Content-Length")
        return LengthReader(self.rfile, length)

    def read_body(self, limit=None):
        limit = self.max_body if limit is None else limit
        stream = self.body_stream()
        chunks, size = [], 0
        while True:
            data = stream.read(65536)
            if not data:
                break
            size += len(data)
            if size > limit:
                self.close_connection = True
                raise ApiError(413, "PAYLOAD_TOO_LARGE", "request body larger than %d bytes" % limit)
            chunks.append(data)
        return b"".join(chunks)

    def read_json_object(self, allow_empty=False):
        raw = self.read_body()
        if not raw.strip():
            if allow_empty:
                return {}
            raise ApiError(400, "SCHEMA_ERROR", "a JSON object body is required")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "BODY_PARSING_ERROR", "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "SCHEMA_ERROR", "the request body must be a JSON object")
        return data

    def query_value(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name):
        """x-stack-<name>, or the newer x-hexclave-<name> spelling."""
        value = self.headers.get("x-stack-" + name)
        if value is None:
            value = self.headers.get("x-hexclave-" + name)
        return value.strip() if value is not None else None


# --------------------------------------------------------------------------- users, sessions

def password_hash(password):
    salt = os.urandom(16)
    n, r, p = 4096, 8, 1  # deliberately light: a throwaway emulator under software emulation
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, b64url(salt), b64url(digest))


def password_check(password, stored):
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=b64url_decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
        return hmac.compare_digest(got, b64url_decode(digest))
    except (ValueError, TypeError):
        return False


def user_json(row, server_view):
    uid, email, verified, display_name, pw_hash, signed_up_at = row
    user = {
        "id": str(uid),
        "primary_email": email,
        "primary_email_verified": bool(verified),
        "primary_email_auth_enabled": email is not None,
        "display_name": display_name,
        "signed_up_at_millis": int(signed_up_at.timestamp() * 1000),
        "has_password": pw_hash is not None,
        "profile_image_url": None,
        "client_metadata": {},
        "client_read_only_metadata": {},
        "oauth_providers": [],
        "selected_team_id": None,
        "is_anonymous": False,
    }
    if server_view:
        user["server_metadata"] = {}
    return user


def parse_uuid(text):
    try:
        return str(uuid.UUID(text))
    except (ValueError, TypeError, AttributeError):
        return None


def validate_email(value, field):
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_RE.fullmatch(value):
        raise ApiError(400, "SCHEMA_ERROR", "%s must be a valid email address" % field)
    return value


def validate_password(value):
    if not isinstance(value, str):
        raise ApiError(400, "SCHEMA_ERROR", "password must be a string")
    if len(value) < 8:
        raise ApiError(400, "PASSWORD_TOO_SHORT", "password must be at least 8 characters long")
    if len(value) > 256:
        raise ApiError(400, "PASSWORD_TOO_LONG", "password must be at most 256 characters long")
    return value


def optional_string(body, field, max_len=1000):
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise ApiError(400, "SCHEMA_ERROR", "%s must be a string or null" % field)
    return value


EMAIL_EXISTS = ("USER_EMAIL_ALREADY_EXISTS", "a user with this email address already exists")


# --------------------------------------------------------------------------- dashboard

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Stack emulator</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">
<h1>{title}</h1>
{body}
</body></html>
"""


class DashboardHandler(BaseHandler):
    service = "dashboard"

    def route(self):
        if self.command not in ("GET", "HEAD"):
            self.method_not_allowed(["GET", "HEAD"])
        path = self.url_path.rstrip("/") or "/"
        if path == "/":
            self.send(307, b"", None, [("Location", "/handler/sign-in")])
        elif path in ("/handler/sign-in", "/handler/signin", "/handler/sign-up", "/handler/signup"):
            title = "Sign in" if path.endswith("in") else "Sign up"
            self.send_html(200, PAGE.format(title=title, body=(
                "<p>Stack Auth emulator dashboard. Use the backend API on host port %d.</p>"
                "<form><label>Email <input type=email name=email></label> "
                "<label>Password <input type=password name=password></label> "
                "<button disabled>%s</button></form>" % (APP.cfg.backend_host_port, title))))
        elif path == "/handler/email-verification":
            code = self.query_value("code") or ""
            ok = verify_email_code(code) if code else False
            self.send_html(200 if ok else 400, PAGE.format(
                title="Email verification",
                body="<p>%s</p>" % ("Your email address is verified." if ok
                                    else "This verification link is invalid or was already used.")))
        elif path.startswith("/handler/"):
            name = xml_escape(path[len("/handler/"):])
            self.send_html(200, PAGE.format(title=name or "Handler", body="<p>Stack emulator.</p>"))
        elif path in ("/health", "/api/health"):
            self.send_json(200, {"status": "ok"})
        else:
            self.send_html(404, PAGE.format(title="Not found", body="<p>No such page.</p>"))

    def send_api_error(self, exc):
        self.send_html(exc.status, PAGE.format(title="Error %d" % exc.status,
                                               body="<p>%s</p>" % xml_escape(exc.message)),
                       exc.headers)


def verify_email_code(code):
    code_hash = sha256_hex(code)

    def tx(cur):
        cur.execute("UPDATE emulator.email_verifications SET used_at = now() "
                    "WHERE code_hash = %s AND used_at IS NULL RETURNING user_id, email", (code_hash,))
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute("UPDATE emulator.users SET primary_email_verified = true "
                    "WHERE id = %s AND lower(primary_email) = lower(%s)", row)
        return True

    return APP.db.run(tx)


# --------------------------------------------------------------------------- backend

class BackendHandler(BaseHandler):
    service = "backend"

    def extra_headers(self):
        return [("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Expose-Headers", "x-stack-known-error, x-stack-request-id")]

    # -- routing --
    def route(self):
        method, path = self.command, self.url_path
        if method == "OPTIONS":
            requested = self.headers.get("Access-Control-Request-Headers") or "*"
            self.send(204, b"", None, [
                ("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                ("Access-Control-Allow-Headers", requested),
                ("Access-Control-Max-Age", "86400")])
            return
        if path in ("/health", "/api/health", "/api/v1/health"):
            if method not in ("GET", "HEAD"):
                self.method_not_allowed(["GET", "HEAD"])
            return self.health()
        if path in ("/", "/api", "/api/v1", "/api/v1/"):
            if method not in ("GET", "HEAD"):
                self.method_not_allowed(["GET", "HEAD"])
            return self.send(200, b"Welcome to the Stack emulator API.\n", "text/plain; charset=utf-8")
        if not path.startswith("/api/v1/"):
            raise ApiError(404, "ROUTE_NOT_FOUND", "no route for %s %s" % (method, path[:200]))
        seg = [urllib.parse.unquote(s) for s in path[len("/api/v1/"):].rstrip("/").split("/")]
        table = self.routes(seg)
        if table is None:
            raise ApiError(404, "ROUTE_NOT_FOUND", "no route for %s %s" % (method, path[:200]))
        if method == "HEAD" and "GET" in table:
            method = "GET"
        handler = table.get(method)
        if handler is None:
            self.method_not_allowed(sorted(table))
        handler()

    def routes(self, seg):
        n = len(seg)
        if n == 4 and seg[0] == "projects" and seg[2] == ".well-known" and seg[3] == "jwks.json":
            return {"GET": lambda: self.jwks(seg[1])}
        if seg == ["projects", "current"]:
            return {"GET": self.current_project}
        if seg == ["users"]:
            return {"GET": self.list_users, "POST": self.create_user}
        if seg == ["users", "me"]:
            return {"GET": self.get_me, "PATCH": self.patch_me}
        if n == 2 and seg[0] == "users":
            return {"GET": lambda: self.get_user(seg[1]), "PATCH": lambda: self.patch_user(seg[1]),
                    "DELETE": lambda: self.delete_user(seg[1])}
        if seg == ["auth", "password", "sign-up"]:
            return {"POST": self.sign_up}
        if seg == ["auth", "password", "sign-in"]:
            return {"POST": self.sign_in}
        if seg == ["auth", "sessions", "current", "refresh"]:
            return {"POST": self.refresh}
        if seg == ["auth", "sessions", "current"]:
            return {"DELETE": self.sign_out}
        if seg == ["contact-channels", "verify"]:
            return {"POST": self.verify_contact_channel}
        return None

    # -- health --
    def health(self):
        want_db = (self.query_value("db") or "").lower() not in ("", "0", "false", "no")
        if not want_db:
            return self.send(200, b'{"status":"ok"}')
        problems = {}
        if not APP.db_ready.is_set():
            problems["schema"] = APP.db_init_error or "database not initialised yet"
        try:
            row = APP.db.run(lambda cur: (cur.execute("SELECT 1"), cur.fetchone())[1])
            if not row or row[0] != 1:
                problems["postgres"] = "SELECT 1 returned %r" % (row,)
        except Exception as exc:
            problems["postgres"] = short_error(exc)
        try:
            if not APP.redis().ping():
                problems["redis"] = "PING failed"
        except Exception as exc:
            problems["redis"] = short_error(exc)
        if problems:
            body = {"status": "error"}
            body.update(problems)
            return self.send_json(503, body)
        self.send(200, b'{"status":"ok"}')

    # -- auth --
    def authenticate(self, minimum):
        if not APP.db_ready.is_set():
            raise Unavailable("database not initialised yet")
        access_type = self.header("access-type")
        if not access_type:
            raise ApiError(401, "ACCESS_TYPE_REQUIRED",
                           "the x-stack-access-type header (client, server or admin) is required")
        spec = ACCESS_TYPES.get(access_type)
        if spec is None:
            raise ApiError(401, "INVALID_ACCESS_TYPE",
                           "x-stack-access-type must be client, server or admin")
        level, key_header, kind, bad_key_code = spec
        project_id = self.header("project-id")
        if not project_id:
            raise ApiError(401, "PROJECT_ID_REQUIRED", "the x-stack-project-id header is required")
        if project_id != PROJECT_ID:
            raise ApiError(401, "PROJECT_NOT_FOUND", "unknown project id (this emulator only has %r)"
                           % PROJECT_ID)
        given = self.header(key_header)
        if not given:
            raise ApiError(401, "%s_AUTHENTICATION_REQUIRED" % access_type.upper(),
                           "the x-stack-%s header is required for %s access" % (key_header, access_type))

        def lookup(cur):
            cur.execute("SELECT secret FROM emulator.api_keys WHERE project_id = %s AND kind = %s",
                        (PROJECT_ID, kind))
            row = cur.fetchone()
            return row[0] if row else None

        secret = APP.db.run(lookup)
        if secret is None or not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            raise ApiError(401, bad_key_code, "the %s key is not valid for this project" % access_type)
        if level < minimum:
            raise ApiError(401, "INSUFFICIENT_ACCESS_TYPE",
                           "this endpoint needs %s access or higher"
                           % ("server" if minimum == SERVER else "admin"))
        return level

    def current_user_id(self):
        token = self.header("access-token")
        if not token:
            raise ApiError(401, "CANNOT_GET_OWN_USER_WITHOUT_USER",
                           "the x-stack-access-token header is required")
        claims = verify_access_token(token)
        if claims is None:
            raise ApiError(401, "UNPARSABLE_ACCESS_TOKEN", "the access token is not valid")
        if claims.get("exp", 0) < time.time():
            raise ApiError(401, "ACCESS_TOKEN_EXPIRED", "the access token has expired")
        sid, sub = parse_uuid(claims.get("sid")), parse_uuid(claims.get("sub"))
        if not sid or not sub:
            raise ApiError(401, "UNPARSABLE_ACCESS_TOKEN", "the access token is not valid")

        def tx(cur):
            cur.execute("SELECT 1 FROM emulator.sessions WHERE id = %s AND user_id = %s", (sid, sub))
            return cur.fetchone() is not None

        if not APP.db.run(tx):
            raise ApiError(401, "INVALID_ACCESS_TOKEN", "the session of this access token has ended")
        return sub

    # -- endpoints --
    def jwks(self, project_id):
        if project_id != PROJECT_ID:
            raise ApiError(404, "PROJECT_NOT_FOUND", "unknown project id")
        self.send_json(200, {"keys": []})

    def current_project(self):
        self.authenticate(CLIENT)
        self.send_json(200, {"id": PROJECT_ID, "display_name": "Stack Dashboard",
                             "config": {"credential_enabled": True, "magic_link_enabled": False,
                                        "sign_up_enabled": True, "oauth_providers": []}})

    def list_users(self):
        self.authenticate(SERVER)
        try:
            limit = int(self.query_value("limit") or 0)
            offset = int(self.query_value("cursor") or 0)
        except ValueError:
            raise ApiError(400, "SCHEMA_ERROR", "limit and cursor must be integers") from None
        if limit < 0 or offset < 0:
            raise ApiError(400, "SCHEMA_ERROR", "limit and cursor must not be negative")

        def tx(cur):
            sql = ("SELECT %s FROM emulator.users WHERE project_id = %%s "
                   "ORDER BY signed_up_at, id OFFSET %%s" % USER_COLUMNS)
            args = [PROJECT_ID, offset]
            if limit:
                sql += " LIMIT %s"
                args.append(limit + 1)
            cur.execute(sql, args)
            return cur.fetchall()

        rows = APP.db.run(tx)
        next_cursor = None
        if limit and len(rows) > limit:
            rows = rows[:limit]
            next_cursor = str(offset + limit)
        self.send_json(200, {"items": [user_json(r, True) for r in rows],
                             "pagination": {"next_cursor": next_cursor}})

    def create_user(self):
        self.authenticate(SERVER)
        body = self.read_json_object(allow_empty=True)
        email = body.get("primary_email")
        if email is not None:
            validate_email(email, "primary_email")
        display_name = optional_string(body, "display_name")
        verified = body.get("primary_email_verified", False)
        if not isinstance(verified, bool):
            raise ApiError(400, "SCHEMA_ERROR", "primary_email_verified must be a boolean")
        password = body.get("password")
        pw_hash = password_hash(validate_password(password)) if password is not None else None
        uid = str(uuid.uuid4())

        def tx(cur):
            cur.execute("INSERT INTO emulator.users (id, project_id, primary_email, primary_email_verified, "
                        "display_name, password_hash) VALUES (%s, %s, %s, %s, %s, %s) RETURNING "
                        + USER_COLUMNS, (uid, PROJECT_ID, email, verified, display_name, pw_hash))
            return cur.fetchone()

        try:
            row = APP.db.run(tx)
        except psycopg2.errors.UniqueViolation:
            raise ApiError(409, *EMAIL_EXISTS) from None
        self.send_json(201, user_json(row, True))

    def _load_user(self, uid):
        def tx(cur):
            cur.execute("SELECT %s FROM emulator.users WHERE id = %%s AND project_id = %%s" % USER_COLUMNS,
                        (uid, PROJECT_ID))
            return cur.fetchone()
        row = APP.db.run(tx) if uid else None
        if row is None:
            raise ApiError(404, "USER_NOT_FOUND", "no user with this id")
        return row

    def get_user(self, raw_id):
        self.authenticate(SERVER)
        self.send_json(200, user_json(self._load_user(parse_uuid(raw_id)), True))

    def _patch(self, uid, body, server_view):
        fields, args = [], []
        if "display_name" in body:
            fields.append("display_name = %s")
            args.append(optional_string(body, "display_name"))
        if server_view:
            if "primary_email" in body:
                email = body["primary_email"]
                if email is not None:
                    validate_email(email, "primary_email")
                fields.append("primary_email = %s")
                args.append(email)
            if "primary_email_verified" in body:
                if not isinstance(body["primary_email_verified"], bool):
                    raise ApiError(400, "SCHEMA_ERROR", "primary_email_verified must be a boolean")
                fields.append("primary_email_verified = %s")
                args.append(body["primary_email_verified"])
            if "password" in body:
                fields.append("password_hash = %s")
                args.append(None if body["password"] is None
                            else password_hash(validate_password(body["password"])))

        def tx(cur):
            if fields:
                cur.execute("UPDATE emulator.users SET %s WHERE id = %%s AND project_id = %%s"
                            % ", ".join(fields), args + [uid, PROJECT_ID])
            cur.execute("SELECT %s FROM emulator.users WHERE id = %%s AND project_id = %%s" % USER_COLUMNS,
                        (uid, PROJECT_ID))
            return cur.fetchone()

        try:
            row = APP.db.run(tx)
        except psycopg2.errors.UniqueViolation:
            raise ApiError(409, *EMAIL_EXISTS) from None
        if row is None:
            raise ApiError(404, "USER_NOT_FOUND", "no user with this id")
        return row

    def patch_user(self, raw_id):
        self.authenticate(SERVER)
        uid = parse_uuid(raw_id)
        body = self.read_json_object(allow_empty=True)
        if uid is None:
            raise ApiError(404, "USER_NOT_FOUND", "no user with this id")
        self.send_json(200, user_json(self._patch(uid, body, True), True))

    def delete_user(self, raw_id):
        self.authenticate(SERVER)
        uid = parse_uuid(raw_id)

        def tx(cur):
            cur.execute("DELETE FROM emulator.users WHERE id = %s AND project_id = %s", (uid, PROJECT_ID))
            return cur.rowcount

        if uid is None or APP.db.run(tx) == 0:
            raise ApiError(404, "USER_NOT_FOUND", "no user with this id")
        self.send_json(200, {"success": True})

    def get_me(self):
        level = self.authenticate(CLIENT)
        uid = self.current_user_id()
        self.send_json(200, user_json(self._load_user(uid), level >= SERVER))

    def patch_me(self):
        level = self.authenticate(CLIENT)
        uid = self.current_user_id()
        body = self.read_json_object(allow_empty=True)
        self.send_json(200, user_json(self._patch(uid, body, False), level >= SERVER))

    def sign_up(self):
        self.authenticate(CLIENT)
        body = self.read_json_object()
        email = validate_email(body.get("email"), "email")
        password = validate_password(body.get("password"))
        callback = body.get("verification_callback_url")
        if callback is not None and (not isinstance(callback, str)
                                     or not re.match(r"https?://[^\s]+$", callback)):
            raise ApiError(400, "SCHEMA_ERROR", "verification_callback_url must be an http(s) URL")
        pw_hash = password_hash(password)
        uid, sid = str(uuid.uuid4()), str(uuid.uuid4())
        refresh_token = secrets.token_urlsafe(36)
        code = secrets.token_urlsafe(30)

        def tx(cur):
            cur.execute("INSERT INTO emulator.users (id, project_id, primary_email, password_hash) "
                        "VALUES (%s, %s, %s, %s) RETURNING " + USER_COLUMNS,
                        (uid, PROJECT_ID, email, pw_hash))
            row = cur.fetchone()
            cur.execute("INSERT INTO emulator.sessions (id, user_id, refresh_token_hash) VALUES (%s, %s, %s)",
                        (sid, uid, sha256_hex(refresh_token)))
            cur.execute("INSERT INTO emulator.email_verifications (code_hash, user_id, email) "
                        "VALUES (%s, %s, %s)", (sha256_hex(code), uid, email))
            return row

        try:
            row = APP.db.run(tx)
        except psycopg2.errors.UniqueViolation:
            raise ApiError(409, *EMAIL_EXISTS) from None
        if callback:
            link = callback + ("&" if "?" in callback else "?") + "code=" + urllib.parse.quote(code)
        else:
            link = "http://localhost:%d/handler/email-verification?code=%s" % (
                APP.cfg.dashboard_host_port, urllib.parse.quote(code))
        send_verification_email(email, link)
        self.send_json(200, {"access_token": make_access_token(row, sid),
                             "refresh_token": refresh_token, "user_id": uid})

    def sign_in(self):
        self.authenticate(CLIENT)
        body = self.read_json_object()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise ApiError(400, "SCHEMA_ERROR", "email and password are required strings")

        def load(cur):
            cur.execute("SELECT %s FROM emulator.users WHERE project_id = %%s AND lower(primary_email) = "
                        "lower(%%s)" % USER_COLUMNS, (PROJECT_ID, email))
            return cur.fetchone()

        row = APP.db.run(load)
        if row is None or not password_check(password, row[4]):
            raise ApiError(400, "EMAIL_PASSWORD_MISMATCH", "wrong email or password")
        sid, refresh_token = str(uuid.uuid4()), secrets.token_urlsafe(36)
        APP.db.run(lambda cur: cur.execute(
            "INSERT INTO emulator.sessions (id, user_id, refresh_token_hash) VALUES (%s, %s, %s)",
            (sid, str(row[0]), sha256_hex(refresh_token))))
        self.send_json(200, {"access_token": make_access_token(row, sid),
                             "refresh_token": refresh_token, "user_id": str(row[0])})

    def refresh(self):
        self.authenticate(CLIENT)
        token = self.header("refresh-token")
        if not token:
            raise ApiError(401, "REFRESH_TOKEN_REQUIRED", "the x-stack-refresh-token header is required")

        def tx(cur):
            cur.execute("SELECT s.id, %s FROM emulator.sessions s JOIN emulator.users u ON u.id = s.user_id "
                        "WHERE s.refresh_token_hash = %%s" % ", ".join("u." + c for c in USER_COLUMNS.split(", ")),
                        (sha256_hex(token),))
            return cur.fetchone()

        row = APP.db.run(tx)
        if row is None:
            raise ApiError(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED", "unknown or revoked refresh token")
        self.send_json(200, {"access_token": make_access_token(row[1:], str(row[0]))})

    def sign_out(self):
        self.authenticate(CLIENT)
        refresh_token = self.header("refresh-token")
        if refresh_token:
            APP.db.run(lambda cur: cur.execute(
                "DELETE FROM emulator.sessions WHERE refresh_token_hash = %s", (sha256_hex(refresh_token),)))
        else:
            self.current_user_id()
            claims = verify_access_token(self.header("access-token")) or {}
            APP.db.run(lambda cur: cur.execute("DELETE FROM emulator.sessions WHERE id = %s",
                                               (parse_uuid(claims.get("sid")),)))
        self.send_json(200, {"success": True})

    def verify_contact_channel(self):
        self.authenticate(CLIENT)
        body = self.read_json_object()
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise ApiError(400, "SCHEMA_ERROR", "code is required")
        if not verify_email_code(code):
            raise ApiError(400, "VERIFICATION_CODE_NOT_FOUND", "unknown or already used verification code")
        self.send_json(200, {"success": True})


def jwt_secret():
    if APP.jwt_key is None:
        def tx(cur):
            cur.execute("SELECT value FROM emulator.settings WHERE name = 'jwt_signing_secret'")
            row = cur.fetchone()
            return row[0] if row else None
        value = APP.db.run(tx)
        if value is None:
            raise Unavailable("database not initialised yet")
        APP.jwt_key = value.encode("ascii")
    return APP.jwt_key


def make_access_token(user_row, session_id):
    now = int(time.time())
    claims = {
        "sub": str(user_row[0]), "sid": session_id, "refresh_token_id": session_id,
        "iss": "http://localhost:%d/api/v1/projects/%s" % (APP.cfg.backend_host_port, PROJECT_ID),
        "aud": PROJECT_ID, "project_id": PROJECT_ID, "branch_id": "main",
        "iat": now, "exp": now + 3600, "role": "authenticated",
        "name": user_row[3], "email": user_row[1], "email_verified": bool(user_row[2]),
        "is_anonymous": False,
    }
    head = b64url(jdump({"alg": "HS256", "typ": "JWT"}))
    body = b64url(jdump(claims))
    sig = hmac.new(jwt_secret(), ("%s.%s" % (head, body)).encode("ascii"), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def verify_access_token(token):
    try:
        head, body, sig = token.split(".")
        want = hmac.new(jwt_secret(), ("%s.%s" % (head, body)).encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(want, b64url_decode(sig)):
            return None
        claims = json.loads(b64url_decode(body))
        return claims if isinstance(claims, dict) else None
    except (ValueError, TypeError, UnicodeError):
        return None


def send_verification_email(address, link):
    import smtplib
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid
    msg = EmailMessage()
    msg["From"] = MAIL_FROM
    msg["To"] = address
    msg["Subject"] = "Verify your email at Stack Emulator"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="stack-emulator.local")
    msg.set_content("Welcome!\n\nPlease verify your email address by opening this link:\n\n%s\n" % link)
    msg.add_alternative('<p>Welcome!</p><p>Please verify your email address: '
                        '<a href="%s">Verify my email</a></p>' % xml_escape(link),
                        subtype="html")
    try:
        with smtplib.SMTP("127.0.0.1", APP.cfg.smtp_port, local_hostname="stack-emulator",
                          timeout=10) as smtp:
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log("could not send the verification email: %s" % short_error(exc))


# --------------------------------------------------------------------------- S3

def s3_error_xml(code, message, resource=""):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<Resource>%s</Resource><RequestId>%s</RequestId></Error>'
            % (code, xml_escape(message), xml_escape(resource), uuid.uuid4().hex[:16])).encode("utf-8")


def http_date(ts):
    from email.utils import formatdate
    return formatdate(ts, usegmt=True)


def iso_date(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        "%03dZ" % (int(ts * 1000) % 1000)


class ObjectStore:
    """Objects as <root>/<bucket>/<sha256(key)>.data + .meta (JSON with the key): no key reaches a path."""

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()

    @staticmethod
    def valid_bucket(name):
        return bool(BUCKET_RE.fullmatch(name)) and ".." not in name

    def bucket_dir(self, bucket):
        return os.path.join(self.root, bucket)

    def bucket_exists(self, bucket):
        return os.path.isdir(self.bucket_dir(bucket))

    def paths(self, bucket, key):
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        base = os.path.join(self.bucket_dir(bucket), digest)
        return base + ".data", base + ".meta"

    def list_buckets(self):
        out = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if self.valid_bucket(name) and os.path.isdir(path):
                out.append((name, os.stat(path).st_mtime))
        return out

    def create_bucket(self, bucket):
        os.makedirs(self.bucket_dir(bucket), mode=0o750, exist_ok=True)

    def delete_bucket(self, bucket):
        path = self.bucket_dir(bucket)
        with self.lock:
            if any(n.endswith(".meta") for n in os.listdir(path)):
                return False
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
            os.rmdir(path)
        return True

    def head(self, bucket, key):
        _, meta_path = self.paths(bucket, key)
        try:
            with open(meta_path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def open(self, bucket, key):
        data_path, meta_path = self.paths(bucket, key)
        with self.lock:
            try:
                with open(meta_path, "rb") as f:
                    meta = json.loads(f.read())
                return meta, open(data_path, "rb")
            except FileNotFoundError:
                return None, None

    def put(self, bucket, key, stream, limit, content_type, user_meta, extra=None):
        data_path, meta_path = self.paths(bucket, key)
        tmp = "%s.%s.tmp" % (data_path, uuid.uuid4().hex)
        md5, size = hashlib.md5(), 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    chunk = stream.read(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, "EntityTooLarge", "object larger than %d bytes" % limit)
                    md5.update(chunk)
                    out.write(chunk)
            meta = {"key": key, "size": size, "etag": md5.hexdigest(), "content_type": content_type,
                    "last_modified": time.time(), "user_meta": user_meta}
            meta.update(extra or {})
            meta_tmp = meta_path + "." + uuid.uuid4().hex + ".tmp"
            with open(meta_tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f)
            with self.lock:
                os.replace(tmp, data_path)
                os.replace(meta_tmp, meta_path)
            return meta
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self, bucket, key):
        data_path, meta_path = self.paths(bucket, key)
        with self.lock:
            for path in (meta_path, data_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def keys(self, bucket):
        out = []
        path = self.bucket_dir(bucket)
        for name in os.listdir(path):
            if name.endswith(".meta"):
                try:
                    with open(os.path.join(path, name), "rb") as f:
                        out.append(json.loads(f.read()))
                except (OSError, ValueError):
                    continue
        out.sort(key=lambda m: m["key"])
        return out


class S3Handler(BaseHandler):
    service = "s3"

    def send_api_error(self, exc):
        # S3 clients expect XML errors; ApiError.code carries the S3 error code here.
        code = exc.code if exc.code[:1].isupper() and "_" not in exc.code else {
            400: "InvalidRequest", 404: "NoSuchKey", 405: "MethodNotAllowed", 413: "EntityTooLarge",
            501: "NotImplemented", 503: "ServiceUnavailable"}.get(exc.status, "InternalError")
        self.send(exc.status, s3_error_xml(code, exc.message, self.url_path),
                  "application/xml", exc.headers)

    def route(self):
        path, method = self.url_path, self.command
        if path.startswith("/minio/health/"):
            if method not in ("GET", "HEAD"):
                self.method_not_allowed(["GET", "HEAD"])
            return self.send(200, b"", None)
        bucket, key = self.split_target(path)
        if not bucket:
            if method in ("GET", "HEAD"):
                return self.list_buckets()
            self.method_not_allowed(["GET", "HEAD"])
        if not ObjectStore.valid_bucket(bucket):
            raise ApiError(400, "InvalidBucketName", "the bucket name is not valid")
        if key is None:
            return self.bucket_op(bucket)
        if not key or len(key.encode("utf-8")) > 1024 or "\x00" in key:
            raise ApiError(400, "KeyTooLongError" if key else "InvalidArgument", "invalid object key")
        return self.object_op(bucket, key)

    def split_target(self, path):
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        if host.endswith(".localhost") and host.count(".") >= 1:  # virtual-hosted style
            bucket = host[: -len(".localhost")]
            key = path[1:]
            return bucket, (urllib.parse.unquote(key) if key else None)
        rest = path[1:]
        if not rest:
            return None, None
        bucket, sep, key = rest.partition("/")
        bucket = urllib.parse.unquote(bucket)
        if not sep or not key:
            return bucket, None
        return bucket, urllib.parse.unquote(key)

    # -- buckets --
    def list_buckets(self):
        items = "".join("<Bucket><Name>%s</Name><CreationDate>%s</CreationDate></Bucket>"
                        % (xml_escape(n), iso_date(ts)) for n, ts in APP.s3.list_buckets())
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult '
                'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>stack-emulator</ID>'
                '<DisplayName>stack-emulator</DisplayName></Owner><Buckets>%s</Buckets>'
                '</ListAllMyBucketsResult>' % items)
        self.send(200, body.encode("utf-8"), "application/xml")

    def bucket_op(self, bucket):
        method = self.command
        exists = APP.s3.bucket_exists(bucket)
        if method == "PUT":
            self.read_body(1024 * 1024)  # optional CreateBucketConfiguration
            APP.s3.create_bucket(bucket)
            return self.send(200, b"", None, [("Location", "/" + bucket)])
        if method == "POST" and "delete" in self.query:
            return self.delete_objects(bucket, exists)
        if method not in ("GET", "HEAD", "DELETE"):
            self.method_not_allowed(["GET", "HEAD", "PUT", "DELETE", "POST"])
        if not exists:
            raise ApiError(404, "NoSuchBucket", "the specified bucket does not exist")
        if method == "HEAD":
            return self.send(200, b"", None)
        if method == "DELETE":
            if not APP.s3.delete_bucket(bucket):
                raise ApiError(409, "BucketNotEmpty", "the bucket you tried to delete is not empty")
            return self.send(204, b"", None)
        if "location" in self.query:
            return self.send(200, b'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint '
                                  b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>', "application/xml")
        if "versioning" in self.query:
            return self.send(200, b'<?xml version="1.0" encoding="UTF-8"?>\n<VersioningConfiguration '
                                  b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>', "application/xml")
        return self.list_objects(bucket)

    def list_objects(self, bucket):
        v2 = self.query_value("list-type") == "2"
        prefix = self.query_value("prefix", "")
        delimiter = self.query_value("delimiter", "")
        try:
            max_keys = max(0, min(1000, int(self.query_value("max-keys", "1000"))))
        except ValueError:
            raise ApiError(400, "InvalidArgument", "max-keys must be an integer") from None
        token = self.query_value("continuation-token")
        if v2:
            after = self.query_value("start-after", "")
            if token:
                try:
                    after = b64url_decode(token).decode("utf-8")
                except (ValueError, UnicodeError):
                    raise ApiError(400, "InvalidArgument", "invalid continuation token") from None
        else:
            after = self.query_value("marker", "")
        contents, prefixes, seen, truncated, last = [], [], set(), False, None
        for meta in APP.s3.keys(bucket):
            key = meta["key"]
            if not key.startswith(prefix) or (after and key <= after):
                continue
            if after and delimiter and after.endswith(delimiter) and key.startswith(after):
                continue
            entry = None
            if delimiter:
                idx = key.find(delimiter, len(prefix))
                if idx >= 0:
                    common = key[: idx + len(delimiter)]
                    if common in seen:
                        continue
                    entry = ("prefix", common)
            if entry is None:
                entry = ("key", meta)
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if entry[0] == "prefix":
                seen.add(entry[1])
                prefixes.append(entry[1])
                last = entry[1]
            else:
                contents.append(meta)
                last = key
        enc = self.query_value("encoding-type") == "url"
        q = (lambda s: urllib.parse.quote(s, safe="/")) if enc else (lambda s: s)
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
                 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
                 "<Name>%s</Name><Prefix>%s</Prefix>" % (xml_escape(bucket), xml_escape(q(prefix))),
                 "<MaxKeys>%d</MaxKeys>" % max_keys,
                 "<IsTruncated>%s</IsTruncated>" % ("true" if truncated else "false")]
        if delimiter:
            parts.append("<Delimiter>%s</Delimiter>" % xml_escape(q(delimiter)))
        if enc:
            parts.append("<EncodingType>url</EncodingType>")
        if v2:
            parts.append("<KeyCount>%d</KeyCount>" % (len(contents) + len(prefixes)))
            if token:
                parts.append("<ContinuationToken>%s</ContinuationToken>" % xml_escape(token))
            if truncated and last is not None:
                parts.append("<NextContinuationToken>%s</NextContinuationToken>"
                             % b64url(last.encode("utf-8")))
        else:
            parts.append("<Marker>%s</Marker>" % xml_escape(q(after)))
            if truncated and last is not None:
                parts.append("<NextMarker>%s</NextMarker>" % xml_escape(q(last)))
        for meta in contents:
            parts.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>"
                         "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
                         % (xml_escape(q(meta["key"])), iso_date(meta["last_modified"]), meta["etag"],
                            meta["size"]))
        for common in prefixes:
            parts.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % xml_escape(q(common)))
        parts.append("</ListBucketResult>")
        self.send(200, "".join(parts).encode("utf-8"), "application/xml")

    def delete_objects(self, bucket, exists):
        import xml.etree.ElementTree as ET
        raw = self.read_body(4 * 1024 * 1024)
        if not exists:
            raise ApiError(404, "NoSuchBucket", "the specified bucket does not exist")
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            raise ApiError(400, "MalformedXML", "the XML you provided was not well-formed") from None
        quiet = False
        deleted = []
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "Quiet":
                quiet = (el.text or "").strip().lower() == "true"
            elif tag == "Object":
                for child in el:
                    if child.tag.rsplit("}", 1)[-1] == "Key" and child.text:
                        APP.s3.delete(bucket, child.text)
                        deleted.append(child.text)
        body = ['<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult '
                'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
        if not quiet:
            body += ["<Deleted><Key>%s</Key></Deleted>" % xml_escape(k) for k in deleted]
        body.append("</DeleteResult>")
        self.send(200, "".join(body).encode("utf-8"), "application/xml")

    # -- objects --
    def object_op(self, bucket, key):
        method = self.command
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            if method == "POST" and ("uploads" in self.query or "uploadId" in self.query):
                raise ApiError(501, "NotImplemented", "multipart uploads are not supported by the emulator")
            self.method_not_allowed(["GET", "HEAD", "PUT", "DELETE"])
        if method == "PUT" and "partNumber" in self.query:
            raise ApiError(501, "NotImplemented", "multipart uploads are not supported by the emulator")
        if not APP.s3.bucket_exists(bucket):
            raise ApiError(404, "NoSuchBucket", "the specified bucket does not exist")
        if method == "PUT":
            return self.put_object(bucket, key)
        if method == "DELETE":
            APP.s3.delete(bucket, key)
            return self.send(204, b"", None)
        meta, f = APP.s3.open(bucket, key)
        if meta is None:
            raise ApiError(404, "NoSuchKey", "the specified key does not exist")
        with f:
            self.send_object(meta, f)

    def put_object(self, bucket, key):
        source = self.headers.get("x-amz-copy-source")
        user_meta = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
        content_type = self.headers.get("Content-Type") or "binary/octet-stream"
        if source:
            self.read_body(1024 * 1024)
            src = urllib.parse.unquote(source.split("?", 1)[0]).lstrip("/")
            src_bucket, _, src_key = src.partition("/")
            if not ObjectStore.valid_bucket(src_bucket) or not APP.s3.bucket_exists(src_bucket):
                raise ApiError(404, "NoSuchBucket", "the copy source bucket does not exist")
            meta, f = APP.s3.open(src_bucket, src_key)
            if meta is None:
                raise ApiError(404, "NoSuchKey", "the copy source key does not exist")
            if (self.headers.get("x-amz-metadata-directive") or "COPY").upper() != "REPLACE":
                user_meta, content_type = meta.get("user_meta", {}), meta.get("content_type", content_type)
            with f:
                new = APP.s3.put(bucket, key, f, APP.cfg.max_object_bytes, content_type, user_meta,
                                 {"content_encoding": meta.get("content_encoding")})
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><LastModified>%s</LastModified>'
                    '<ETag>&quot;%s&quot;</ETag></CopyObjectResult>' % (iso_date(new["last_modified"]),
                                                                       new["etag"]))
            return self.send(200, body.encode("utf-8"), "application/xml")
        stream = self.body_stream()
        encoding = self.headers.get("Content-Encoding") or ""
        sha_header = self.headers.get("x-amz-content-sha256") or ""
        codings = [c.strip() for c in encoding.split(",") if c.strip()]
        if "aws-chunked" in codings or sha_header.startswith("STREAMING-"):
            stream = ChunkedReader(LineBuffer(stream))
            codings = [c for c in codings if c != "aws-chunked"]
        try:
            meta = APP.s3.put(bucket, key, stream, APP.cfg.max_object_bytes, content_type, user_meta,
                              {"content_encoding": ", ".join(codings) or None})
        except ApiError:
            self.close_connection = True  # the rest of the body was not read
            raise
        self.send(200, b"", None, [("ETag", '"%s"' % meta["etag"])])

    def send_object(self, meta, f):
        size = meta["size"]
        start, end, status = 0, size - 1, 200
        headers = [("ETag", '"%s"' % meta["etag"]), ("Last-Modified", http_date(meta["last_modified"])),
                   ("Accept-Ranges", "bytes")]
        if meta.get("content_encoding"):
            headers.append(("Content-Encoding", meta["content_encoding"]))
        headers += [(k, v) for k, v in meta.get("user_meta", {}).items()]
        rng = self.headers.get("Range")
        if rng and size > 0:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start = max(0, size - int(m.group(2)))
                if start > end or start >= size:
                    raise ApiError(416, "InvalidRange", "the requested range is not satisfiable",
                                   [("Content-Range", "bytes */%d" % size)])
                status = 206
                headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
        length = max(0, end - start + 1)
        self.send(status, b"", meta.get("content_type") or "binary/octet-stream", headers, length=length)
        if self.command == "HEAD":
            return
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(65536, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)


# --------------------------------------------------------------------------- mail

def mailbox_name(address):
    """Inbucket's default 'local' naming: local part, lower-cased, '+extension' dropped."""
    address = (address or "").strip().strip("<>").strip()
    local = address.rsplit("@", 1)[0] if "@" in address else address
    local = local.lower()
    if not local or len(local) > 128 or not MAILBOX_CHARS.fullmatch(local):
        return None
    local = local.split("+", 1)[0]
    return local or None


def go_address(name, addr):
    return '"%s" <%s>' % (name, addr) if name else "<%s>" % addr


class MailStore:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.seq = 0

    def mailbox_dir(self, mailbox):
        safe = re.fullmatch(r"[a-z0-9_][a-z0-9._\-]{0,100}", mailbox)
        return os.path.join(self.root, mailbox if safe else "_" + sha256_hex(mailbox))

    @staticmethod
    def valid_id(msg_id):
        return bool(re.fullmatch(r"[0-9A-Za-z\-]{1,64}", msg_id or ""))

    def deliver(self, envelope_from, rcpts, raw):
        """Store one copy per distinct mailbox of the envelope recipients; returns the message ids."""
        import email.parser
        import email.policy
        meta = {"from": go_address("", envelope_from) if envelope_from else "", "to": [], "subject": ""}
        try:
            head = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
            if head.get("Subject") is not None:
                meta["subject"] = str(head["Subject"])
            if head.get("From") is not None:
                addrs = getattr(head["From"], "addresses", ())
                meta["from"] = go_address(addrs[0].display_name, addrs[0].addr_spec) if addrs else str(head["From"])
            if head.get("To") is not None:
                meta["to"] = [go_address(a.display_name, a.addr_spec)
                              for a in getattr(head["To"], "addresses", ())]
        except Exception as exc:
            log("mail: could not parse headers: %s" % short_error(exc))
        if not meta["to"]:
            meta["to"] = [go_address("", r) for r in rcpts]
        mailboxes = []
        for rcpt in rcpts:
            box = mailbox_name(rcpt)
            if box and box not in mailboxes:
                mailboxes.append(box)
        ids = []
        now = time.time()
        for mailbox in mailboxes:
            with self.lock:
                self.seq = (self.seq + 1) % 10000
                msg_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-%04d" % self.seq
                directory = self.mailbox_dir(mailbox)
                os.makedirs(directory, mode=0o750, exist_ok=True)
                while os.path.exists(os.path.join(directory, msg_id + ".json")):
                    msg_id += "0"
                record = dict(meta, mailbox=mailbox, id=msg_id, size=len(raw), seen=False,
                              date=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
                              **{"posix-millis": int(now * 1000)})
                with open(os.path.join(directory, msg_id + ".eml"), "wb") as f:
                    f.write(raw)
                tmp = os.path.join(directory, msg_id + ".json.tmp")
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(record, f)
                os.replace(tmp, os.path.join(directory, msg_id + ".json"))
            ids.append(msg_id)
        return ids

    def list(self, mailbox):
        directory = self.mailbox_dir(mailbox)
        out = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return out
        for name in names:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(directory, name), "rb") as f:
                        out.append(json.loads(f.read()))
                except (OSError, ValueError):
                    continue
        out.sort(key=lambda m: (m.get("posix-millis", 0), m.get("id", "")))
        return out

    def get(self, mailbox, msg_id):
        if not self.valid_id(msg_id):
            return None, None
        base = os.path.join(self.mailbox_dir(mailbox), msg_id)
        try:
            with open(base + ".json", "rb") as f:
                meta = json.loads(f.read())
            with open(base + ".eml", "rb") as f:
                raw = f.read()
        except (FileNotFoundError, ValueError):
            return None, None
        return meta, raw

    def set_seen(self, mailbox, msg_id, seen=True):
        meta, _ = self.get(mailbox, msg_id)
        if meta is None or meta.get("seen") == seen:
            return meta is not None
        meta["seen"] = seen
        base = os.path.join(self.mailbox_dir(mailbox), msg_id)
        with self.lock:
            with open(base + ".json.tmp", "w", encoding="utf-8") as f:
                json.dump(meta, f)
            os.replace(base + ".json.tmp", base + ".json")
        return True

    def delete(self, mailbox, msg_id=None):
        directory = self.mailbox_dir(mailbox)
        with self.lock:
            if msg_id is None:
                try:
                    names = os.listdir(directory)
                except FileNotFoundError:
                    return True
                for name in names:
                    os.unlink(os.path.join(directory, name))
                os.rmdir(directory)
                return True
            if not self.valid_id(msg_id):
                return False
            found = False
            for ext in (".json", ".eml"):
                try:
                    os.unlink(os.path.join(directory, msg_id + ext))
                    found = True
                except FileNotFoundError:
                    pass
            return found

    def mailboxes(self):
        out = []
        for name in sorted(os.listdir(self.root)):
            if not name.startswith("_") and os.path.isdir(os.path.join(self.root, name)):
                out.append(name)
        return out


def message_details(meta, raw):
    import email.parser
    import email.policy
    result = dict(meta)
    header, text, html, attachments = {}, "", "", []
    try:
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        for name, value in msg.items():
            header.setdefault(name, []).append(str(value))
        for kind in ("plain", "html"):
            part = msg.get_body(preferencelist=(kind,))
            if part is not None:
                content = part.get_content()
                if isinstance(content, bytes):
                    content = content.decode("utf-8", "replace")
                if kind == "plain":
                    text = content
                else:
                    html = content
        for part in msg.iter_attachments():
            attachments.append({"filename": part.get_filename() or "", "content-type": part.get_content_type()})
    except Exception as exc:
        log("mail: could not parse message %s: %s" % (meta.get("id"), short_error(exc)))
        if not text:
            text = raw.decode("utf-8", "replace")
    result.update(header=header, body={"text": text, "html": html}, attachments=attachments)
    return result


class SMTPHandler(socketserver.StreamRequestHandler):
    timeout = 300
    MAX_LINE = 4096

    def reply(self, text):
        self.wfile.write((text + "\r\n").encode("utf-8", "replace"))

    def handle(self):
        try:
            self.session()
        except (ConnectionError, TimeoutError, socket.timeout):
            pass
        except Exception:
            log("smtp: internal error:\n%s" % format_exc())

    def session(self):
        self.reply("220 stack-emulator ESMTP mail catcher ready")
        mail_from, rcpts = None, []
        while True:
            line = self.rfile.readline(self.MAX_LINE + 1)
            if not line:
                return
            if len(line) > self.MAX_LINE:
                self.reply("500 5.5.2 line too long")
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                mail_from, rcpts = None, []
                self.reply("250-stack-emulator greets %s" % (arg.strip() or "you"))
                for ext in ("PIPELINING", "SIZE %d" % APP.cfg.max_mail_bytes, "8BITMIME", "SMTPUTF8",
                            "AUTH PLAIN LOGIN"):
                    self.reply("250-" + ext)
                self.reply("250 HELP")
            elif verb == "HELO":
                mail_from, rcpts = None, []
                self.reply("250 stack-emulator")
            elif verb == "MAIL":
                m = re.match(r"(?i)FROM:\s*<([^>]*)>", arg) or re.match(r"(?i)FROM:\s*(\S+)", arg)
                if not m:
                    self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                mail_from, rcpts = m.group(1), []
                self.reply("250 2.1.0 OK")
            elif verb == "RCPT":
                m = re.match(r"(?i)TO:\s*<([^>]*)>", arg) or re.match(r"(?i)TO:\s*(\S+)", arg)
                if mail_from is None:
                    self.reply("503 5.5.1 MAIL first")
                elif not m:
                    self.reply("501 5.5.4 syntax: RCPT TO:<address>")
                elif mailbox_name(m.group(1)) is None:
                    self.reply("550 5.1.1 invalid mailbox name")
                elif len(rcpts) >= 200:
                    self.reply("452 4.5.3 too many recipients")
                else:
                    rcpts.append(m.group(1))
                    self.reply("250 2.1.5 OK")
            elif verb == "DATA":
                if mail_from is None or not rcpts:
                    self.reply("503 5.5.1 need MAIL and RCPT first")
                    continue
                self.reply("354 end data with <CR><LF>.<CR><LF>")
                raw = self.read_data()
                if raw is None:
                    self.reply("552 5.3.4 message too big")
                else:
                    try:
                        ids = APP.mail.deliver(mail_from, rcpts, raw)
                    except OSError as exc:
                        log("smtp: cannot store a message: %s" % short_error(exc))
                        self.reply("451 4.3.0 cannot store the message")
                    else:
                        self.reply("250 2.0.0 OK: queued as %s" % ids[0])
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self.reply("250 2.0.0 OK")
            elif verb == "NOOP":
                self.reply("250 2.0.0 OK")
            elif verb == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            elif verb == "VRFY":
                self.reply("252 2.5.2 cannot verify, but will accept")
            elif verb == "HELP":
                self.reply("214 EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY AUTH")
            elif verb == "AUTH":
                self.auth(arg)
            elif verb == "STARTTLS":
                self.reply("454 4.7.0 TLS not available")
            else:
                self.reply("500 5.5.2 command not recognized")

    def auth(self, arg):
        mech, _, initial = arg.strip().partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if not initial:
                self.reply("334 ")
                if not self.rfile.readline(self.MAX_LINE):
                    raise ConnectionError("closed during AUTH")
            self.reply("235 2.7.0 authentication successful")
        elif mech == "LOGIN":
            prompts = ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]
            if initial:
                prompts = prompts[1:]
            for prompt in prompts:
                self.reply("334 " + prompt)
                if not self.rfile.readline(self.MAX_LINE):
                    raise ConnectionError("closed during AUTH")
            self.reply("235 2.7.0 authentication successful")
        else:
            self.reply("504 5.5.4 unrecognized authentication type")

    def read_data(self):
        chunks, size, too_big, at_line_start = [], 0, False, True
        while True:
            piece = self.rfile.readline(65536)
            if not piece:
                raise ConnectionError("closed during DATA")
            if at_line_start and piece in (b".\r\n", b".\n"):
                break
            if at_line_start and piece.startswith(b"."):
                piece = piece[1:]
            at_line_start = piece.endswith(b"\n")
            size += len(piece)
            if size > APP.cfg.max_mail_bytes:
                too_big = True
                chunks = []
            if not too_big:
                chunks.append(piece)
        return None if too_big else b"".join(chunks)


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


MAIL_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mail - Stack emulator</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>Mail catcher</h1>
<p>Inbucket-compatible API: <code>GET /api/v1/mailbox/&lt;name&gt;</code>.</p>
<ul>%s</ul>
</body></html>
"""


class MailWebHandler(BaseHandler):
    service = "mail"

    def extra_headers(self):
        return [("Access-Control-Allow-Origin", "*")]

    def route(self):
        path, method = self.url_path, self.command
        if path in ("/", "/index.html", "/monitor", "/status"):
            if method not in ("GET", "HEAD"):
                self.method_not_allowed(["GET", "HEAD"])
            items = "".join('<li><a href="/api/v1/mailbox/%s">%s</a></li>' % (urllib.parse.quote(b), xml_escape(b))
                            for b in APP.mail.mailboxes())
            return self.send_html(200, MAIL_INDEX % items)
        if not path.startswith("/api/v1/mailbox/"):
            raise ApiError(404, "NOT_FOUND", "no route for %s" % path[:200])
        seg = [urllib.parse.unquote(s) for s in path[len("/api/v1/mailbox/"):].rstrip("/").split("/")]
        mailbox = mailbox_name(seg[0])
        if mailbox is None:
            raise ApiError(400, "INVALID_MAILBOX", "invalid mailbox name")
        if len(seg) == 1:
            if method in ("GET", "HEAD"):
                return self.send_json(200, APP.mail.list(mailbox))
            if method == "DELETE":
                APP.mail.delete(mailbox)
                return self.send_json(200, "OK")
            self.method_not_allowed(["GET", "HEAD", "DELETE"])
        msg_id = seg[1]
        if len(seg) == 3 and seg[2] == "source":
            if method not in ("GET", "HEAD"):
                self.method_not_allowed(["GET", "HEAD"])
            meta, raw = APP.mail.get(mailbox, msg_id)
            if meta is None:
                raise ApiError(404, "NOT_FOUND", "message not found")
            return self.send(200, raw, "text/plain; charset=utf-8")
        if len(seg) != 2:
            raise ApiError(404, "NOT_FOUND", "no route for %s" % path[:200])
        if method in ("GET", "HEAD"):
            meta, raw = APP.mail.get(mailbox, msg_id)
            if meta is None:
                raise ApiError(404, "NOT_FOUND", "message not found")
            APP.mail.set_seen(mailbox, msg_id, True)
            return self.send_json(200, message_details(meta, raw))
        if method == "DELETE":
            if not APP.mail.delete(mailbox, msg_id):
                raise ApiError(404, "NOT_FOUND", "message not found")
            return self.send_json(200, "OK")
        if method == "PATCH":
            body = self.read_json_object(allow_empty=True)
            seen = body.get("seen", True)
            if not isinstance(seen, bool):
                raise ApiError(400, "SCHEMA_ERROR", "seen must be a boolean")
            if not APP.mail.set_seen(mailbox, msg_id, seen):
                raise ApiError(404, "NOT_FOUND", "message not found")
            return self.send_json(200, "OK")
        self.method_not_allowed(["GET", "HEAD", "DELETE", "PATCH"])


# --------------------------------------------------------------------------- mock OAuth / OIDC

class OAuthHandler(BaseHandler):
    service = "oauth"
    TTL = 3600

    def extra_headers(self):
        return [("Access-Control-Allow-Origin", "*"), ("Cache-Control", "no-store")]

    def issuer(self):
        """http://localhost:<port the client used>: stays right when a resumed VM is reached via another port."""
        host = (self.headers.get("Host") or "").strip()
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]*):(\d{1,5})", host)
        port = int(m.group(2)) if m else 0
        if not 0 < port < 65536:
            port = APP.cfg.oauth_port
        return "http://localhost:%d" % port

    def route(self):
        path, method = self.url_path.rstrip("/") or "/", self.command
        get_routes = {
            "/.well-known/openid-configuration": self.discovery,
            "/.well-known/oauth-authorization-server": self.discovery,
            "/jwks": lambda: self.send_json(200, {"keys": []}),
            "/me": self.userinfo, "/userinfo": self.userinfo,
            "/auth": self.authorize, "/": self.index,
        }
        if method in ("GET", "HEAD") and path in get_routes:
            return get_routes[path]()
        if method == "POST" and path == "/auth":
            return self.authorize_submit()
        if method == "POST" and path == "/token":
            return self.token()
        if method == "POST" and path in ("/me", "/userinfo"):
            return self.userinfo()
        if path in get_routes or path == "/token":
            self.method_not_allowed(["GET", "HEAD", "POST"])
        raise ApiError(404, "not_found", "no route for %s" % path[:200])

    def send_api_error(self, exc):
        self.send_json(exc.status, {"error": exc.code, "error_description": exc.message}, exc.headers)

    def index(self):
        self.send_html(200, PAGE.format(title="Mock OAuth provider",
                                        body="<p>Discovery: <code>%s/.well-known/openid-configuration</code></p>"
                                        % xml_escape(self.issuer())))

    def discovery(self):
        iss = self.issuer()
        self.send_json(200, {
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
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
            "code_challenge_methods_supported": ["S256", "plain"],
        })

    def _params(self, form):
        return {k: v[0] for k, v in form.items() if v}

    def authorize(self):
        p = self._params(self.query)
        if not p.get("redirect_uri", "").startswith(("http://", "https://")):
            raise ApiError(400, "invalid_request", "redirect_uri must be an http(s) URL")
        if p.get("login_hint") or p.get("prompt") == "none":
            return self._issue_code(p, p.get("login_hint") or "mock-user@example.com")
        hidden = "".join('<input type="hidden" name="%s" value="%s">' % (xml_escape(k), xml_escape(v))
                         for k, v in p.items())
        self.send_html(200, PAGE.format(title="Mock OAuth sign-in", body=(
            '<form method="post" action="/auth">%s<label>Email <input type="email" name="email" '
            'value="mock-user@example.com"></label> <button type="submit">Sign in</button></form>' % hidden)))

    def authorize_submit(self):
        raw = self.read_body(64 * 1024).decode("utf-8", "replace")
        p = self._params(urllib.parse.parse_qs(raw, keep_blank_values=True))
        if not p.get("redirect_uri", "").startswith(("http://", "https://")):
            raise ApiError(400, "invalid_request", "redirect_uri must be an http(s) URL")
        self._issue_code(p, p.get("email") or "mock-user@example.com")

    def _issue_code(self, p, email):
        code = secrets.token_urlsafe(24)
        with APP.oauth_lock:
            APP.oauth_purge()
            APP.oauth_codes[code] = {
                "email": email, "client_id": p.get("client_id", ""), "redirect_uri": p["redirect_uri"],
                "nonce": p.get("nonce"), "challenge": p.get("code_challenge"),
                "method": p.get("code_challenge_method", "plain"), "scope": p.get("scope", "openid"),
                "exp": time.time() + 600}
        query = {"code": code, "iss": self.issuer()}
        if p.get("state") is not None:
            query["state"] = p["state"]
        target = p["redirect_uri"] + ("&" if "?" in p["redirect_uri"] else "?") + urllib.parse.urlencode(query)
        self.send(302, b"", None, [("Location", target)])

    def token(self):
        raw = self.read_body(64 * 1024).decode("utf-8", "replace")
        p = self._params(urllib.parse.parse_qs(raw, keep_blank_values=True))
        client_id, client_secret = p.get("client_id", ""), p.get("client_secret", "")
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                cid, _, csec = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
                client_id, client_secret = urllib.parse.unquote(cid), urllib.parse.unquote(csec)
            except (ValueError, UnicodeError):
                raise ApiError(401, "invalid_client", "malformed Basic credentials") from None
        grant = p.get("grant_type")
        with APP.oauth_lock:
            APP.oauth_purge()
            if grant == "authorization_code":
                grant_data = APP.oauth_codes.pop(p.get("code", ""), None)
                if grant_data is None:
                    raise ApiError(400, "invalid_grant", "unknown or expired authorization code")
                if p.get("redirect_uri") and p["redirect_uri"] != grant_data["redirect_uri"]:
                    raise ApiError(400, "invalid_grant", "redirect_uri does not match")
                if grant_data["challenge"]:
                    verifier = p.get("code_verifier", "")
                    want = grant_data["challenge"]
                    got = b64url(hashlib.sha256(verifier.encode()).digest()) \
                        if grant_data["method"] == "S256" else verifier
                    if not hmac.compare_digest(got, want):
                        raise ApiError(400, "invalid_grant", "PKCE verification failed")
            elif grant == "refresh_token":
                grant_data = APP.oauth_refresh.get(p.get("refresh_token", ""))
                if grant_data is None:
                    raise ApiError(400, "invalid_grant", "unknown refresh token")
            else:
                raise ApiError(400, "unsupported_grant_type", "grant_type must be authorization_code "
                                                              "or refresh_token")
            email = grant_data["email"]
            access = secrets.token_urlsafe(32)
            APP.oauth_tokens[access] = {"email": email, "exp": time.time() + self.TTL}
            refresh = p.get("refresh_token") if grant == "refresh_token" else secrets.token_urlsafe(32)
            APP.oauth_refresh[refresh] = {"email": email, "client_id": client_id or grant_data.get("client_id", ""),
                                          "nonce": None, "scope": grant_data.get("scope", "openid")}
        now = int(time.time())
        claims = {"iss": self.issuer(), "sub": oauth_subject(email), "aud": client_id or grant_data.get("client_id", ""),
                  "iat": now, "exp": now + self.TTL, "email": email, "email_verified": True,
                  "name": email.split("@")[0]}
        if grant_data.get("nonce"):
            claims["nonce"] = grant_data["nonce"]
        head = b64url(jdump({"alg": "HS256", "typ": "JWT"}))
        body = b64url(jdump(claims))
        sig = hmac.new(client_secret.encode("utf-8"), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
        self.send_json(200, {"access_token": access, "token_type": "Bearer", "expires_in": self.TTL,
                             "refresh_token": refresh, "scope": grant_data.get("scope", "openid"),
                             "id_token": "%s.%s.%s" % (head, body, b64url(sig))})

    def userinfo(self):
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with APP.oauth_lock:
            data = APP.oauth_tokens.get(token)
        if data is None or data["exp"] < time.time():
            raise ApiError(401, "invalid_token", "missing, unknown or expired access token",
                           [("WWW-Authenticate", 'Bearer error="invalid_token"')])
        email = data["email"]
        self.send_json(200, {"sub": oauth_subject(email), "email": email, "email_verified": True,
                             "name": email.split("@")[0]})


def oauth_subject(email):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "mock-oauth:" + email.lower()))


# --------------------------------------------------------------------------- application

class App:
    def __init__(self, cfg):
        self.cfg = cfg
        self.db = Database(cfg.db_url)
        self.db_ready = threading.Event()
        self.db_init_error = None
        self.jwt_key = None
        self._redis = None
        self._redis_lock = threading.Lock()
        self.s3 = ObjectStore(os.path.join(cfg.data_dir, "s3"))
        self.mail = MailStore(os.path.join(cfg.data_dir, "mail"))
        self.oauth_lock = threading.Lock()
        self.oauth_codes, self.oauth_tokens, self.oauth_refresh = {}, {}, {}

    def redis(self):
        with self._redis_lock:
            if self._redis is None:
                import redis
                self._redis = redis.Redis.from_url(self.cfg.redis_url, socket_timeout=3,
                                                   socket_connect_timeout=3)
            return self._redis

    def oauth_purge(self):
        now = time.time()
        for table in (self.oauth_codes, self.oauth_tokens):
            for k in [k for k, v in table.items() if v["exp"] < now]:
                del table[k]
        if len(self.oauth_refresh) > 10000:
            self.oauth_refresh.clear()


APP = None


def db_init_loop(env):
    """Create the schema, keep placeholder keys, apply env keys once per boot; retry until it works."""
    marker = os.path.join(APP.cfg.run_dir, "env-keys-applied")
    started = time.monotonic()
    while True:
        try:
            APP.db.run(lambda cur: init_schema(cur, force_placeholders=False))
            if not os.path.exists(marker):
                found = keys_from_env(env)
                if found:
                    def tx(cur):
                        for kind, secret in found.items():
                            cur.execute("UPDATE emulator.api_keys SET secret = %s, updated_at = now() "
                                        "WHERE project_id = %s AND kind = %s", (secret, PROJECT_ID, kind))
                    APP.db.run(tx)
                    log("applied keys from the environment: %s" % ", ".join(sorted(found)))
                try:
                    os.makedirs(APP.cfg.run_dir, exist_ok=True)
                    with open(marker, "w") as f:
                        f.write("%d\n" % time.time())
                except OSError as exc:
                    log("cannot write %s: %s" % (marker, short_error(exc)))
            APP.jwt_key = None
            jwt_secret()
            APP.db_init_error = None
            APP.db_ready.set()
            log("database ready")
            return
        except Exception as exc:
            message = short_error(exc)
            if message != APP.db_init_error:
                log("database not ready (retrying): %s" % message)
            APP.db_init_error = message
            # PostgreSQL usually starts alongside stackd at boot: poll briskly at first
            time.sleep(0.25 if time.monotonic() - started < 60 else 2)


def sd_notify(message):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode("utf-8"))
    except OSError as exc:
        log("sd_notify failed: %s" % short_error(exc))


def init_db_cli(cfg):
    db = Database(cfg.db_url, size=1)
    try:
        db.run(lambda cur: init_schema(cur, force_placeholders=True))
    except Exception as exc:
        log("--init-db failed: %s" % short_error(exc))
        return 1
    finally:
        db.close_all()
    print("stackd: schema ready, placeholder keys set for project %r" % PROJECT_ID)
    return 0


def main(argv):
    global APP
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip())
        return 0
    unknown = [a for a in argv if a not in ("--init-db",)]
    if unknown:
        print("stackd: unknown argument %s (try --help)" % unknown[0], file=sys.stderr)
        return 2
    cfg = Config(os.environ)
    if "--init-db" in argv:
        return init_db_cli(cfg)

    APP = App(cfg)
    for sub in ("s3", "mail"):
        os.makedirs(os.path.join(cfg.data_dir, sub), mode=0o750, exist_ok=True)

    plan = [("dashboard", cfg.dashboard_port, DashboardHandler),
            ("backend", cfg.backend_port, BackendHandler),
            ("s3", cfg.s3_port, S3Handler),
            ("mail-web", cfg.mail_web_port, MailWebHandler),
            ("mock-oauth", cfg.oauth_port, OAuthHandler),
            ("smtp", cfg.smtp_port, None)]
    ports = [p for _, p, _ in plan]
    if len(set(ports)) != len(ports):
        log("port clash in %s: check STACK_EMULATOR_PORT_PREFIX and the *_PORT settings"
            % ", ".join("%s=%d" % (n, p) for n, p, _ in plan))
        return 1
    servers = []
    for name, port, handler in plan:
        try:
            if handler is None:
                srv = SMTPServer((cfg.bind, port), SMTPHandler)
            else:
                srv = Server((cfg.bind, port), handler)
        except OSError as exc:
            log("cannot listen on %s:%d for %s: %s" % (cfg.bind, port, name, short_error(exc)))
            return 1
        servers.append((name, srv))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    for name, srv in servers:
        # a long poll interval: shutdown is by process exit, so idle threads never wake up
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 3600},
                         name=name, daemon=True).start()
    threading.Thread(target=db_init_loop, args=(dict(os.environ),), name="db-init", daemon=True).start()
    log("listening: " + ", ".join("%s=%d" % (n, p) for n, p, _ in plan))
    sd_notify("READY=1\nSTATUS=listening")
    while not stop.wait(3600):
        pass
    log("stopping")
    sd_notify("STOPPING=1")
    APP.db.close_all()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
