"""Users: the client and server read shapes, create, read, update, delete and list."""

import json
import uuid

from . import errors, passwords, tokens
from .db import UniqueViolation
from .routing import CLIENT_UP, SERVER_UP, Routes
from .validate import MISSING, parse_uuid

routes = Routes()

USER_SELECT = """
SELECT u.*, c.value AS primary_email, coalesce(c.is_verified, false) AS primary_email_verified,
       coalesce(c.used_for_auth, false) AS primary_email_used_for_auth
FROM emulator.users u
LEFT JOIN emulator.contact_channels c ON c.user_id = u.id AND c.is_primary
"""

CLIENT_FIELDS = (
    "id", "primary_email", "primary_email_verified", "display_name", "client_metadata",
    "client_read_only_metadata", "profile_image_url", "signed_up_at_millis", "has_password",
    "auth_with_email", "oauth_providers", "selected_team_id", "requires_totp_mfa",
    "otp_auth_enabled", "passkey_auth_enabled", "is_anonymous", "is_restricted",
    "restricted_reason", "restricted_by_admin", "restricted_by_admin_reason", "selected_team",
)


def millis(ts):
    return int(ts.timestamp() * 1000)


def restriction(row):
    if row["is_anonymous"]:
        return {"type": "anonymous"}
    if row["restricted_by_admin"]:
        return {"type": "restricted_by_administrator"}
    return None


def server_json(cur, row):
    """A users row (from USER_SELECT) in the server read shape of users.js."""
    from .oauth_accounts import providers_of_user
    from .teams import team_json  # teams imports users for member profiles

    selected_team = None
    if row["selected_team_id"]:
        cur.execute("SELECT * FROM emulator.teams WHERE id = %s", (row["selected_team_id"],))
        team = cur.fetchone()
        selected_team = team_json(team, server=True) if team else None
    reason = restriction(row)
    return {
        "id": str(row["id"]),
        "primary_email": row["primary_email"],
        "primary_email_verified": bool(row["primary_email_verified"]),
        "primary_email_auth_enabled": bool(row["primary_email_used_for_auth"]),
        "display_name": row["display_name"],
        "selected_team": selected_team,
        "selected_team_id": str(row["selected_team_id"]) if selected_team else None,
        "profile_image_url": row["profile_image_url"],
        "signed_up_at_millis": millis(row["signed_up_at"]),
        "has_password": row["password_hash"] is not None,
        "otp_auth_enabled": bool(row["otp_auth_enabled"]),
        "passkey_auth_enabled": bool(row["passkey_auth_enabled"]),
        "client_metadata": row["client_metadata"],
        "client_read_only_metadata": row["client_read_only_metadata"],
        "server_metadata": row["server_metadata"],
        "last_active_at_millis": millis(row["last_active_at"]),
        "is_anonymous": bool(row["is_anonymous"]),
        "is_restricted": reason is not None,
        "restricted_reason": reason,
        "restricted_by_admin": bool(row["restricted_by_admin"]),
        "restricted_by_admin_reason": row["restricted_by_admin_reason"] if row["restricted_by_admin"] else None,
        "restricted_by_admin_private_details":
            row["restricted_by_admin_private_details"] if row["restricted_by_admin"] else None,
        "country_code": row["country_code"],
        "risk_scores": {"sign_up": {"bot": 0, "free_trial_abuse": 0}},
        "oauth_providers": providers_of_user(cur, row["id"]),
        "auth_with_email": bool(row["primary_email_used_for_auth"]),
        "requires_totp_mfa": bool(row["totp_secret_base64"]),
    }


def client_json(user):
    """The client read shape (current-user.js) from the server shape."""
    out = {k: user[k] for k in CLIENT_FIELDS}
    team = out["selected_team"]
    if team is not None:
        out["selected_team"] = {k: team[k] for k in ("id", "display_name", "profile_image_url",
                                                     "client_metadata", "client_read_only_metadata")}
    return out


def load_row(cur, project_id, user_id):
    uid = parse_uuid(user_id)
    if uid is None:
        return None
    cur.execute(USER_SELECT + " WHERE u.project_id = %s AND u.id = %s", (project_id, uid))
    return cur.fetchone()


def load(cur, project_id, user_id):
    """The server read shape of a user, or USER_NOT_FOUND."""
    row = load_row(cur, project_id, user_id)
    if row is None:
        raise errors.user_not_found()
    return server_json(cur, row)


def email_taken(cur, project_id, email, except_user=None):
    cur.execute("SELECT user_id FROM emulator.contact_channels WHERE project_id = %s AND type = 'email' "
                "AND lower(value) = lower(%s) AND used_for_auth", (project_id, email))
    row = cur.fetchone()
    return row is not None and str(row["user_id"]) != str(except_user)


def create(cur, project_id, fields, is_anonymous=False):
    """Insert a user from validated fields (a dict); returns its id."""
    user_id = uuid.uuid4()
    email = fields.get("primary_email")
    # As upstream: an address is for signing in only when the caller says so.
    auth_enabled = bool(fields.get("primary_email_auth_enabled"))
    if email is not None and auth_enabled and email_taken(cur, project_id, email):
        raise errors.user_email_already_exists(email)
    pw = fields.get("password")
    cur.execute(
        "INSERT INTO emulator.users (id, project_id, display_name, profile_image_url, password_hash, "
        "client_metadata, client_read_only_metadata, server_metadata, is_anonymous, otp_auth_enabled, "
        "passkey_auth_enabled, totp_secret_base64, restricted_by_admin, restricted_by_admin_reason, "
        "restricted_by_admin_private_details, country_code) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (user_id, project_id, fields.get("display_name"), fields.get("profile_image_url"),
         passwords.hash_password(pw) if pw else None,
         _jsonb(fields.get("client_metadata")), _jsonb(fields.get("client_read_only_metadata")),
         _jsonb(fields.get("server_metadata")), is_anonymous or bool(fields.get("is_anonymous")),
         bool(fields.get("otp_auth_enabled")), bool(fields.get("passkey_auth_enabled")),
         fields.get("totp_secret_base64"), bool(fields.get("restricted_by_admin")),
         fields.get("restricted_by_admin_reason"), fields.get("restricted_by_admin_private_details"),
         fields.get("country_code")))
    if email is not None:
        try:
            cur.execute("SAVEPOINT primary_email")
            cur.execute("INSERT INTO emulator.contact_channels (id, project_id, user_id, type, value, "
                        "is_verified, is_primary, used_for_auth) VALUES (%s, %s, %s, 'email', %s, %s, true, %s)",
                        (uuid.uuid4(), project_id, user_id, email,
                         bool(fields.get("primary_email_verified")), bool(auth_enabled)))
        except UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT primary_email")
            raise errors.user_email_already_exists(email) from None
    from .teams import on_user_created
    on_user_created(cur, project_id, str(user_id), fields.get("display_name"))
    return str(user_id)


def _jsonb(value):
    return None if value is None else json.dumps(value)


# Fields each access type may write, with their validators (name -> Fields method + options).
CLIENT_WRITABLE = {
    "display_name": ("string", {"nullable": True, "max_len": 256}),
    "profile_image_url": ("string", {"nullable": True}),
    "client_metadata": ("json", {}),
    "selected_team_id": ("uuid", {"nullable": True}),
    "totp_secret_base64": ("string", {"nullable": True}),
    "otp_auth_enabled": ("boolean", {}),
    "passkey_auth_enabled": ("boolean", {}),
    "primary_email": ("email", {"nullable": True}),
}
SERVER_WRITABLE = dict(CLIENT_WRITABLE, **{
    "client_read_only_metadata": ("json", {}),
    "server_metadata": ("json", {}),
    "primary_email_verified": ("boolean", {}),
    "primary_email_auth_enabled": ("boolean", {}),
    "password": ("string", {"nullable": True}),
    "password_hash": ("string", {"nullable": True}),
    "is_anonymous": ("boolean", {}),
    "restricted_by_admin": ("boolean", {}),
    "restricted_by_admin_reason": ("string", {"nullable": True}),
    "restricted_by_admin_private_details": ("string", {"nullable": True}),
    "country_code": ("string", {"nullable": True}),
    "risk_scores": ("json", {}),
    "oauth_providers": ("json", {}),
})


def read_fields(ctx, writable, exclude=(), creating=False):
    f = ctx.fields()
    out = {}
    for name, (kind, opts) in writable.items():
        if name in exclude:
            continue
        value = getattr(f, kind)(name, **opts)
        if value is not MISSING:
            out[name] = value
    unknown = sorted(set(f.data) - set(writable))
    if unknown:
        f.problems.append("body contains unknown properties: %s" % ", ".join(unknown))
    f.check()
    if out.get("password") is not None:
        passwords.check_rules(out["password"])
    if out.get("is_anonymous") is True and not creating:  # only a new user may be anonymous
        f.problems.append("body.is_anonymous must be one of the following values: false")
        f.check()
    return out


def update(cur, project_id, user_id, fields):
    """Apply validated fields to a user."""
    columns = {}
    for name in ("display_name", "profile_image_url", "otp_auth_enabled", "passkey_auth_enabled",
                 "totp_secret_base64", "restricted_by_admin", "restricted_by_admin_reason",
                 "restricted_by_admin_private_details", "country_code"):
        if name in fields:
            columns[name] = fields[name]
    for name in ("client_metadata", "client_read_only_metadata", "server_metadata"):
        if name in fields:
            columns[name] = _jsonb(fields[name])
    if "password" in fields:
        columns["password_hash"] = passwords.hash_password(fields["password"]) if fields["password"] else None
        tokens.revoke_sessions(cur, project_id, user_id)  # as upstream: a new password ends every session
    if fields.get("is_anonymous") is False:
        columns["is_anonymous"] = False
    if "selected_team_id" in fields:
        team_id = fields["selected_team_id"]
        if team_id is not None:
            cur.execute("SELECT 1 FROM emulator.team_members WHERE team_id = %s AND user_id = %s",
                        (team_id, user_id))
            if cur.fetchone() is None:
                raise errors.team_membership_not_found(team_id, user_id)
        columns["selected_team_id"] = team_id
    if columns:
        assignments = ", ".join("%s = %%s" % c for c in columns)
        cur.execute("UPDATE emulator.users SET %s WHERE id = %%s AND project_id = %%s" % assignments,
                    (*columns.values(), user_id, project_id))
    if "primary_email" in fields or "primary_email_verified" in fields or "primary_email_auth_enabled" in fields:
        _update_primary_email(cur, project_id, user_id, fields)


def _update_primary_email(cur, project_id, user_id, fields):
    """Move the primary email as upstream does: the old primary channel is demoted, never
    deleted, and an existing channel of the new address is promoted with its verification."""
    cur.execute("SELECT * FROM emulator.contact_channels WHERE user_id = %s AND is_primary", (user_id,))
    channel = cur.fetchone()
    if "primary_email" in fields:
        email = fields["primary_email"]
        if email is None:
            cur.execute("UPDATE emulator.contact_channels SET is_primary = false WHERE user_id = %s", (user_id,))
            channel = None
        elif channel is None or channel["value"].lower() != email.lower():
            cur.execute("SELECT * FROM emulator.contact_channels WHERE user_id = %s AND type = 'email' "
                        "AND lower(value) = lower(%s)", (user_id, email))
            existing = cur.fetchone()
            default_auth = existing["used_for_auth"] if existing else bool(channel and channel["used_for_auth"])
            auth = fields.get("primary_email_auth_enabled", default_auth)
            if auth and email_taken(cur, project_id, email, except_user=user_id):
                raise errors.user_email_already_exists(email)
            cur.execute("UPDATE emulator.contact_channels SET is_primary = false WHERE user_id = %s", (user_id,))
            if existing is not None:
                cur.execute("UPDATE emulator.contact_channels SET is_primary = true, used_for_auth = %s "
                            "WHERE id = %s RETURNING *", (bool(auth), existing["id"]))
            else:
                try:
                    cur.execute("SAVEPOINT new_primary_email")
                    cur.execute("INSERT INTO emulator.contact_channels (id, project_id, user_id, type, value, "
                                "is_verified, is_primary, used_for_auth) "
                                "VALUES (%s, %s, %s, 'email', %s, %s, true, %s) RETURNING *",
                                (uuid.uuid4(), project_id, user_id, email,
                                 bool(fields.get("primary_email_verified", False)), bool(auth)))
                except UniqueViolation:  # another user took the address for signing in meanwhile
                    cur.execute("ROLLBACK TO SAVEPOINT new_primary_email")
                    raise errors.user_email_already_exists(email) from None
            channel = cur.fetchone()
    if channel is not None:
        if "primary_email_verified" in fields:
            cur.execute("UPDATE emulator.contact_channels SET is_verified = %s WHERE id = %s",
                        (fields["primary_email_verified"], channel["id"]))
        if "primary_email_auth_enabled" in fields:
            if fields["primary_email_auth_enabled"] and email_taken(cur, project_id, channel["value"], user_id):
                raise errors.user_email_already_exists(channel["value"])
            cur.execute("UPDATE emulator.contact_channels SET used_for_auth = %s WHERE id = %s",
                        (fields["primary_email_auth_enabled"], channel["id"]))


def touch(cur, user_id):
    cur.execute("UPDATE emulator.users SET last_active_at = clock_timestamp() WHERE id = %s", (user_id,))


# ---------------------------------------------------------------------------- routes

@routes.get("/users/me", access=CLIENT_UP)
def get_me(ctx):
    user_id = ctx.resolve_user_id("me")
    row = load_row(ctx.cur, ctx.project_id, user_id)
    if row is None:
        raise errors.user_not_found()
    touch(ctx.cur, user_id)
    user = server_json(ctx.cur, row)
    return user if ctx.is_server else client_json(user)


@routes.patch("/users/me", access=CLIENT_UP)
def patch_me(ctx):
    user_id = ctx.resolve_user_id("me")
    load(ctx.cur, ctx.project_id, user_id)
    fields = read_fields(ctx, SERVER_WRITABLE if ctx.is_server else CLIENT_WRITABLE)
    update(ctx.cur, ctx.project_id, user_id, fields)
    user = load(ctx.cur, ctx.project_id, user_id)
    return user if ctx.is_server else client_json(user)


@routes.delete("/users/me", access=CLIENT_UP)
def delete_me(ctx):
    user_id = ctx.resolve_user_id("me")
    if not ctx.is_server and not ctx.config.get("client_user_deletion_enabled"):
        raise errors.client_user_deletion_not_enabled()
    load(ctx.cur, ctx.project_id, user_id)
    ctx.cur.execute("DELETE FROM emulator.users WHERE id = %s", (user_id,))
    return {"success": True}


@routes.get("/users", access=SERVER_UP)
def list_users(ctx):
    f = ctx.fields()
    f.data = dict(ctx.request.args)
    f.where = "query"
    limit = f.integer("limit", minimum=1, maximum=1000)
    order_by = f.one_of("order_by", ("signed_up_at",))
    desc = ctx.query("desc") in ("true", "1")
    team_id = f.uuid("team_id")
    f.check()
    include_anonymous = ctx.query("include_anonymous") in ("true", "1")
    text = ctx.query("query")
    cursor = ctx.query("cursor")
    where, params = ["u.project_id = %s"], [ctx.project_id]
    if not include_anonymous:
        where.append("NOT u.is_anonymous")
    if team_id not in (None, MISSING):
        where.append("EXISTS (SELECT 1 FROM emulator.team_members m WHERE m.user_id = u.id AND m.team_id = %s)")
        params.append(team_id)
    if text:
        where.append("(u.display_name ILIKE %s OR c.value ILIKE %s OR u.id::text ILIKE %s)")
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [like, like, like]
    if cursor:
        anchor = load_row(ctx.cur, ctx.project_id, cursor)
        if anchor is None:
            raise errors.schema_error("Request validation failed on GET %s:\n  - query.cursor is not a user "
                                      "of this list" % ctx.path)
        where.append("(u.signed_up_at, u.id) %s (%%s, %%s)" % ("<=" if desc else ">="))
        params += [anchor["signed_up_at"], anchor["id"]]
    direction = "DESC" if desc else "ASC"
    sql = USER_SELECT + " WHERE " + " AND ".join(where) + \
        " ORDER BY u.signed_up_at %s, u.id %s" % (direction, direction)
    if limit not in (None, MISSING):
        sql += " LIMIT %d" % (limit + 1)
    ctx.cur.execute(sql, params)
    rows = ctx.cur.fetchall()
    next_cursor = None
    if limit not in (None, MISSING) and len(rows) > limit:
        next_cursor = str(rows[limit]["id"])
        rows = rows[:limit]
    _ = order_by
    return {"items": [server_json(ctx.cur, r) for r in rows], "is_paginated": True,
            "pagination": {"next_cursor": next_cursor}}


@routes.post("/users", access=SERVER_UP)
def create_user(ctx):
    fields = read_fields(ctx, SERVER_WRITABLE, exclude=("selected_team_id",), creating=True)
    if fields.get("password_hash") is not None:
        raise errors.schema_error("Request validation failed on POST %s:\n  - body.password_hash: the "
                                  "emulator does not import password hashes; send password" % ctx.path)
    user_id = create(ctx.cur, ctx.project_id, fields)
    if fields.get("oauth_providers") is not None:
        from .oauth_accounts import insert_for_new_user
        insert_for_new_user(ctx, user_id, fields["oauth_providers"])
    return 201, load(ctx.cur, ctx.project_id, user_id)


@routes.get("/users/<user_id>", access=SERVER_UP)
def get_user(ctx, user_id):
    return load(ctx.cur, ctx.project_id, ctx.resolve_user_id(user_id))


@routes.patch("/users/<user_id>", access=SERVER_UP)
def patch_user(ctx, user_id):
    user_id = ctx.resolve_user_id(user_id)
    load(ctx.cur, ctx.project_id, user_id)
    fields = read_fields(ctx, SERVER_WRITABLE)
    if fields.get("password_hash") is not None:
        raise errors.schema_error("Request validation failed on PATCH %s:\n  - body.password_hash: the "
                                  "emulator does not import password hashes; send password" % ctx.path)
    update(ctx.cur, ctx.project_id, user_id, fields)
    return load(ctx.cur, ctx.project_id, user_id)


@routes.delete("/users/<user_id>", access=SERVER_UP)
def delete_user(ctx, user_id):
    user_id = ctx.resolve_user_id(user_id)
    load(ctx.cur, ctx.project_id, user_id)
    ctx.cur.execute("DELETE FROM emulator.users WHERE id = %s AND project_id = %s", (user_id, ctx.project_id))
    return {"success": True}
