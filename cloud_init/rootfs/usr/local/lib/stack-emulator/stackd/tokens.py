"""Access tokens (ES256 JWTs), the JWKS that verifies them, and refresh tokens.

The signing key is made once per image (`stackd --init-db` at provisioning) and replaced by
a key rotation. Claims follow stack-shared's accessTokenPayloadSchema; the issuer is
`<API URL the client used>/api/v1/projects/<project id>` as upstream builds it.
"""

import hashlib
import json
import secrets
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from . import errors
from .config import BRANCH_ID

ACCESS_TOKEN_SECONDS = 600
REFRESH_TOKEN_DAYS = 365
_key_cache = {}
_key_lock = threading.Lock()


# ------------------------------------------------------------------ signing keys

def new_signing_key():
    """(kid, private key PEM) for a fresh P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    return secrets.token_hex(8), pem


def ensure_signing_key(cur, replace=False):
    """Make sure an active signing key exists for normal and for anonymous users (upstream
    publishes the anonymous users' keys only on request); with replace, retire the old ones."""
    if replace:
        cur.execute("UPDATE emulator.signing_keys SET active = false")
    for anonymous in (False, True):
        cur.execute("SELECT 1 FROM emulator.signing_keys WHERE active AND anonymous = %s", (anonymous,))
        if cur.fetchone() is None:
            kid, pem = new_signing_key()
            cur.execute("INSERT INTO emulator.signing_keys (kid, private_pem, anonymous) VALUES (%s, %s, %s)",
                        (kid, pem, anonymous))


def _load(kid, pem):
    with _key_lock:
        key = _key_cache.get(kid)
        if key is None:
            key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
            _key_cache[kid] = key
        return key


def _active_key(cur, anonymous):
    cur.execute("SELECT kid, private_pem FROM emulator.signing_keys WHERE active AND anonymous = %s "
                "ORDER BY created_at DESC LIMIT 1", (anonymous,))
    row = cur.fetchone()
    if row is None:
        ensure_signing_key(cur)
        return _active_key(cur, anonymous)
    return row["kid"], _load(row["kid"], row["private_pem"])


def public_jwk(kid, key):
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
    return jwk


def jwks(cur, include_anonymous=False):
    cur.execute("SELECT kid, private_pem FROM emulator.signing_keys WHERE active "
                "AND (NOT anonymous OR %s) ORDER BY anonymous, created_at DESC", (include_anonymous,))
    return {"keys": [public_jwk(r["kid"], _load(r["kid"], r["private_pem"])) for r in cur.fetchall()]}


# ------------------------------------------------------------------ access tokens

def issuer(api_base, project_id, is_anonymous=False):
    suffix = "-anonymous-users" if is_anonymous else ""
    return "%s/api/v1/projects%s/%s" % (api_base.rstrip("/"), suffix, project_id)


def audience(project_id, is_anonymous=False):
    return "%s:anon" % project_id if is_anonymous else project_id


def access_token_claims(user, project_id, session_id, api_base, now=None):
    """The payload of an access token for a user in its server read shape."""
    now = int(now if now is not None else time.time())
    anonymous = bool(user["is_anonymous"])
    return {
        "sub": user["id"],
        "iat": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "iss": issuer(api_base, project_id, anonymous),
        "aud": audience(project_id, anonymous),
        "project_id": project_id,
        "branch_id": BRANCH_ID,
        "refresh_token_id": str(session_id),
        "role": "authenticated",
        "name": user["display_name"],
        "email": user["primary_email"],
        "email_verified": bool(user["primary_email_verified"]),
        "selected_team_id": user["selected_team_id"],
        "signed_up_at": user["signed_up_at_millis"] // 1000,
        "is_anonymous": anonymous,
        "is_restricted": bool(user["is_restricted"]),
        "restricted_reason": user["restricted_reason"],
        "requires_totp_mfa": bool(user["requires_totp_mfa"]),
    }


def sign_access_token(cur, claims):
    kid, key = _active_key(cur, bool(claims["is_anonymous"]))
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def decode_access_token(cur, token, project_id):
    """The verified claims of an access token for this project, or a KnownError."""
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        cur.execute("SELECT kid, private_pem FROM emulator.signing_keys WHERE kid = %s AND active", (kid,))
        row = cur.fetchone()
        if row is None:
            raise errors.unparsable_access_token()
        key = _load(row["kid"], row["private_pem"]).public_key()
        claims = jwt.decode(token, key, algorithms=["ES256"],
                            options={"verify_aud": False, "require": ["exp", "sub", "aud"]})
    except jwt.ExpiredSignatureError:
        payload = jwt.decode(token, options={"verify_signature": False})
        raise errors.access_token_expired(
            payload.get("exp", 0) * 1000, str(payload.get("aud", "")).split(":")[0],
            payload.get("sub"), payload.get("refresh_token_id")) from None
    except jwt.PyJWTError:
        raise errors.unparsable_access_token() from None
    token_project = str(claims.get("aud", "")).split(":")[0]
    if token_project != project_id:
        raise errors.invalid_project_for_access_token(project_id, token_project)
    return claims


# ------------------------------------------------------------------ refresh tokens and sessions

def _hash(refresh_token):
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()


def create_session(cur, project_id, user_id, expires_in_millis=None, is_impersonation=False):
    """A new session (refresh token row); returns (session id, refresh token)."""
    refresh_token = secrets.token_urlsafe(34)
    session_id = uuid.uuid4()
    seconds = (expires_in_millis / 1000.0) if expires_in_millis else REFRESH_TOKEN_DAYS * 86400
    cur.execute("INSERT INTO emulator.sessions (id, project_id, user_id, refresh_token_hash, "
                "is_impersonation, expires_at) VALUES (%s, %s, %s, %s, %s, "
                "clock_timestamp() + make_interval(secs => %s))",
                (session_id, project_id, user_id, _hash(refresh_token), is_impersonation, seconds))
    return session_id, refresh_token


def session_for_refresh_token(cur, project_id, refresh_token):
    """The live session of a refresh token, or REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED."""
    cur.execute("UPDATE emulator.sessions SET last_used_at = clock_timestamp() "
                "WHERE refresh_token_hash = %s AND project_id = %s "
                "AND (expires_at IS NULL OR expires_at > clock_timestamp()) RETURNING id, user_id",
                (_hash(refresh_token or ""), project_id))
    row = cur.fetchone()
    if row is None:
        raise errors.refresh_token_not_found_or_expired()
    return row


def revoke_sessions(cur, project_id, user_id, keep=None):
    """End every session of a user but `keep` (upstream does this when a password changes)."""
    cur.execute("DELETE FROM emulator.sessions WHERE user_id::text = %s AND project_id = %s "
                "AND id::text <> %s", (str(user_id), project_id, str(keep or "")))
