"""A project's API key sets: /internal/api-keys, what StackAdminApp.createInternalApiKey uses.

A set holds up to three keys (publishable client, secret server, super secret admin) in
upstream's format (pck_/ssk_/sak_ + random), shown in full only when created; the list shows
their last four characters. A set is valid until it expires or is revoked. A project's
primary keys (emulator.api_keys: the placeholder or rotated keys of `internal`, the fresh
keys of projects made through the emulator's own routes) are not sets and stay valid.
"""

import base64
import hmac
import secrets
import uuid

from . import errors, keys
from .inputs import check, params, read_body, uuid_field
from .routing import ADMIN, Routes
from .validate import MISSING

routes = Routes()

KINDS = ("publishable_client_key", "secret_server_key", "super_secret_admin_key")
PREFIXES = {"publishable_client_key": "pck_", "secret_server_key": "ssk_", "super_secret_admin_key": "sak_"}
CREATE_BODY = {"description": "string", "expires_at_millis": "json", "has_publishable_client_key": "json",
               "has_secret_server_key": "json", "has_super_secret_admin_key": "json"}
UPDATE_BODY = {"description": "string", "revoked": "json"}
# What the SDK sends as client_secret when the app has no publishable key (stack-shared utils/oauth).
NO_KEY_SENTINEL = "__stack_public_client__"


def new_key(kind):
    """A key as upstream makes one: its prefix and a random base32 string."""
    random = base64.b32encode(secrets.token_bytes(30)).decode("ascii").lower().rstrip("=")
    return PREFIXES[kind] + random


def key_set_matches(cur, project_id, kind, given):
    """Whether a valid (not expired, not revoked) key set of the project holds this key."""
    if kind not in KINDS or not given:
        return False
    cur.execute("SELECT {k} AS secret FROM emulator.api_key_sets WHERE project_id = %s AND {k} = %s "
                "AND manually_revoked_at IS NULL AND expires_at > clock_timestamp()".format(k=kind),
                (project_id, given.strip()))
    row = cur.fetchone()
    return row is not None and hmac.compare_digest(row["secret"], given.strip())


def create_set(cur, project_id, description, expires_at_millis, kinds=KINDS):
    """Insert a key set; returns its row (with the full keys)."""
    values = {kind: (new_key(kind) if kind in kinds else None) for kind in KINDS}
    cur.execute("INSERT INTO emulator.api_key_sets (id, project_id, description, publishable_client_key, "
                "secret_server_key, super_secret_admin_key, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0)) RETURNING *",
                (uuid.uuid4(), project_id, description, values["publishable_client_key"],
                 values["secret_server_key"], values["super_secret_admin_key"], expires_at_millis))
    return cur.fetchone()


def _millis(ts):
    return int(ts.timestamp() * 1000)


def set_json(row, full=False):
    """A key set in upstream's read shape (last four characters) or, once, with full keys."""
    out = {"id": str(row["id"]), "description": row["description"]}
    for kind in KINDS:
        if row[kind]:
            out[kind] = row[kind] if full else {"last_four": row[kind][-4:]}
    out["created_at_millis"] = _millis(row["created_at"])
    out["expires_at_millis"] = _millis(row["expires_at"])
    if row["manually_revoked_at"] is not None:
        out["manually_revoked_at_millis"] = _millis(row["manually_revoked_at"])
    return out


@routes.get("/internal/api-keys", access=ADMIN)
def list_sets(ctx):
    ctx.cur.execute("SELECT * FROM emulator.api_key_sets WHERE project_id = %s ORDER BY created_at DESC",
                    (ctx.project_id,))
    return {"items": [set_json(r) for r in ctx.cur.fetchall()], "is_paginated": False}


@routes.post("/internal/api-keys", access=ADMIN)
def create(ctx):
    required = tuple(CREATE_BODY)
    f, data = read_body(ctx, CREATE_BODY, required=required)
    f.problems += ["body.%s must be defined" % name for name in required if f.data.get(name) is None
                   and "body.%s must be defined" % name not in f.problems]
    expires = data.get("expires_at_millis", MISSING)
    if expires is not MISSING and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
        f.problems.append("body.expires_at_millis must be a `number` type")
    for name in required[2:]:
        if name in data and not isinstance(data[name], bool):
            f.problems.append("body.%s must be a `boolean` type" % name)
    check(ctx, f)
    if not (-8.64e15 <= expires <= 8.64e15):
        raise errors.schema_error("Request validation failed on POST %s:\n  - body.expires_at_millis is not "
                                  "a valid date in milliseconds" % ctx.path)
    kinds = [kind for kind in KINDS if data["has_" + kind]]
    row = create_set(ctx.cur, ctx.project_id, data["description"], expires, kinds)
    return set_json(row, full=True)


def _load(ctx, api_key_id):
    p = params(ctx, api_key_id=api_key_id)
    key_id = uuid_field(p, "api_key_id", True)
    return p, key_id


def _row(ctx, key_id):
    ctx.cur.execute("SELECT * FROM emulator.api_key_sets WHERE project_id = %s AND id = %s",
                    (ctx.project_id, key_id))
    row = ctx.cur.fetchone()
    if row is None:
        raise errors.api_key_not_found()
    return row


@routes.get("/internal/api-keys/<api_key_id>", access=ADMIN)
def read(ctx, api_key_id):
    p, key_id = _load(ctx, api_key_id)
    check(ctx, p)
    return set_json(_row(ctx, key_id))


@routes.patch("/internal/api-keys/<api_key_id>", access=ADMIN)
def update(ctx, api_key_id):
    p, key_id = _load(ctx, api_key_id)
    f, data = read_body(ctx, UPDATE_BODY)
    if "revoked" in data and data["revoked"] is not True:
        f.problems.append("body.revoked must be one of the following values: true")
    check(ctx, p, f)
    row = _row(ctx, key_id)
    ctx.cur.execute("UPDATE emulator.api_key_sets SET description = %s, "
                    "manually_revoked_at = CASE WHEN %s AND manually_revoked_at IS NULL "
                    "THEN clock_timestamp() ELSE manually_revoked_at END WHERE id = %s RETURNING *",
                    (data.get("description", row["description"]), bool(data.get("revoked")), row["id"]))
    return set_json(ctx.cur.fetchone())


def client_secret_ok(cur, project, given):
    """Whether an OAuth client_secret (the publishable key) lets a client of this project in:
    its primary key, a valid key set's, or, when the project does not require one, the SDK's
    stand-in for "no key"."""
    if given == NO_KEY_SENTINEL or not given:
        return not project["config"].get("require_publishable_client_key", True)
    return (keys.key_matches(keys.project_keys(cur, project["id"]).get("publishable_client_key"), given)
            or key_set_matches(cur, project["id"], "publishable_client_key", given))
