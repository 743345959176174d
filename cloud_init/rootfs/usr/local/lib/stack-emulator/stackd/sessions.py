"""Sessions: refresh tokens, access tokens, sign-out, listing and revoking sessions.

The SDK refreshes through the OAuth token endpoint (form-encoded `refresh_token` grant,
client_id = project id, client_secret = publishable key), as upstream serves it.
"""


from werkzeug.wrappers import Response

from . import errors, internal_api_keys, tokens, users
from .routing import CLIENT_UP, SERVER_UP, Routes
from .validate import MISSING
from .web import json_bytes

routes = Routes()


def issue_tokens(ctx, user_id, expires_in_millis=None, is_impersonation=False):
    """A new session for a user: {"access_token", "refresh_token"} plus its id."""
    session_id, refresh_token = tokens.create_session(ctx.cur, ctx.project_id, user_id,
                                                      expires_in_millis, is_impersonation)
    access_token = access_token_for(ctx, user_id, session_id)
    return {"access_token": access_token, "refresh_token": refresh_token, "session_id": str(session_id)}


def access_token_for(ctx, user_id, session_id):
    user = users.load(ctx.cur, ctx.project_id, str(user_id))
    claims = tokens.access_token_claims(user, ctx.project_id, session_id, ctx.api_base)
    return tokens.sign_access_token(ctx.cur, claims)


def session_json(row, current_id):
    return {
        "id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "created_at": int(row["created_at"].timestamp() * 1000),
        "is_impersonation": bool(row["is_impersonation"]),
        "last_used_at": int(row["last_used_at"].timestamp() * 1000),
        "is_current_session": str(row["id"]) == str(current_id),
    }


@routes.post("/auth/sessions", access=SERVER_UP)
def create_session(ctx):
    f = ctx.fields()
    raw_user = f.string("user_id", required=True)
    expires = f.integer("expires_in_millis", minimum=1, maximum=1000 * 60 * 60 * 24 * 367)
    impersonation = f.boolean("is_impersonation")
    f.check()
    user_id = ctx.resolve_user_id(raw_user, "body.user_id")
    if users.load_row(ctx.cur, ctx.project_id, user_id) is None:
        raise errors.user_id_does_not_exist(user_id)
    out = issue_tokens(ctx, user_id, None if expires is MISSING else expires,
                       impersonation is True)
    return {"refresh_token": out["refresh_token"], "access_token": out["access_token"]}


@routes.get("/auth/sessions", access=CLIENT_UP)
def list_sessions(ctx):
    raw = ctx.query("user_id")
    if raw is None:
        raise errors.schema_error("Request validation failed on GET %s:\n  - query.user_id must be defined"
                                  % ctx.path)
    user_id = ctx.resolve_user_id(raw, "query.user_id")
    if not ctx.is_server and user_id != ctx.user_id:
        raise errors.StatusError(403, "Client can only list sessions for their own user.")
    users.load(ctx.cur, ctx.project_id, user_id)
    # As upstream: newest first, impersonation sessions only for the admin key.
    ctx.cur.execute("SELECT * FROM emulator.sessions WHERE user_id = %s AND project_id = %s "
                    "AND (expires_at IS NULL OR expires_at > clock_timestamp()) "
                    "AND (NOT is_impersonation OR %s) ORDER BY created_at DESC",
                    (user_id, ctx.project_id, ctx.access_type == "admin"))
    items = [session_json(r, ctx.session_id) for r in ctx.cur.fetchall()]
    return {"items": items, "is_paginated": False}


@routes.delete("/auth/sessions/current", access=CLIENT_UP)
def sign_out(ctx):
    session_id = ctx.session_id
    refresh_token = ctx.header("refresh-token")
    if session_id is None and refresh_token:
        session_id = tokens.session_for_refresh_token(ctx.cur, ctx.project_id, refresh_token)["id"]
    if session_id is None:
        raise errors.refresh_token_not_found_or_expired()
    ctx.cur.execute("DELETE FROM emulator.sessions WHERE id = %s AND project_id = %s RETURNING id",
                    (session_id, ctx.project_id))
    if ctx.cur.fetchone() is None:
        raise errors.refresh_token_not_found_or_expired()
    return {"success": True}


@routes.post("/auth/sessions/current/refresh", access=CLIENT_UP)
def refresh_current(ctx):
    row = tokens.session_for_refresh_token(ctx.cur, ctx.project_id, ctx.header("refresh-token"))
    return {"access_token": access_token_for(ctx, row["user_id"], row["id"])}


@routes.delete("/auth/sessions/<session_id>", access=CLIENT_UP)
def delete_session(ctx, session_id):
    raw = ctx.query("user_id")
    user_id = ctx.resolve_user_id(raw, "query.user_id") if raw else None
    if not ctx.is_server:
        # A client deletes only sessions of the user it is signed in as (upstream answers the
        # same 404 as for a session that does not exist).
        if ctx.user_id is None:
            raise errors.cannot_get_own_user_without_user()
        if user_id is not None and user_id != ctx.user_id:
            raise errors.StatusError(404, "Session not found.")
        user_id = ctx.user_id
    if session_id == str(ctx.session_id):
        raise errors.cannot_delete_current_session()
    params = [session_id, ctx.project_id]
    sql = "DELETE FROM emulator.sessions WHERE id::text = %s AND project_id = %s"
    if user_id is not None:
        sql += " AND user_id::text = %s"
        params.append(str(user_id))
    ctx.cur.execute(sql + " RETURNING id", params)
    if ctx.cur.fetchone() is None:
        raise errors.StatusError(404, "Session not found.")
    return {"success": True}


@routes.post("/auth/oauth/token", access=None)
def oauth_token(ctx):
    """The OAuth 2 token endpoint: the refresh_token grant here, authorization_code in oauth.py."""
    body = ctx.body() or {}
    # Form fields are strings; a JSON body's other values count as absent (never a 500).
    form = {k: v for k, v in body.items() if isinstance(v, str)} if isinstance(body, dict) else {}
    grant = form.get("grant_type")
    if not grant:
        raise errors.schema_error("Request validation failed on POST %s:\n  - body.grant_type must be "
                                  "defined" % ctx.path)
    client_id = form.get("client_id") or ""
    client_secret = form.get("client_secret") or ""
    ctx.cur.execute("SELECT * FROM emulator.projects WHERE id = %s", (client_id,))
    project = ctx.cur.fetchone()
    if project is None or not internal_api_keys.client_secret_ok(ctx.cur, project, client_secret):
        raise errors.invalid_oauth_client_id_or_secret(client_id or None)
    ctx.project, ctx.project_id = project, client_id
    if grant == "refresh_token":
        row = tokens.session_for_refresh_token(ctx.cur, client_id, form.get("refresh_token") or "")
        access_token = access_token_for(ctx, row["user_id"], row["id"])
        return {"access_token": access_token, "token_type": "Bearer",
                "expires_in": tokens.ACCESS_TOKEN_SECONDS - 1,
                "refresh_token": form.get("refresh_token"), "scope": "legacy"}
    if grant == "authorization_code":
        from .oauth import authorization_code_grant  # oauth.py issues its sessions here
        return authorization_code_grant(ctx, form)
    return oauth_error("unsupported_grant_type", "Unsupported grant type: grant_type is invalid", 400)


def oauth_error(code, description, status):
    return Response(json_bytes({"error": code, "error_description": description}), status=status,
                    content_type="application/json; charset=utf-8",
                    headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")])


