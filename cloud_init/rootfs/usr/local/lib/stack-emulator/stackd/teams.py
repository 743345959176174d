"""Teams, team memberships and team member profiles, as upstream's crud handlers serve them.

With client access a user sees only its own teams; changing or deleting a team needs the
`$update_team` / `$delete_team` permission in it, removing someone else `$remove_members`,
reading other members' profiles `$read_members`. A team's creator gets the project's
team_creator_default_permissions, every other member team_member_default_permissions.
"""

import json
import re
import uuid

from . import errors, users
from .db import UniqueViolation
from .inputs import check, current_user, opt, params, query_fields, read_body, user_field, uuid_field
from .permissions import ensure_membership, ensure_user, grant_defaults, is_member, require_team_permission
from .routing import CLIENT_UP, SERVER_UP, Routes

routes = Routes()

PERSONAL_TEAM_NAME = "Personal Team"
# stack-shared's validateBase64Image: what a client may send as a team's profile image.
BASE64_IMAGE_RE = re.compile(r"data:image/(png|jpg|jpeg|gif|bmp|webp);base64,[A-Za-z0-9+/]+={0,2}"
                             r"|[A-Za-z0-9+/]+={0,2}")


def image_url(ctx, f, name, required):
    """A body reader for upstream's profile image URL fields (nullable, at most 1,000,000 characters)."""
    return f.url(name, required=required, nullable=True, max_len=1000000)


CLIENT_UPDATE = {"display_name": "string", "profile_image_url": image_url, "client_metadata": "json"}
SERVER_UPDATE = dict(CLIENT_UPDATE, client_read_only_metadata="json", server_metadata="json")
CLIENT_CREATE = dict(CLIENT_UPDATE, creator_user_id="user")
SERVER_CREATE = dict(SERVER_UPDATE, creator_user_id="user")
PROFILE_UPDATE = {"display_name": "string", "profile_image_url": image_url}
JSON_COLUMNS = ("client_metadata", "client_read_only_metadata", "server_metadata")
TEAM_LIST_QUERY = ("user_id", "add_current_user", "order_by", "desc", "cursor", "limit", "query")


def team_json(row, server):
    """A teams row in the client or server read shape of teams.js."""
    out = {
        "id": str(row["id"]),
        "display_name": row["display_name"],
        "profile_image_url": row["profile_image_url"],
        "client_metadata": row["client_metadata"],
        "client_read_only_metadata": row["client_read_only_metadata"],
    }
    if server:
        out["created_at_millis"] = int(row["created_at"].timestamp() * 1000)
        out["server_metadata"] = row["server_metadata"]
    return out


def _column_value(name, value):
    return (None if value is None else json.dumps(value)) if name in JSON_COLUMNS else value


def insert_team(cur, project_id, values):
    columns = ["display_name"] + [c for c in ("profile_image_url",) + JSON_COLUMNS if c in values]
    cur.execute("INSERT INTO emulator.teams (id, project_id, %s) VALUES (%%s, %%s%s) RETURNING *"
                % (", ".join(columns), ", %s" * len(columns)),
                [uuid.uuid4(), project_id] + [_column_value(c, values[c]) for c in columns])
    return cur.fetchone()


def ensure_team(cur, project_id, team_id):
    cur.execute("SELECT 1 FROM emulator.teams WHERE project_id = %s AND id = %s", (project_id, team_id))
    if cur.fetchone() is None:
        raise errors.team_not_found(team_id)


def load_team(cur, project_id, team_id):
    cur.execute("SELECT * FROM emulator.teams WHERE project_id = %s AND id = %s", (project_id, team_id))
    row = cur.fetchone()
    if row is None:
        raise errors.team_not_found(team_id)
    return row


def add_member(cur, project_id, config, team_id, user_id, creator=False):
    """A new membership with the default permissions of a creator or of a member."""
    try:
        cur.execute("INSERT INTO emulator.team_members (project_id, team_id, user_id) VALUES (%s, %s, %s)",
                    (project_id, team_id, user_id))
    except UniqueViolation:  # a concurrent request added it first (the transaction is rolled back)
        raise errors.team_membership_already_exists() from None
    key = "team_creator_default_permissions" if creator else "team_member_default_permissions"
    grant_defaults(cur, project_id, config, key, user_id, team_id)


def remove_member(cur, project_id, team_id, user_id):
    """End a membership: its permissions go, and the team stops being the user's selected one."""
    cur.execute("DELETE FROM emulator.team_permissions WHERE project_id = %s AND team_id = %s AND user_id = %s",
                (project_id, team_id, user_id))
    cur.execute("DELETE FROM emulator.team_members WHERE project_id = %s AND team_id = %s AND user_id = %s",
                (project_id, team_id, user_id))
    cur.execute("UPDATE emulator.users SET selected_team_id = NULL WHERE id = %s AND selected_team_id = %s",
                (user_id, team_id))


def on_user_created(cur, project_id, user_id, display_name):
    """A new user's default project permissions, and its personal team when the project makes one."""
    cur.execute("SELECT config FROM emulator.projects WHERE id = %s", (project_id,))
    config = cur.fetchone()["config"]
    grant_defaults(cur, project_id, config, "user_default_permissions", user_id)
    if not config.get("create_team_on_sign_up"):
        return
    cur.execute("SELECT value FROM emulator.contact_channels WHERE user_id = %s AND is_primary", (user_id,))
    email = cur.fetchone()
    name = display_name or (email and email["value"])
    team = insert_team(cur, project_id, {"display_name": "%s's Team" % name if name else PERSONAL_TEAM_NAME})
    add_member(cur, project_id, config, team["id"], user_id, creator=True)
    cur.execute("UPDATE emulator.users SET selected_team_id = %s WHERE id = %s", (team["id"], user_id))


def _client_image_check(ctx, values):
    image = values.get("profile_image_url")
    if not ctx.is_server and image and not BASE64_IMAGE_RE.fullmatch(image):
        raise errors.StatusError(400, "Invalid profile image URL")


def _team_param(ctx, team_id):
    p = params(ctx, team_id=team_id)
    return p, uuid_field(p, "team_id", True)


# ---------------------------------------------------------------------------- teams

@routes.get("/teams", access=CLIENT_UP)
def list_teams(ctx):
    q = query_fields(ctx, TEAM_LIST_QUERY)
    user_id = opt(user_field(ctx, q, "user_id"))
    q.one_of("add_current_user", ("true", "false"))
    q.one_of("order_by", ("created_at",))
    desc = q.one_of("desc", ("true", "false")) == "true"
    cursor = opt(uuid_field(q, "cursor"))
    limit = opt(q.integer("limit", minimum=1, maximum=1000))
    text = opt(q.string("query"))
    check(ctx, q)
    if not ctx.is_server and user_id != current_user(ctx):
        raise errors.StatusError(403, 'Client can only list teams for their own user. user_id must be either '
                                      '"me" or the ID of the current user')
    where, args = ["t.project_id = %s"], [ctx.project_id]
    if user_id:
        where.append("EXISTS (SELECT 1 FROM emulator.team_members m WHERE m.team_id = t.id AND m.user_id = %s)")
        args.append(user_id)
    if text:
        where.append("(t.display_name ILIKE %s OR t.id::text ILIKE %s)")
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [like, like]
    if cursor:
        where.append("(t.created_at, t.id) %s (SELECT created_at, id FROM emulator.teams WHERE id = %%s)"
                     % ("<=" if desc else ">="))
        args.append(cursor)
    order = "DESC" if desc else "ASC"
    sql = "SELECT t.* FROM emulator.teams t WHERE %s ORDER BY t.created_at %s, t.id %s" % (
        " AND ".join(where), order, order)
    if limit:
        sql += " LIMIT %d" % (limit + 1)
    ctx.cur.execute(sql, args)
    rows = ctx.cur.fetchall()
    items = [team_json(r, ctx.is_server) for r in (rows[:limit] if limit else rows)]
    if limit is None and cursor is None:
        return {"items": items, "is_paginated": False}
    next_cursor = str(rows[limit]["id"]) if limit and len(rows) > limit else None
    return {"items": items, "is_paginated": True, "pagination": {"next_cursor": next_cursor}}


@routes.post("/teams", access=CLIENT_UP)
def create_team(ctx):
    q = query_fields(ctx, TEAM_LIST_QUERY)
    add_current = opt(q.one_of("add_current_user", ("true", "false")))
    f, values = read_body(ctx, SERVER_CREATE if ctx.is_server else CLIENT_CREATE, required=("display_name",))
    check(ctx, f, q)
    creator = values.pop("creator_user_id", None)
    if creator and add_current:
        raise errors.StatusError(400, "Cannot use both creator_user_id and add_current_user. add_current_user is "
                                      "deprecated, please only use creator_user_id in the body.")
    if not ctx.is_server:
        if not ctx.user_id:
            raise errors.user_authentication_required()
        if not ctx.config.get("client_team_creation_enabled"):
            raise errors.StatusError(403, "Client team creation is disabled for this project")
        _client_image_check(ctx, values)
        if not creator:
            creator = ctx.user_id
        elif creator != ctx.user_id:
            raise errors.StatusError(403, "You cannot create a team as a user that is not yourself. Make sure you "
                                          "set the creator_user_id to 'me'.")
    if add_current == "true":
        if not ctx.user_id:
            raise errors.StatusError(401, "You must be logged in to create a team with the current user as a "
                                          "member.")
        creator = ctx.user_id
    team = insert_team(ctx.cur, ctx.project_id, values)
    if creator:
        ensure_user(ctx.cur, ctx.project_id, creator)
        add_member(ctx.cur, ctx.project_id, ctx.config, team["id"], creator, creator=True)
    return 201, team_json(team, ctx.is_server)


@routes.get("/teams/<team_id>", access=CLIENT_UP)
def get_team(ctx, team_id):
    p, team_id = _team_param(ctx, team_id)
    check(ctx, p)
    if not ctx.is_server:
        ensure_membership(ctx.cur, ctx.project_id, team_id, ctx.require_user())
    return team_json(load_team(ctx.cur, ctx.project_id, team_id), ctx.is_server)


@routes.patch("/teams/<team_id>", access=CLIENT_UP)
def update_team(ctx, team_id):
    p, team_id = _team_param(ctx, team_id)
    f, values = read_body(ctx, SERVER_UPDATE if ctx.is_server else CLIENT_UPDATE)
    check(ctx, p, f)
    if not ctx.is_server:
        _client_image_check(ctx, values)
        require_team_permission(ctx.cur, ctx.project_id, team_id, ctx.require_user(), "$update_team")
    ensure_team(ctx.cur, ctx.project_id, team_id)
    if values:
        ctx.cur.execute("UPDATE emulator.teams SET %s WHERE project_id = %%s AND id = %%s"
                        % ", ".join("%s = %%s" % c for c in values),
                        [_column_value(c, v) for c, v in values.items()] + [ctx.project_id, team_id])
    return team_json(load_team(ctx.cur, ctx.project_id, team_id), ctx.is_server)


@routes.delete("/teams/<team_id>", access=CLIENT_UP)
def delete_team(ctx, team_id):
    p, team_id = _team_param(ctx, team_id)
    check(ctx, p)
    if not ctx.is_server:
        require_team_permission(ctx.cur, ctx.project_id, team_id, ctx.require_user(), "$delete_team")
    ensure_team(ctx.cur, ctx.project_id, team_id)
    ctx.cur.execute("UPDATE emulator.users SET selected_team_id = NULL WHERE project_id = %s "
                    "AND selected_team_id = %s", (ctx.project_id, team_id))
    ctx.cur.execute("DELETE FROM emulator.teams WHERE project_id = %s AND id = %s", (ctx.project_id, team_id))
    return {"success": True}


# ---------------------------------------------------------------------------- memberships

def _member_params(ctx, team_id, user_id):
    p = params(ctx, team_id=team_id, user_id=user_id)
    return p, uuid_field(p, "team_id", True), user_field(ctx, p, "user_id", True)


@routes.post("/team-memberships/<team_id>/<user_id>", access=SERVER_UP)
def add_membership(ctx, team_id, user_id):
    p, team_id, user_id = _member_params(ctx, team_id, user_id)
    f, _ = read_body(ctx, {})
    check(ctx, p, f)
    ensure_user(ctx.cur, ctx.project_id, user_id)
    ensure_team(ctx.cur, ctx.project_id, team_id)
    if is_member(ctx.cur, ctx.project_id, team_id, user_id):
        raise errors.team_membership_already_exists()
    add_member(ctx.cur, ctx.project_id, ctx.config, team_id, user_id)
    return 201, {"team_id": team_id, "user_id": user_id}


@routes.delete("/team-memberships/<team_id>/<user_id>", access=CLIENT_UP)
def remove_membership(ctx, team_id, user_id):
    p, team_id, user_id = _member_params(ctx, team_id, user_id)
    check(ctx, p)
    if not ctx.is_server and user_id != current_user(ctx):  # anyone may leave; removing others is different
        require_team_permission(ctx.cur, ctx.project_id, team_id, ctx.user_id, "$remove_members")
    ensure_membership(ctx.cur, ctx.project_id, team_id, user_id)
    remove_member(ctx.cur, ctx.project_id, team_id, user_id)
    return {"success": True}


# ---------------------------------------------------------------------------- member profiles

def profile_json(cur, project_id, member, server):
    """A team_members row in the read shape of team-member-profiles.js."""
    user = users.load_row(cur, project_id, str(member["user_id"]))
    out = {
        "team_id": str(member["team_id"]),
        "user_id": str(member["user_id"]),
        "display_name": member["display_name"] if member["display_name"] is not None else user["display_name"],
        "profile_image_url": member["profile_image_url"] if member["profile_image_url"] is not None
        else user["profile_image_url"],
    }
    if server:
        out["user"] = users.server_json(cur, user)
    return out


def _load_member(cur, project_id, team_id, user_id):
    ensure_membership(cur, project_id, team_id, user_id)
    cur.execute("SELECT * FROM emulator.team_members WHERE project_id = %s AND team_id = %s AND user_id = %s",
                (project_id, team_id, user_id))
    return cur.fetchone()


@routes.get("/team-member-profiles", access=CLIENT_UP)
def list_member_profiles(ctx):
    q = query_fields(ctx, ("user_id", "team_id"))
    user_id = opt(user_field(ctx, q, "user_id"))
    team_id = opt(uuid_field(q, "team_id"))
    check(ctx, q)
    cur = ctx.cur
    if not ctx.is_server:
        me = current_user(ctx)
        if not team_id:
            raise errors.StatusError(400, "team_id is required for access type client")
        ensure_membership(cur, ctx.project_id, team_id, me)
        if user_id != ctx.user_id:
            require_team_permission(cur, ctx.project_id, team_id, ctx.user_id, "$read_members")
    else:
        if team_id:
            ensure_team(cur, ctx.project_id, team_id)
        if user_id:
            ensure_user(cur, ctx.project_id, user_id)
    where, args = ["project_id = %s"], [ctx.project_id]
    for column, value in (("team_id", team_id), ("user_id", user_id)):
        if value:
            where.append("%s = %%s" % column)
            args.append(value)
    cur.execute("SELECT * FROM emulator.team_members WHERE %s ORDER BY created_at, team_id, user_id"
                % " AND ".join(where), args)
    members = cur.fetchall()
    return {"items": [profile_json(cur, ctx.project_id, m, ctx.is_server) for m in members], "is_paginated": False}


@routes.get("/team-member-profiles/<team_id>/<user_id>", access=CLIENT_UP)
def get_member_profile(ctx, team_id, user_id):
    p, team_id, user_id = _member_params(ctx, team_id, user_id)
    check(ctx, p)
    if not ctx.is_server and user_id != current_user(ctx):
        require_team_permission(ctx.cur, ctx.project_id, team_id, ctx.user_id, "$read_members")
    member = _load_member(ctx.cur, ctx.project_id, team_id, user_id)
    return profile_json(ctx.cur, ctx.project_id, member, ctx.is_server)


@routes.patch("/team-member-profiles/<team_id>/<user_id>", access=CLIENT_UP)
def update_member_profile(ctx, team_id, user_id):
    p, team_id, user_id = _member_params(ctx, team_id, user_id)
    f, values = read_body(ctx, PROFILE_UPDATE)
    check(ctx, p, f)
    if not ctx.is_server and user_id != current_user(ctx):
        raise errors.StatusError(403, "Cannot update another user's profile")
    _load_member(ctx.cur, ctx.project_id, team_id, user_id)
    if values:
        ctx.cur.execute("UPDATE emulator.team_members SET %s WHERE project_id = %%s AND team_id = %%s AND "
                        "user_id = %%s" % ", ".join("%s = %%s" % c for c in values),
                        list(values.values()) + [ctx.project_id, team_id, user_id])
    member = _load_member(ctx.cur, ctx.project_id, team_id, user_id)
    return profile_json(ctx.cur, ctx.project_id, member, ctx.is_server)
