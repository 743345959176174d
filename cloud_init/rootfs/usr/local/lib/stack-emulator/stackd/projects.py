"""Projects: /projects/current for apps, /internal/projects/current for the admin key, JWKS."""

import json

from . import errors, tokens
from .routing import ADMIN, CLIENT_UP, Routes
from .validate import MISSING

routes = Routes()

CLIENT_CONFIG_FLAGS = ("sign_up_enabled", "credential_enabled", "magic_link_enabled", "passkey_enabled",
                       "client_team_creation_enabled", "client_user_deletion_enabled", "allow_localhost",
                       "allow_user_api_keys", "allow_team_api_keys")
ADMIN_CONFIG_FLAGS = CLIENT_CONFIG_FLAGS + ("create_team_on_sign_up",)
PERMISSION_LISTS = ("team_creator_default_permissions", "team_member_default_permissions",
                    "user_default_permissions")
EMULATOR_EMAIL_CONFIG = {"type": "shared"}


def client_json(project):
    config = project["config"]
    out = {k: bool(config.get(k)) for k in CLIENT_CONFIG_FLAGS}
    out["enabled_oauth_providers"] = [{"id": p["id"]} for p in config.get("oauth_providers", [])]
    out["domains"] = config.get("domains", [])
    return {"id": project["id"], "display_name": project["display_name"], "config": out}


def admin_json(project):
    config = project["config"]
    out = {k: bool(config.get(k)) for k in ADMIN_CONFIG_FLAGS}
    out["oauth_providers"] = [
        {"provider_config_id": p["id"], "id": p["id"], "type": p.get("type", "shared"),
         **({"client_id": p["client_id"], "client_secret": p["client_secret"]} if p.get("type") == "standard" else {})}
        for p in config.get("oauth_providers", [])]
    out["enabled_oauth_providers"] = [{"id": p["id"]} for p in config.get("oauth_providers", [])]
    out["domains"] = config.get("domains", [])
    out["email_config"] = config.get("email_config", EMULATOR_EMAIL_CONFIG)
    out["email_theme"] = config.get("email_theme", "default-light")
    out["oauth_account_merge_strategy"] = config.get("oauth_account_merge_strategy", "link_method")
    for name in PERMISSION_LISTS:
        out[name] = config.get(name, [])
    return {
        "id": project["id"],
        "display_name": project["display_name"],
        "description": project["description"],
        "logo_url": config.get("logo_url"),
        "logo_full_url": config.get("logo_full_url"),
        "logo_dark_mode_url": config.get("logo_dark_mode_url"),
        "logo_full_dark_mode_url": config.get("logo_full_dark_mode_url"),
        "created_at_millis": int(project["created_at"].timestamp() * 1000),
        "is_production_mode": bool(project["is_production_mode"]),
        "is_development_environment": True,
        "owner_team_id": str(project["owner_team_id"]) if project.get("owner_team_id") else None,
        "onboarding_status": "completed",
        "config": out,
    }


@routes.get("/projects/current", access=CLIENT_UP)
def current(ctx):
    return client_json(ctx.project)


@routes.get("/internal/projects/current", access=ADMIN)
def admin_current(ctx):
    return admin_json(ctx.project)


@routes.patch("/internal/projects/current", access=ADMIN)
def admin_update(ctx):
    f = ctx.fields()
    display_name = f.string("display_name", max_len=256)
    description = f.string("description", nullable=True)
    production = f.boolean("is_production_mode")
    raw_config = f.json("config", nullable=False)
    if raw_config not in (MISSING,) and not isinstance(raw_config, dict):
        f.problems.append("body.config must be a `object` type")
    f.check()
    config = dict(ctx.project["config"])
    for name, value in (raw_config if isinstance(raw_config, dict) else {}).items():
        if name in ADMIN_CONFIG_FLAGS:
            if not isinstance(value, bool):
                raise errors.schema_error("Request validation failed on PATCH %s:\n  - body.config.%s must "
                                          "be a `boolean` type" % (ctx.path, name))
            config[name] = value
        elif name in PERMISSION_LISTS + ("oauth_providers", "domains"):
            if not isinstance(value, list):
                raise errors.schema_error("Request validation failed on PATCH %s:\n  - body.config.%s must "
                                          "be a `array` type" % (ctx.path, name))
            config[name] = value
        elif name in ("email_config", "email_theme", "oauth_account_merge_strategy", "logo_url"):
            config[name] = value
        else:
            raise errors.schema_error("Request validation failed on PATCH %s:\n  - body.config contains "
                                      "unknown properties: %s" % (ctx.path, name))
    ctx.cur.execute("UPDATE emulator.projects SET display_name = %s, description = %s, "
                    "is_production_mode = %s, config = %s WHERE id = %s RETURNING *",
                    (ctx.project["display_name"] if display_name is MISSING else display_name,
                     ctx.project["description"] if description in (MISSING, None) else description,
                     ctx.project["is_production_mode"] if production is MISSING else production,
                     json.dumps(config), ctx.project_id))
    ctx.project = ctx.cur.fetchone()
    return admin_json(ctx.project)


def _project_jwks(ctx, project_id, include_anonymous):
    ctx.cur.execute("SELECT 1 FROM emulator.projects WHERE id = %s", (project_id,))
    if ctx.cur.fetchone() is None:
        raise errors.KnownError("PROJECT_NOT_FOUND", 404, "Project %s not found or is not accessible with "
                                "the current user." % project_id, {"project_id": project_id})
    return tokens.jwks(ctx.cur, include_anonymous=include_anonymous)


@routes.get("/projects/<project_id>/.well-known/jwks.json", access=None)
def jwks(ctx, project_id):
    """The keys of users' tokens; anonymous users' keys only with ?include_anonymous=true."""
    return _project_jwks(ctx, project_id, ctx.query("include_anonymous") == "true")


@routes.get("/projects-anonymous-users/<project_id>/.well-known/jwks.json", access=None)
def anonymous_jwks(ctx, project_id):
    return _project_jwks(ctx, project_id, True)
