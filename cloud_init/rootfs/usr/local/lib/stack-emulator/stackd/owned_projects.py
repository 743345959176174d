"""Many projects: a signed-in user of `internal` creates and lists the projects its teams own
(/internal/projects), and its access token then administers them as an admin access token
(x-stack-admin-access-token with access type admin, as upstream's smart-request does).

Every route of the emulator works on any project: a project is a row in emulator.projects
with its own keys, config, users, teams and permission definitions.
"""

import secrets
import uuid

from . import errors, tokens
from .config import PROJECT_ID
from .inputs import check, read_body, uuid_field
from .projects import ADMIN_CONFIG_FLAGS, PERMISSION_LISTS, admin_json
from .routing import ADMIN, CLIENT_UP, Routes
from .schema import create_project
from .validate import MISSING

routes = Routes()

MERGE_STRATEGIES = ("link_method", "raise_error", "allow_duplicates")
LOGO_FIELDS = ("logo_url", "logo_full_url", "logo_dark_mode_url", "logo_full_dark_mode_url")
KEY_KINDS = ("publishable_client_key", "secret_server_key", "super_secret_admin_key", "cron_secret")


def fresh_keys():
    """Random primary keys for a new project (64 hex digits, as emulator.api_keys holds them)."""
    return {kind: secrets.token_hex(32) for kind in KEY_KINDS}


def new_project(cur, display_name, config=None, description="", owner_team_id=None, is_production_mode=False,
                project_id=None):
    """Create a project with fresh keys and the default permission definitions; returns its row."""
    project_id = project_id or str(uuid.uuid4())
    create_project(cur, project_id, display_name, config, keys=fresh_keys())
    cur.execute("UPDATE emulator.projects SET description = %s, owner_team_id = %s, is_production_mode = %s "
                "WHERE id = %s RETURNING *", (description or "", owner_team_id, bool(is_production_mode), project_id))
    return cur.fetchone()


def managed_project_ids(cur, user_id):
    """The projects owned by a team of `internal` that the user is a member of (listManagedProjectIds)."""
    cur.execute("SELECT p.id FROM emulator.projects p JOIN emulator.team_members m "
                "ON m.team_id = p.owner_team_id AND m.project_id = %s AND m.user_id = %s "
                "ORDER BY p.created_at, p.id", (PROJECT_ID, user_id))
    return [row["id"] for row in cur.fetchall()]


def check_admin_access_token(cur, token, project_id):
    """The user id behind an admin access token that may administer project_id, or the known error."""
    try:
        claims = tokens.decode_access_token(cur, token, PROJECT_ID)
    except errors.KnownError as exc:
        if exc.code == "ACCESS_TOKEN_EXPIRED":
            raise errors.admin_access_token_expired((exc.details or {}).get("expired_at_millis")) from None
        if exc.code == "INVALID_PROJECT_FOR_ACCESS_TOKEN":
            raise errors.admin_access_token_is_not_admin() from None
        raise errors.unparsable_admin_access_token() from None
    if claims.get("is_anonymous"):
        raise errors.unparsable_admin_access_token()
    cur.execute("SELECT 1 FROM emulator.users WHERE project_id = %s AND id = %s", (PROJECT_ID, claims["sub"]))
    if cur.fetchone() is None:
        raise errors.StatusError(401, "The user associated with the admin access token is no longer valid. "
                                      "Please refresh the admin access token and try again.")
    if project_id not in managed_project_ids(cur, claims["sub"]):
        raise errors.admin_access_token_is_not_admin()
    return claims["sub"]


def _user_on_internal(ctx):
    if not ctx.user_id:
        raise errors.user_authentication_required()
    if ctx.project_id != PROJECT_ID:
        raise errors.expected_internal_project()
    return ctx.user_id


# ---------------------------------------------------------------------------- legacy config (projects.js)

def legacy_config(f, name="config"):
    """The `config` object of a project create body, checked as projectsCrudAdminCreateSchema does."""
    raw = f.json(name)
    if raw is MISSING or raw is None:
        return {}
    where = "%s.%s" % (f.where, name)
    if not isinstance(raw, dict):
        f.problems.append("%s must be a `object` type" % where)
        return {}
    out = {}
    for key, value in raw.items():
        if value is None and key not in ("email_config", "domains", "oauth_providers"):
            f.problems.append("%s.%s cannot be null" % (where, key))
        elif key in ADMIN_CONFIG_FLAGS + ("require_email_verification",):
            if isinstance(value, bool):
                out[key] = value
            else:
                f.problems.append("%s.%s must be a `boolean` type" % (where, key))
        elif key in PERMISSION_LISTS + ("oauth_providers", "domains"):
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                f.problems.append("%s.%s must be a `array` type of objects" % (where, key))
            else:
                out[key] = value
        elif key == "oauth_account_merge_strategy":
            if value in MERGE_STRATEGIES:
                out[key] = value
            else:
                f.problems.append("%s.%s must be one of the following values: %s"
                                  % (where, key, ", ".join(MERGE_STRATEGIES)))
        elif key in ("email_config", "email_theme"):
            if value is not None:
                out[key] = value
        else:
            f.problems.append("%s contains unknown properties: %s" % (where, key))
    for provider in out.get("oauth_providers", []):
        if not isinstance(provider.get("id"), str) or provider.get("type") not in ("shared", "standard"):
            f.problems.append("%s.oauth_providers items need an id and a type of shared or standard" % where)
            break
    for domain in out.get("domains", []):
        if not isinstance(domain.get("domain"), str) or not isinstance(domain.get("handler_path"), str):
            f.problems.append("%s.domains items need a domain and a handler_path" % where)
            break
    return out


CREATE_BODY = {
    "display_name": "string", "description": "json", "owner_team_id": "json", "is_production_mode": "json",
    "is_development_environment": "json", "onboarding_status": "json", "onboarding_state": "json",
    "config": "json", **{name: "json" for name in LOGO_FIELDS},
}


# ---------------------------------------------------------------------------- routes

@routes.get("/internal/projects", access=CLIENT_UP)
def list_owned(ctx):
    user_id = _user_on_internal(ctx)
    ids = managed_project_ids(ctx.cur, user_id)
    ctx.cur.execute("SELECT * FROM emulator.projects WHERE id = ANY(%s) ORDER BY created_at, id", (ids,))
    return {"items": [admin_json(row) for row in ctx.cur.fetchall()], "is_paginated": False}


@routes.post("/internal/projects", access=CLIENT_UP)
def create_owned(ctx):
    user_id = _user_on_internal(ctx)
    f, data = read_body(ctx, CREATE_BODY, required=("display_name", "owner_team_id"))
    if isinstance(data.get("display_name"), str) and not data["display_name"].strip():
        f.problems.append("body.display_name must not be empty")
    team_id = uuid_field(f, "owner_team_id", required=True)
    description = f.string("description", nullable=True)
    description = description if isinstance(description, str) else ""
    production = f.boolean("is_production_mode")
    for name in LOGO_FIELDS:
        f.string(name, nullable=True)
    config = legacy_config(f)
    check(ctx, f)
    cur = ctx.cur
    cur.execute("SELECT 1 FROM emulator.team_members WHERE project_id = %s AND team_id = %s AND user_id = %s",
                (PROJECT_ID, team_id, user_id))
    if cur.fetchone() is None:
        raise errors.team_membership_not_found(team_id, user_id)
    config = {"allow_localhost": True, **config}  # as upstream: new projects trust localhost
    config.update({name: data[name] for name in LOGO_FIELDS if data.get(name) is not None})
    row = new_project(cur, data["display_name"], config, description=description, owner_team_id=team_id,
                      is_production_mode=production is True)
    return 201, admin_json(row)


@routes.delete("/internal/projects/current", access=ADMIN)
def delete_current(ctx):
    if ctx.project_id == PROJECT_ID:
        raise errors.StatusError(400, "The internal project cannot be deleted: it holds the emulator's own users "
                                      "and the keys the host uses. Delete a project you created instead.")
    ctx.cur.execute("DELETE FROM emulator.projects WHERE id = %s", (ctx.project_id,))
    return {"success": True}
