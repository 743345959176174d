"""User and team API keys: /user-api-keys and /team-api-keys, as upstream's (api-keys) handlers.

A key's secret has upstream's format (stack-shared's createProjectApiKey):
  sk_<45 random base32 characters><key id without dashes><user|team><flag>574ck4u7h<crc32 hex>
(`pk_` for a public key; the flag says public or not, and self-hosted, as the emulator is). It
is shown once, in the answer to POST; only its SHA-256 and its last four characters are kept.
A key is revoked by PATCH {"revoked": true}; `check` (server access) answers with the key or
API_KEY_NOT_FOUND / WRONG_API_KEY_TYPE / API_KEY_REVOKED / API_KEY_EXPIRED. The project's
allow_user_api_keys / allow_team_api_keys must be on. With client access a user manages its own
keys, and a team's keys when it holds `$manage_api_keys` in the team (else, as upstream, the
team's keys are "not found").
"""

import hashlib
import secrets
import uuid
import zlib

from . import errors
from .inputs import check, opt, params, query_fields, read_body, user_field, uuid_field
from .permissions import ensure_user, list_permissions
from .routing import CLIENT_UP, SERVER_UP, Routes
from .validate import MISSING

routes = Routes()

TYPES = ("user", "team")
OWNER = {"user": "user_id", "team": "team_id"}
MARKER = "574ck4u7h"
BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford, as stack-shared's bytes.ts
SECRET_ALPHABET = BASE32.lower()
SECRET_PART_LENGTH = 45
MAX_MILLIS = 8_640_000_000_000_000  # the latest time a JavaScript Date holds


# ---------------------------------------------------------------------------- secrets

def checksum(text):
    """crc32 of the text as 8 lower-case hex digits (stack-shared's createChecksumSync)."""
    return "%08x" % (zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF)


def make_secret(key_id, key_type, is_public, is_cloud=False, random_part=None):
    """A key's secret value in upstream's format."""
    prefix = "pk" if is_public else "sk"
    flag = BASE32[(0 if is_cloud else 1) + (2 if is_public else 0)].lower()
    random_part = random_part or "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_PART_LENGTH))
    body = "%s_%s%s%s%s%s" % (prefix, random_part, str(key_id).replace("-", ""), key_type, flag, MARKER)
    return body + checksum(body)


def secret_hash(secret):
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- shapes

def _millis(ts):
    return int(ts.timestamp() * 1000)


def key_json(row, secret=None):
    """A key in the read shape of project-api-keys.js; on creation `value` is the secret itself."""
    key_type = "user" if row["user_id"] is not None else "team"
    out = {
        "id": str(row["id"]),
        "description": row["description"],
        "is_public": bool(row["is_public"]),
        "created_at_millis": _millis(row["created_at"]),
        "value": secret if secret is not None else {"last_four": row["last_four"]},
        "type": key_type,
        OWNER[key_type]: str(row[OWNER[key_type]]),
    }
    # Unset times are left out (the schema's fields are optional, not nullable).
    if row["expires_at"] is not None:
        out["expires_at_millis"] = _millis(row["expires_at"])
    if row["manually_revoked_at"] is not None:
        out["manually_revoked_at_millis"] = _millis(row["manually_revoked_at"])
    return out


# ---------------------------------------------------------------------------- checks

def _require_enabled(ctx, key_type):
    if not ctx.config.get("allow_%s_api_keys" % key_type, True):
        raise errors.StatusError(400, "%s API keys are not enabled for this project. Turn on allow_%s_api_keys "
                                      "in the project's config (PATCH /internal/projects/current) to use them."
                                 % (key_type.capitalize(), key_type))


def _require_manager(ctx, key_type, owner_id):
    """With client access: only one's own keys, or a team's with `$manage_api_keys` in it."""
    if ctx.is_server:
        return
    if not ctx.user_id:
        raise errors.user_authentication_required()
    if key_type == "user":
        if owner_id != ctx.user_id:
            raise errors.StatusError(403, "Client can only manage their own api keys: use user_id=me, or server "
                                          "access for another user's keys")
        return
    if not list_permissions(ctx.cur, ctx.project_id, "team", user_id=ctx.user_id, team_id=owner_id,
                            permission_id="$manage_api_keys", recursive=True):
        raise errors.api_key_not_found()  # upstream does not reveal that the team exists


def _number(f, name):
    """A nullable number that must be present (yupNumber().nullable().defined())."""
    value = f.data.get(name, MISSING)
    if value is MISSING:
        f.problems.append("%s.%s must be defined" % (f.where, name))
        return MISSING
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return f._bad(name, "must be a `number` type")
    if not 0 <= value <= MAX_MILLIS:
        return f._bad(name, "must be a time in milliseconds since 1970, between 0 and %d" % MAX_MILLIS)
    return int(value)


def _create_body(key_type):
    owner = (lambda ctx, f, name, required: user_field(ctx, f, name, required)) if key_type == "user" else \
        (lambda ctx, f, name, required: uuid_field(f, name, required))
    return {
        "description": "string",
        "expires_at_millis": lambda ctx, f, name, required: _number(f, name),
        "is_public": lambda ctx, f, name, required: f.boolean(name),
        OWNER[key_type]: owner,
    }


def _revoked(ctx, f, name, required):
    """Only `true`: a revoked key stays revoked."""
    value = f.boolean(name)
    if value is False:
        return f._bad(name, "must be one of the following values: true")
    return value


UPDATE_BODY = {"description": "string", "revoked": _revoked}


# ---------------------------------------------------------------------------- handlers

def _load(ctx, key_type, key_id):
    """The key with this id (of this type), after the manager check, or API_KEY_NOT_FOUND."""
    ctx.cur.execute("SELECT * FROM emulator.project_api_keys WHERE project_id = %s AND id = %s",
                    (ctx.project_id, key_id))
    row = ctx.cur.fetchone()
    if row is None or row[OWNER[key_type]] is None:
        raise errors.api_key_not_found()
    _require_manager(ctx, key_type, str(row[OWNER[key_type]]))
    return row


def _create(ctx, key_type):
    owner = OWNER[key_type]
    f, values = read_body(ctx, _create_body(key_type), required=("description", owner))
    check(ctx, f)
    _require_enabled(ctx, key_type)
    owner_id = values[owner]
    _require_manager(ctx, key_type, owner_id)
    if key_type == "user":
        ensure_user(ctx.cur, ctx.project_id, owner_id)
    else:
        ctx.cur.execute("SELECT 1 FROM emulator.teams WHERE project_id = %s AND id = %s", (ctx.project_id, owner_id))
        if ctx.cur.fetchone() is None:
            raise errors.team_not_found(owner_id)
    key_id = uuid.uuid4()
    is_public = bool(values.get("is_public"))
    secret = make_secret(key_id, key_type, is_public)
    expires = values.get("expires_at_millis") or None  # upstream: 0 means no expiry too
    ctx.cur.execute("INSERT INTO emulator.project_api_keys (id, project_id, user_id, team_id, description, "
                    "secret_hash, last_four, is_public, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                    "CASE WHEN %s::bigint IS NULL THEN NULL ELSE to_timestamp(%s::bigint / 1000.0) END) RETURNING *",
                    (key_id, ctx.project_id, owner_id if key_type == "user" else None,
                     owner_id if key_type == "team" else None, values["description"], secret_hash(secret),
                     secret[-4:], is_public, expires, expires))
    return key_json(ctx.cur.fetchone(), secret)


def _owner_query(ctx, key_type):
    """The query every route but create takes: user_id (a user id or `me`, optional) or team_id
    (required, as upstream's team query schema has it)."""
    owner = OWNER[key_type]
    q = query_fields(ctx, (owner,))
    owner_id = opt(user_field(ctx, q, owner) if key_type == "user" else uuid_field(q, owner, True))
    return q, owner_id


def _list(ctx, key_type):
    owner = OWNER[key_type]
    q, owner_id = _owner_query(ctx, key_type)
    check(ctx, q)
    _require_enabled(ctx, key_type)
    if owner_id is None:
        raise errors.schema_error("%s is required for %s API keys: add ?%s=<id>%s to the URL"
                                  % (owner, key_type, owner, " (or me)" if key_type == "user" else ""))
    _require_manager(ctx, key_type, owner_id)
    ctx.cur.execute("SELECT * FROM emulator.project_api_keys WHERE project_id = %s AND %s = %%s "
                    "ORDER BY created_at DESC, id" % ("%s", owner), (ctx.project_id, owner_id))
    return {"items": [key_json(r) for r in ctx.cur.fetchall()], "is_paginated": False}


def _item_request(ctx, key_type, api_key_id, body_spec=None):
    p = params(ctx, api_key_id=api_key_id)
    key_id = uuid_field(p, "api_key_id", True)
    q, _ = _owner_query(ctx, key_type)
    parts = [p, q]
    values = {}
    if body_spec is not None:
        f, values = read_body(ctx, body_spec)
        parts.append(f)
    check(ctx, *parts)
    _require_enabled(ctx, key_type)
    return _load(ctx, key_type, key_id), values


def _read(ctx, key_type, api_key_id):
    row, _ = _item_request(ctx, key_type, api_key_id)
    return key_json(row)


def _update(ctx, key_type, api_key_id):
    row, values = _item_request(ctx, key_type, api_key_id, UPDATE_BODY)
    ctx.cur.execute("UPDATE emulator.project_api_keys SET description = coalesce(%s, description), "
                    "manually_revoked_at = CASE WHEN manually_revoked_at IS NULL AND %s THEN clock_timestamp() "
                    "ELSE manually_revoked_at END WHERE id = %s RETURNING *",
                    (values.get("description"), values.get("revoked") is True, row["id"]))
    return key_json(ctx.cur.fetchone())


def _check(ctx, key_type):
    f, values = read_body(ctx, {"api_key": "string"}, required=("api_key",))
    check(ctx, f)
    _require_enabled(ctx, key_type)
    ctx.cur.execute("SELECT *, expires_at < clock_timestamp() AS expired FROM emulator.project_api_keys "
                    "WHERE project_id = %s AND secret_hash = %s", (ctx.project_id, secret_hash(values["api_key"])))
    row = ctx.cur.fetchone()
    if row is None:
        raise errors.api_key_not_found()
    actual = "user" if row["user_id"] is not None else "team"
    if actual != key_type:
        raise errors.wrong_api_key_type(key_type, actual)
    if row["manually_revoked_at"] is not None:
        raise errors.api_key_revoked()
    if row["expired"]:
        raise errors.api_key_expired()
    return key_json(row)


def _routes(key_type):
    base = "/%s-api-keys" % key_type
    routes.post(base, access=CLIENT_UP)(lambda ctx: _create(ctx, key_type))
    routes.get(base, access=CLIENT_UP)(lambda ctx: _list(ctx, key_type))
    routes.post(base + "/check", access=SERVER_UP)(lambda ctx: _check(ctx, key_type))
    routes.get(base + "/<api_key_id>", access=CLIENT_UP)(lambda ctx, api_key_id: _read(ctx, key_type, api_key_id))
    routes.patch(base + "/<api_key_id>", access=CLIENT_UP)(
        lambda ctx, api_key_id: _update(ctx, key_type, api_key_id))


for _type in TYPES:
    _routes(_type)
