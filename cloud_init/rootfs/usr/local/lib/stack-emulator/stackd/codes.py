"""One-time verification codes (email verification, password reset, ...), stored hashed.

Codes look like upstream's: 45 lower-case characters of Crockford base32 (224 bits). A code
sent back is lower-cased first, as upstream does. The links in mails carry the code in a
`code` query parameter of the callback URL the app passed, which must be a localhost URL
(when the project allows localhost) or match one of the project's trusted domains.
"""

import hashlib
import json
import re
import secrets
import urllib.parse

from . import errors

DEFAULT_TTL_SECONDS = 60 * 60 * 24 * 7  # upstream's links stay valid for a week
CODE_LENGTH = 45
MAX_ATTEMPTS_PER_CODE = 20
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, as upstream's codes


def _hash(code):
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def hash_code(code):
    """How a code sent back is looked up: the SHA-256 of the lower-cased code."""
    return _hash(code.lower())


def generate():
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def project_of(cur, purpose, code):
    """The project a code belongs to (codes are unique across projects), or None."""
    if not isinstance(code, str) or not code:
        return None
    cur.execute("SELECT project_id FROM emulator.verification_codes WHERE code_hash = %s AND purpose = %s",
                (_hash(code.strip().lower()), purpose))
    row = cur.fetchone()
    return row["project_id"] if row else None


def create(cur, project_id, purpose, user_id=None, data=None, ttl_seconds=DEFAULT_TTL_SECONDS, code=None):
    """A fresh code for purpose (or `code`, made by generate(), when data must name it)."""
    code = code or generate()
    cur.execute("INSERT INTO emulator.verification_codes (code_hash, project_id, purpose, user_id, data, "
                "expires_at) VALUES (%s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))",
                (_hash(code), project_id, purpose, user_id, json.dumps(data or {}), ttl_seconds))
    return code


def code_field(f, name="code"):
    """Read the request's code as upstream's schema does: a string of exactly 45 characters."""
    code = f.string(name, required=True)
    if isinstance(code, str) and len(code) != CODE_LENGTH:
        f.problems.append("%s.%s must be exactly %d characters" % (f.where, name, CODE_LENGTH))
    return code


def lookup(cur, project_id, purpose, code):
    """The code's row if it is usable, else VERIFICATION_CODE_NOT_FOUND/EXPIRED/ALREADY_USED or
    VERIFICATION_CODE_MAX_ATTEMPTS_REACHED, in upstream's order. Every lookup counts an attempt."""
    if not isinstance(code, str) or not code:
        raise errors.verification_code_not_found()
    cur.execute("UPDATE emulator.verification_codes SET attempts = attempts + 1 "
                "WHERE code_hash = %s AND project_id = %s AND purpose = %s "
                "RETURNING *, attempts - 1 AS attempts_before, expires_at < clock_timestamp() AS expired",
                (_hash(code.lower()), project_id, purpose))
    row = cur.fetchone()
    if row is None:
        raise errors.verification_code_not_found()
    if row["expired"]:
        raise errors.verification_code_expired()
    if row["used_at"] is not None:
        raise errors.verification_code_already_used()
    if row["attempts_before"] >= MAX_ATTEMPTS_PER_CODE:
        raise errors.verification_code_max_attempts_reached()
    return row


def consume(cur, project_id, purpose, code):
    row = lookup(cur, project_id, purpose, code)
    cur.execute("UPDATE emulator.verification_codes SET used_at = clock_timestamp() WHERE code_hash = %s",
                (row["code_hash"],))
    return row


# ---------------------------------------------------------------------------- links

def link(callback_url, code):
    """callback_url with its `code` query parameter set, as URL.searchParams.set does."""
    parts = urllib.parse.urlsplit(callback_url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    out, done = [], False
    for key, value in pairs:
        if key == "code":
            if done:
                continue
            value, done = code, True
        out.append((key, value))
    if not done:
        out.append(("code", code))
    path = parts.path or ("/" if parts.scheme in ("http", "https") else "")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(out), parts.fragment))


def parse_url(value):
    """(scheme, hostname, port-or-None) of an absolute URL, or None when `new URL()` would refuse it."""
    if not isinstance(value, str) or not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", value.strip()):
        return None
    text = value.strip()
    if re.match(r"^(https?|ftp|wss?):", text, re.IGNORECASE):
        # As a browser (WHATWG URL) reads special schemes: tab and newlines are dropped and a
        # backslash is a slash, so "http://evil.example\\@localhost/" goes to evil.example.
        text = re.sub(r"[\t\r\n]", "", text).replace("\\", "/")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https", "ftp", "ws", "wss") and not parts.hostname:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def url_problem(path, value):
    """Upstream's urlSchema message for a bad callback URL, or None."""
    if " " in value:
        return "%s contains spaces" % path
    if parse_url(value) is None:
        return "%s is not a valid URL" % path
    return None


def _default_port(scheme):
    return {"http": 80, "https": 443}.get(scheme)


def _host_matches(pattern, host):
    if "*" not in pattern:
        return pattern == host
    regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^.]*").replace("\0", ".*")
    return re.fullmatch(regex, host) is not None


def _matches_domain(url, pattern):
    scheme, host, port = url
    port = port or _default_port(scheme)
    if "*" in pattern:
        match = re.match(r"^([^:]+)://([^/]*)", pattern)
        if not match or match.group(1).lower() != scheme:
            return False
        host_pattern = match.group(2).lower()
        if ":" in host_pattern:
            return _host_matches(host_pattern, "%s:%s" % (host, port))
        return _host_matches(host_pattern, host) and port == _default_port(scheme)
    base = parse_url(pattern)
    if base is None:
        return False
    return base[0] == scheme and base[1] == host and (base[2] or _default_port(base[0])) == port


def redirect_allowed(config, callback_url):
    """upstream's validateRedirectUrl: localhost (when allowed) or a trusted domain."""
    url = parse_url(callback_url)
    if url is None:
        return False
    host = url[1]
    if config.get("allow_localhost", True) and (
            host == "localhost" or host.endswith(".localhost") or re.fullmatch(r"127\.\d+\.\d+\.\d+", host)):
        return True
    for domain in config.get("domains") or []:
        base = domain.get("domain") if isinstance(domain, dict) else domain
        if isinstance(base, str) and base and _matches_domain(url, base):
            return True
    return False


def check_redirect(config, callback_url):
    if not redirect_allowed(config, callback_url):
        raise errors.redirect_url_not_whitelisted()
