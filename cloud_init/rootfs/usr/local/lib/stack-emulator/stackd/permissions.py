"""Team and project permissions: definitions (admin), grants (server), recursive listing.

A project's permission definitions live in permission_definitions (one id namespace across
both scopes, as in upstream's config); the team scope also has the six `$` system
permissions, which contain nothing. A user's permissions are its direct grants, and with
recursive=true everything those contain, transitively. This module also holds the request
checks that teams.py shares; inputs.py reads the requests.
"""

import json

from . import errors
from .inputs import (
    check,
    current_user,
    opt,
    params,
    permission_id_field,
    query_fields,
    read_body,
    user_field,
    uuid_field,
)
from .routing import ADMIN, CLIENT_UP, SERVER_UP, Routes
from .schema import SYSTEM_PERMISSIONS
from .validate import MISSING

routes = Routes()

# ---------------------------------------------------------------------------- pure logic

def expand(direct_ids, definitions, recursive):
    """The permission ids a user holds: direct grants (and, recursively, what they contain).

    Ids without a definition are skipped, as upstream skips grants of deleted permissions."""
    result, pending = set(), list(direct_ids)
    while pending:
        pid = pending.pop()
        if pid in result or pid not in definitions:
            continue
        result.add(pid)
        if recursive:
            pending.extend(definitions[pid][1])
    return result


def permission_items(grants, definitions, recursive, permission_id=None, with_team=True):
    """List items from grants {(user_id, team_id): [permission ids]}, sorted as upstream sorts."""
    items = []
    for (user_id, team_id), direct in grants.items():
        for pid in expand(direct, definitions, recursive):
            if permission_id and pid != permission_id:
                continue
            item = {"id": pid, "user_id": user_id}
            if with_team:
                item["team_id"] = team_id
            items.append(item)
    items.sort(key=lambda i: (i.get("team_id") or "", i["user_id"], i["id"]))
    return items


def definition_json(pid, description, contained):
    out = {"id": pid}
    description = description or SYSTEM_PERMISSIONS.get(pid)
    if description:
        out["description"] = description
    out["contained_permission_ids"] = sorted(set(contained))
    return out


# ---------------------------------------------------------------------------- request checks

def ensure_user(cur, project_id, user_id):
    cur.execute("SELECT 1 FROM emulator.users WHERE project_id = %s AND id = %s", (project_id, user_id))
    if cur.fetchone() is None:
        raise errors.user_not_found()


def is_member(cur, project_id, team_id, user_id):
    cur.execute("SELECT 1 FROM emulator.team_members WHERE project_id = %s AND team_id = %s AND user_id = %s",
                (project_id, team_id, user_id))
    return cur.fetchone() is not None


def ensure_membership(cur, project_id, team_id, user_id):
    ensure_user(cur, project_id, user_id)
    if not is_member(cur, project_id, team_id, user_id):
        raise errors.team_membership_not_found(team_id, user_id)


def require_team_permission(cur, project_id, team_id, user_id, permission_id, not_exist=False, recursive=True):
    """TEAM_PERMISSION_REQUIRED (or _NOT_FOUND) unless the member holds the permission."""
    ensure_membership(cur, project_id, team_id, user_id)
    if not list_permissions(cur, project_id, "team", user_id=user_id, team_id=team_id,
                            permission_id=permission_id, recursive=recursive):
        error = errors.team_permission_not_found if not_exist else errors.team_permission_required
        raise error(team_id, user_id, permission_id)


# ---------------------------------------------------------------------------- storage

def load_definitions(cur, project_id, scope):
    """{id: (description, contained ids)} of one scope, with the system ones for teams."""
    cur.execute("SELECT id, description, contained FROM emulator.permission_definitions "
                "WHERE project_id = %s AND scope = %s", (project_id, scope))
    defs = {r["id"]: (r["description"], list(r["contained"] or [])) for r in cur.fetchall()}
    if scope == "team":
        for pid, description in SYSTEM_PERMISSIONS.items():
            defs.setdefault(pid, (description, []))
    return defs


def definition_scope(cur, project_id, permission_id, prefer=None):
    """The scope a custom permission id is defined in, or None."""
    cur.execute("SELECT scope FROM emulator.permission_definitions WHERE project_id = %s AND id = %s "
                "ORDER BY scope = %s DESC LIMIT 1", (project_id, permission_id, prefer or ""))
    row = cur.fetchone()
    return row["scope"] if row else None


def list_permissions(cur, project_id, scope, user_id=None, team_id=None, permission_id=None, recursive=False):
    table = "team_permissions" if scope == "team" else "project_permissions"
    team_col = "team_id" if scope == "team" else "NULL AS team_id"
    sql = "SELECT user_id, %s, permission_id FROM emulator.%s WHERE project_id = %%s" % (team_col, table)
    args = [project_id]
    if user_id:
        sql += " AND user_id = %s"
        args.append(user_id)
    if team_id and scope == "team":
        sql += " AND team_id = %s"
        args.append(team_id)
    cur.execute(sql, args)
    grants = {}
    for row in cur.fetchall():
        key = (str(row["user_id"]), str(row["team_id"]) if row["team_id"] else None)
        grants.setdefault(key, []).append(row["permission_id"])
    return permission_items(grants, load_definitions(cur, project_id, scope), recursive,
                            permission_id, with_team=scope == "team")


def grant(cur, project_id, scope, user_id, permission_id, team_id=None):
    """Grant a defined permission (PERMISSION_NOT_FOUND / WRONG_PERMISSION_SCOPE otherwise)."""
    defined = definition_scope(cur, project_id, permission_id, prefer=scope)
    if defined is None:
        if scope != "team" or permission_id not in SYSTEM_PERMISSIONS:
            raise errors.permission_not_found(permission_id)
    elif defined != scope:
        raise errors.permission_scope_mismatch(permission_id, scope, defined)
    if scope == "team":
        cur.execute("INSERT INTO emulator.team_permissions (project_id, team_id, user_id, permission_id) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (project_id, team_id, user_id, permission_id))
        return {"id": permission_id, "user_id": user_id, "team_id": team_id}
    cur.execute("INSERT INTO emulator.project_permissions (project_id, user_id, permission_id) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (project_id, user_id, permission_id))
    return {"id": permission_id, "user_id": user_id}


def grant_defaults(cur, project_id, config, key, user_id, team_id=None):
    """Grant the permissions a project config list (e.g. team_creator_default_permissions) names."""
    scope = "project" if key == "user_default_permissions" else "team"
    for entry in config.get(key) or []:
        pid = entry.get("id") if isinstance(entry, dict) else entry
        try:
            grant(cur, project_id, scope, user_id, pid, team_id)
        except errors.KnownError:
            pass  # a default naming a deleted permission grants nothing


# ---------------------------------------------------------------------------- grants

def _list_route(ctx, scope):
    q = query_fields(ctx, ("user_id", "permission_id", "recursive") + (("team_id",) if scope == "team" else ()))
    team_id = opt(uuid_field(q, "team_id")) if scope == "team" else None
    user_id = opt(user_field(ctx, q, "user_id"))
    permission_id = opt(permission_id_field(q, "permission_id"))
    recursive = q.one_of("recursive", ("true", "false"))
    check(ctx, q)
    if not ctx.is_server and user_id != current_user(ctx):
        raise errors.StatusError(403, 'Client can only list permissions for their own user. user_id must be '
                                      'either "me" or the ID of the current user')
    items = list_permissions(ctx.cur, ctx.project_id, scope, user_id=user_id, team_id=team_id,
                             permission_id=permission_id, recursive=recursive == "true")
    return {"items": items, "is_paginated": False}


def _grant_route(ctx, scope, revoke, **path):
    """POST (grant, 201) or DELETE (revoke) of one user's direct permission."""
    p = params(ctx, **path)
    team_id = uuid_field(p, "team_id", True) if scope == "team" else None
    user_id = user_field(ctx, p, "user_id", True)
    pid = permission_id_field(p, "permission_id", True)
    parts = [p] if revoke else [p, read_body(ctx, {})[0]]  # a grant's body must be {}
    check(ctx, *parts)
    cur, project_id = ctx.cur, ctx.project_id
    if scope == "team":
        if not revoke:
            ensure_membership(cur, project_id, team_id, user_id)
            return 201, grant(cur, project_id, scope, user_id, pid, team_id)
        require_team_permission(cur, project_id, team_id, user_id, pid, not_exist=True, recursive=False)
        cur.execute("DELETE FROM emulator.team_permissions WHERE project_id = %s AND team_id = %s "
                    "AND user_id = %s AND permission_id = %s", (project_id, team_id, user_id, pid))
        return {"success": True}
    ensure_user(cur, project_id, user_id)
    if not revoke:
        return 201, grant(cur, project_id, scope, user_id, pid)
    if not list_permissions(cur, project_id, scope, user_id=user_id, permission_id=pid):
        raise errors.permission_not_found(pid)
    cur.execute("DELETE FROM emulator.project_permissions WHERE project_id = %s AND user_id = %s "
                "AND permission_id = %s", (project_id, user_id, pid))
    return {"success": True}


def _grant_routes(scope, path):
    routes.get("/%s-permissions" % scope, access=CLIENT_UP)(lambda ctx: _list_route(ctx, scope))
    routes.post(path, access=SERVER_UP)(lambda ctx, **kw: _grant_route(ctx, scope, False, **kw))
    routes.delete(path, access=SERVER_UP)(lambda ctx, **kw: _grant_route(ctx, scope, True, **kw))


_grant_routes("team", "/team-permissions/<team_id>/<user_id>/<permission_id>")
_grant_routes("project", "/project-permissions/<user_id>/<permission_id>")


# ---------------------------------------------------------------------------- definitions

DEFINITION_BODY = {"id": "custom_id", "description": "string", "contained_permission_ids": "ids"}


def _list_definitions(ctx, scope):
    q = query_fields(ctx, ("limit", "cursor", "query"))
    limit = q.integer("limit", minimum=1, maximum=1000)
    cursor, text = q.string("cursor"), q.string("query")
    check(ctx, q)
    definitions = load_definitions(ctx.cur, ctx.project_id, scope)
    items = [definition_json(pid, d, c) for pid, (d, c) in definitions.items()]
    items.sort(key=lambda i: i["id"])
    if text not in (MISSING, None, ""):
        needle = text.lower()
        items = [i for i in items if needle in i["id"].lower() or needle in (i.get("description") or "").lower()]
    if limit is MISSING and cursor is MISSING:
        return {"items": items, "is_paginated": False}
    start = 0
    if cursor not in (MISSING, None, ""):
        start = next((n for n, i in enumerate(items) if i["id"] >= cursor), len(items))
    end = len(items) if limit is MISSING else start + limit
    next_cursor = items[end]["id"] if end < len(items) else None
    return {"items": items[start:end], "is_paginated": True, "pagination": {"next_cursor": next_cursor}}


def _save_definition(ctx, scope, permission_id=None):
    """POST (permission_id None: create, 201) or PATCH (update or rename) of a definition."""
    parts, old = [], None
    if permission_id is not None:
        p = params(ctx, permission_id=permission_id)
        old = permission_id_field(p, "permission_id", True)
        parts.append(p)
    f, data = read_body(ctx, DEFINITION_BODY, required=("id",) if old is None else ())
    check(ctx, *parts, f)
    cur, project_id = ctx.cur, ctx.project_id
    if old is not None and definition_scope(cur, project_id, old, prefer=scope) != scope:
        raise errors.permission_not_found(old)
    new = data.get("id", old)
    if new != old and definition_scope(cur, project_id, new) is not None:
        raise errors.permission_id_already_exists(new)
    contained = sorted(set(data.get("contained_permission_ids") or []))
    known = load_definitions(cur, project_id, scope)
    for pid in contained:
        if pid not in known:
            raise errors.contained_permission_not_found(pid)
    # As upstream: on update, a description or contained ids not sent are reset, not kept.
    description = data.get("description") or None
    if old is None:
        cur.execute("INSERT INTO emulator.permission_definitions (project_id, scope, id, description, contained) "
                    "VALUES (%s, %s, %s, %s, %s)", (project_id, scope, new, description, json.dumps(contained)))
        return 201, definition_json(new, description, contained)
    cur.execute("UPDATE emulator.permission_definitions SET id = %s, description = %s, contained = %s "
                "WHERE project_id = %s AND scope = %s AND id = %s",
                (new, description, json.dumps(contained), project_id, scope, old))
    if new != old:
        _rename_references(cur, project_id, old, new)
    return definition_json(new, description, contained)


def _rename_references(cur, project_id, old, new):
    cur.execute("UPDATE emulator.permission_definitions SET contained = (contained - %s::text) "
                "|| jsonb_build_array(%s::text) WHERE project_id = %s AND contained ? %s::text",
                (old, new, project_id, old))
    for table, key in (("team_permissions", "team_id, user_id"), ("project_permissions", "user_id")):
        cur.execute("DELETE FROM emulator.{t} WHERE project_id = %s AND permission_id = %s AND ({k}) IN "
                    "(SELECT {k} FROM emulator.{t} WHERE project_id = %s AND permission_id = %s)"
                    .format(t=table, k=key), (project_id, new, project_id, old))
        cur.execute("UPDATE emulator.%s SET permission_id = %%s WHERE project_id = %%s AND permission_id = %%s"
                    % table, (new, project_id, old))


def _delete_definition(ctx, scope, permission_id):
    p = params(ctx, permission_id=permission_id)
    pid = permission_id_field(p, "permission_id", True)
    check(ctx, p)
    cur = ctx.cur
    if definition_scope(cur, ctx.project_id, pid, prefer=scope) != scope:
        raise errors.permission_not_found(pid)
    cur.execute("DELETE FROM emulator.permission_definitions WHERE project_id = %s AND scope = %s AND id = %s",
                (ctx.project_id, scope, pid))
    cur.execute("UPDATE emulator.permission_definitions SET contained = contained - %s::text "
                "WHERE project_id = %s AND contained ? %s::text", (pid, ctx.project_id, pid))
    table = "team_permissions" if scope == "team" else "project_permissions"
    cur.execute("DELETE FROM emulator.%s WHERE project_id = %%s AND permission_id = %%s" % table,
                (ctx.project_id, pid))
    return {"success": True}


def _definition_routes(scope):
    base = "/%s-permission-definitions" % scope
    routes.get(base, access=ADMIN)(lambda ctx: _list_definitions(ctx, scope))
    routes.post(base, access=ADMIN)(lambda ctx: _save_definition(ctx, scope))
    routes.patch(base + "/<permission_id>", access=ADMIN)(
        lambda ctx, permission_id: _save_definition(ctx, scope, permission_id))
    routes.delete(base + "/<permission_id>", access=ADMIN)(
        lambda ctx, permission_id: _delete_definition(ctx, scope, permission_id))


_definition_routes("team")
_definition_routes("project")
