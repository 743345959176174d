"""Contact channels: /contact-channels CRUD, verification mails and the verify routes.

A user's emails live in emulator.contact_channels; the primary email is the channel with
is_primary (users.py reads it from there). Values are normalised as upstream does (trimmed,
lower-cased). Clients may only touch their own channels; errors without a known code are
upstream's plain-text StatusErrors with its wording.
"""

import uuid

from . import codes, emails, errors
from .routing import CLIENT_UP, Routes
from .validate import EMAIL_RE, MISSING, Fields, parse_uuid

routes = Routes()

TYPES = ("email",)
CLIENT_CREATE = ("user_id", "value", "type", "used_for_auth", "is_primary")
SERVER_CREATE = CLIENT_CREATE + ("is_verified",)
CLIENT_UPDATE = ("value", "type", "used_for_auth", "is_primary")
SERVER_UPDATE = CLIENT_UPDATE + ("is_verified",)


# ---------------------------------------------------------------------------- pure helpers

def normalize_email(value):
    """upstream's normalizeEmail: trimmed and lower-cased."""
    return value.strip().lower()


def channel_json(row):
    """A contact_channels row in the read shape of contact-channels.js."""
    return {
        "user_id": str(row["user_id"]),
        "id": str(row["id"]),
        "type": row["type"],
        "value": row["value"],
        "is_primary": bool(row["is_primary"]),
        "is_verified": bool(row["is_verified"]),
        "used_for_auth": bool(row["used_for_auth"]),
    }


def unknown_properties(data, allowed, where="body"):
    """upstream's no-unknown check message, or None."""
    unknown = [k for k in data if k not in allowed]
    return "%s contains unknown properties: %s" % (where, ", ".join(unknown)) if unknown else None


def user_id_problem(where, name, raw):
    """userIdOrMeSchema: 'me' or a UUID."""
    if raw == "me" or parse_uuid(raw) is not None:
        return None
    return "%s.%s must be a valid UUID" % (where, name)


def read_channel_fields(f, names, extra_problems=()):
    """Validate a create or update body (names: the properties this access type may send)."""
    out = {}
    if "user_id" in names:
        raw = f.string("user_id", required=True)
        if isinstance(raw, str) and user_id_problem("body", "user_id", raw):
            f.problems.append(user_id_problem("body", "user_id", raw))
        out["user_id"] = raw
    creating = "user_id" in names
    out["type"] = f.one_of("type", TYPES, required=creating)
    value = f.string("value", required=creating)
    if isinstance(value, str) and out["type"] in ("email", MISSING) and not EMAIL_RE.fullmatch(value.strip()):
        f.problems.append("body.value must be a valid email")
    out["value"] = value
    out["used_for_auth"] = f.boolean("used_for_auth", required=creating)
    out["is_primary"] = f.boolean("is_primary")
    if "is_verified" in names:
        out["is_verified"] = f.boolean("is_verified")
    problem = unknown_properties(f.data, names)
    if problem:
        f.problems.append(problem)
    f.problems += extra_problems
    f.check()
    return {k: v for k, v in out.items() if v is not MISSING}


# ---------------------------------------------------------------------------- request helpers

def _own_user(ctx, user_id, message):
    """A client may only name its own user (403 with upstream's message otherwise)."""
    if ctx.is_server:
        return
    current = ctx.user_id
    if not current:
        raise errors.cannot_get_own_user_without_user()
    if str(current) != str(user_id):
        raise errors.StatusError(403, message)


def path_problems(user_id, channel_id):
    """The params problems of /contact-channels/<user_id>/<contact_channel_id>."""
    problems = []
    if user_id_problem("params", "user_id", user_id):
        problems.append(user_id_problem("params", "user_id", user_id))
    if parse_uuid(channel_id) is None:
        problems.append("params.contact_channel_id must be a valid UUID")
    return problems


def _resolve(ctx, raw_user):
    """A validated user_id value, with 'me' replaced by the signed-in user."""
    return str(parse_uuid(ctx.resolve_user_id(raw_user)))


def _load(ctx, user_id, channel_id):
    ctx.cur.execute("SELECT * FROM emulator.contact_channels WHERE project_id = %s AND user_id = %s AND id = %s",
                    (ctx.project_id, user_id, channel_id))
    return ctx.cur.fetchone()


def _auth_owner(ctx, channel_type, value):
    """The channel that uses (type, value) for authentication in this project, or None."""
    ctx.cur.execute("SELECT * FROM emulator.contact_channels WHERE project_id = %s AND type = %s "
                    "AND lower(value) = lower(%s) AND used_for_auth", (ctx.project_id, channel_type, value))
    return ctx.cur.fetchone()


def _user_has_value(ctx, user_id, channel_type, value, except_id=None):
    ctx.cur.execute("SELECT id FROM emulator.contact_channels WHERE user_id = %s AND type = %s "
                    "AND lower(value) = lower(%s)", (user_id, channel_type, value))
    row = ctx.cur.fetchone()
    return row is not None and str(row["id"]) != str(except_id)


def _demote_primary(ctx, user_id, channel_type):
    ctx.cur.execute("UPDATE emulator.contact_channels SET is_primary = false WHERE user_id = %s AND type = %s "
                    "AND is_primary", (user_id, channel_type))


def _write(ctx, sql, params, value):
    """Run an INSERT/UPDATE that a concurrent request may have beaten to a unique key."""
    from .db import UniqueViolation  # psycopg2: imported here so the pure helpers import without it

    ctx.cur.execute("SAVEPOINT contact_channel_write")
    try:
        ctx.cur.execute(sql, params)
    except UniqueViolation as exc:
        ctx.cur.execute("ROLLBACK TO SAVEPOINT contact_channel_write")
        if "auth_key" in str(exc):
            raise errors.contact_channel_already_used_for_auth(value) from None
        raise errors.StatusError(400, "Contact channel already exists") from None
    row = ctx.cur.fetchone()
    ctx.cur.execute("RELEASE SAVEPOINT contact_channel_write")
    return row


# ---------------------------------------------------------------------------- CRUD routes

@routes.get("/contact-channels", access=CLIENT_UP)
def list_channels(ctx):
    raw_user = ctx.query("user_id")
    raw_channel = ctx.query("contact_channel_id")
    f = Fields(ctx, None)
    if raw_user is not None and user_id_problem("query", "user_id", raw_user):
        f.problems.append(user_id_problem("query", "user_id", raw_user))
    if raw_channel is not None and parse_uuid(raw_channel) is None:
        f.problems.append("query.contact_channel_id must be a valid UUID")
    f.check()
    user_id = _resolve(ctx, raw_user) if raw_user is not None else None
    _own_user(ctx, user_id, "Client can only list contact channels for their own user.")
    where, params = ["project_id = %s"], [ctx.project_id]
    if user_id is not None:
        where.append("user_id = %s")
        params.append(user_id)
    if raw_channel is not None:
        where.append("id = %s")
        params.append(parse_uuid(raw_channel))
    ctx.cur.execute("SELECT * FROM emulator.contact_channels WHERE %s ORDER BY created_at, id"
                    % " AND ".join(where), params)
    return {"items": [channel_json(r) for r in ctx.cur.fetchall()], "is_paginated": False}


@routes.post("/contact-channels", access=CLIENT_UP)
def create_channel(ctx):
    data = read_channel_fields(ctx.fields(), SERVER_CREATE if ctx.is_server else CLIENT_CREATE)
    user_id = _resolve(ctx, data["user_id"])
    _own_user(ctx, user_id, "Client can only create contact channels for their own user.")
    ctx.cur.execute("SELECT 1 FROM emulator.users WHERE project_id = %s AND id = %s", (ctx.project_id, user_id))
    if ctx.cur.fetchone() is None:
        raise errors.user_id_does_not_exist(user_id)
    channel_type, value = data["type"], normalize_email(data["value"])
    if _user_has_value(ctx, user_id, channel_type, value):
        raise errors.StatusError(400, "Contact channel already exists")
    if data["used_for_auth"] and _auth_owner(ctx, channel_type, value) is not None:
        raise errors.contact_channel_already_used_for_auth(value, channel_type)
    if data.get("is_primary"):
        _demote_primary(ctx, user_id, channel_type)
    row = _write(ctx, "INSERT INTO emulator.contact_channels (id, project_id, user_id, type, value, is_verified, "
                      "is_primary, used_for_auth) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                 (uuid.uuid4(), ctx.project_id, user_id, channel_type, value, bool(data.get("is_verified")),
                  bool(data.get("is_primary")), bool(data["used_for_auth"])), value)
    return 201, channel_json(row)


@routes.get("/contact-channels/<user_id>/<channel_id>", access=CLIENT_UP)
def read_channel(ctx, user_id, channel_id):
    f = ctx.fields()
    f.problems += path_problems(user_id, channel_id)
    f.check()
    user_id, channel_id = _resolve(ctx, user_id), parse_uuid(channel_id)
    _own_user(ctx, user_id, "Client can only read contact channels for their own user.")
    row = _load(ctx, user_id, channel_id)
    if row is None:
        raise errors.StatusError(404, "Contact channel not found.")
    return channel_json(row)


@routes.patch("/contact-channels/<user_id>/<channel_id>", access=CLIENT_UP)
def update_channel(ctx, user_id, channel_id):
    data = read_channel_fields(ctx.fields(), SERVER_UPDATE if ctx.is_server else CLIENT_UPDATE,
                               path_problems(user_id, channel_id))
    user_id, channel_id = _resolve(ctx, user_id), parse_uuid(channel_id)
    _own_user(ctx, user_id, "Client can only update contact channels for their own user.")
    existing = _load(ctx, user_id, channel_id)
    if existing is None:
        raise errors.StatusError(400, "Contact channel not found")
    channel_type = data.get("type", existing["type"])
    value = normalize_email(data["value"]) if data.get("value") else None
    new_value = value if value is not None else existing["value"]
    if value is not None and _user_has_value(ctx, user_id, channel_type, value, except_id=existing["id"]):
        raise errors.StatusError(400, "Contact channel already exists")
    if data.get("used_for_auth") or (value is not None and existing["used_for_auth"]
                                     and data.get("used_for_auth") is not False):
        owner = _auth_owner(ctx, channel_type, new_value)
        if owner is not None and str(owner["id"]) != str(existing["id"]):
            raise errors.contact_channel_already_used_for_auth(None, channel_type)
    if data.get("is_primary"):
        _demote_primary(ctx, user_id, channel_type)
    columns = {"type": channel_type}
    if value is not None:
        columns["value"] = value
    if "is_verified" in data or value is not None:
        # upstream: a new value is unverified unless is_verified says otherwise
        columns["is_verified"] = bool(data.get("is_verified", False))
    for name in ("used_for_auth", "is_primary"):
        if name in data:
            columns[name] = data[name]
    sql = "UPDATE emulator.contact_channels SET %s WHERE id = %%s RETURNING *" % \
        ", ".join("%s = %%s" % c for c in columns)
    row = _write(ctx, sql, (*columns.values(), existing["id"]), new_value)
    return channel_json(row)


@routes.delete("/contact-channels/<user_id>/<channel_id>", access=CLIENT_UP)
def delete_channel(ctx, user_id, channel_id):
    f = ctx.fields()
    f.problems += path_problems(user_id, channel_id)
    f.check()
    user_id, channel_id = _resolve(ctx, user_id), parse_uuid(channel_id)
    _own_user(ctx, user_id, "Client can only delete contact channels for their own user.")
    if _load(ctx, user_id, channel_id) is None:
        raise errors.StatusError(400, "Contact channel not found")
    ctx.cur.execute("DELETE FROM emulator.contact_channels WHERE id = %s", (channel_id,))
    return {"success": True}


# ---------------------------------------------------------------------------- verification

@routes.post("/contact-channels/<user_id>/<channel_id>/send-verification-code", access=CLIENT_UP)
def send_code(ctx, user_id, channel_id):
    f = ctx.fields()
    f.problems += path_problems(user_id, channel_id)
    callback = f.url("callback_url", required=True)
    problem = unknown_properties(f.data, ("callback_url",))
    if problem:
        f.problems.append(problem)
    f.check()
    if not ctx.is_server and not ctx.user_id:
        raise errors.cannot_get_own_user_without_user()
    user_id, channel_id = _resolve(ctx, user_id), parse_uuid(channel_id)
    if not ctx.is_server and str(ctx.user_id) != user_id:
        raise errors.StatusError(400, "Can only send verification code for your own user")
    if ctx.is_server:
        ctx.cur.execute("SELECT 1 FROM emulator.users WHERE project_id = %s AND id = %s", (ctx.project_id, user_id))
        if ctx.cur.fetchone() is None:
            raise errors.user_id_does_not_exist(user_id)
    row = _load(ctx, user_id, channel_id)
    if row is None or row["type"] != "email":
        raise errors.StatusError(404, "Contact channel not found")
    if row["is_verified"]:
        raise errors.email_already_verified()
    emails.send_verification(ctx, user_id, row["id"], row["value"], callback)
    return {"success": True}


@routes.post("/contact-channels/send-verification-code", access=CLIENT_UP)
def send_code_legacy(ctx):
    """The deprecated route: the signed-in user's primary email, named in the body."""
    f = ctx.fields()
    email = f.email("email", required=True)
    callback = f.url("callback_url", required=True)
    problem = unknown_properties(f.data, ("email", "callback_url"))
    if problem:
        f.problems.append(problem)
    if not ctx.user_id:
        f.problems.append("auth.user must be defined")
    f.check()
    ctx.cur.execute("SELECT * FROM emulator.contact_channels WHERE project_id = %s AND user_id = %s "
                    "AND is_primary", (ctx.project_id, ctx.user_id))
    primary = ctx.cur.fetchone()
    if primary is None or primary["value"] != email:
        raise errors.email_is_not_primary_email(email, primary["value"] if primary else None)
    if primary["is_verified"]:
        raise errors.email_already_verified()
    emails.send_verification(ctx, str(ctx.user_id), primary["id"], primary["value"], callback)
    return {"success": True}


def _verification_code(ctx):
    f = ctx.fields()
    code = codes.code_field(f)
    problem = unknown_properties(f.data, ("code",))
    if problem:
        f.problems.append(problem)
    f.check()
    return code


def apply_verification(cur, project_id, code):
    """Use a verification code (from sign-up or send-verification-code): the channel is verified."""
    row = codes.consume(cur, project_id, emails.VERIFY_PURPOSE, code)
    cur.execute("UPDATE emulator.contact_channels SET is_verified = true WHERE project_id = %s "
                "AND user_id = %s AND type = 'email' AND lower(value) = lower(%s) RETURNING id",
                (project_id, row["user_id"], (row["data"] or {}).get("email", "")))
    if cur.fetchone() is None:
        raise errors.StatusError(400, "Contact channel not found. Was your contact channel deleted?")


@routes.post("/contact-channels/verify", access=CLIENT_UP)
def verify(ctx):
    apply_verification(ctx.cur, ctx.project_id, _verification_code(ctx))
    return {"success": True}


def verify_link(state, code):
    """For the dashboard's /handler/email-verification page: True when the link's code
    verified its address (a code of any project; the page has no project headers)."""
    def tx(cur):
        project_id = codes.project_of(cur, emails.VERIFY_PURPOSE, code)
        if project_id is None:
            return False
        apply_verification(cur, project_id, code)
        return True
    try:
        return state.db.run(tx)
    except (errors.KnownError, errors.StatusError):
        return False


@routes.post("/contact-channels/verify/check-code", access=CLIENT_UP)
def check_code(ctx):
    codes.lookup(ctx.cur, ctx.project_id, emails.VERIFY_PURPOSE, _verification_code(ctx))
    return {"is_code_valid": True}
