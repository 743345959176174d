"""Config overrides in upstream's format: /internal/config, /internal/config/override/<level>,
/internal/config/override/<level>/reset-keys, /internal/config/source.

Each level's override is stored flattened (emulator.config_overrides). A write recomputes,
from the project's base config and every level (project < branch < environment), the
emulator config fields that the changed keys stand for (project_config.fields_touched), so
`auth.allowSignUp: false` turns sign-up off at once; what PATCH /internal/projects/current
set on other fields is kept. Keys the emulator does not act on (payments, ...) are stored and
shown by GET, nothing more. A project made from a config file takes its branch level from
the file, and, as upstream's emulator, refuses environment-level writes.
"""

import json

from . import config_mapping as cm
from . import errors
from . import project_config as pc
from .config import PROJECT_ID
from .inputs import check, read_body
from .routing import ADMIN, SERVER_UP, Routes
from .schema import DEFAULT_PROJECT_CONFIG, DEFAULT_TEAM_PERMISSIONS

routes = Routes()

ENV_BLOCKED_MESSAGE = ("Environment configuration overrides cannot be changed in the local emulator. Update this in "
                       "your production deployment instead.")
SOURCE_TYPES = ("pushed-from-github", "pushed-from-unknown", "unlinked")
GITHUB_SOURCE_KEYS = ("owner", "repo", "branch", "commit_hash", "config_file_path")


# ---------------------------------------------------------------------------- storage

def config_file_of(cur, project_id):
    cur.execute("SELECT absolute_file_path FROM emulator.config_file_projects WHERE project_id = %s", (project_id,))
    row = cur.fetchone()
    return row["absolute_file_path"] if row else None


def base(cur, project_id):
    """(emulator config, permission definitions) a project starts from before any override."""
    if config_file_of(cur, project_id):
        return dict(cm.UPSTREAM_DEFAULT_CONFIG), []
    defaults = [{"id": i, "scope": "team", "description": d, "contained": c} for i, d, c in DEFAULT_TEAM_PERMISSIONS]
    config = dict(DEFAULT_PROJECT_CONFIG)
    if project_id == PROJECT_ID:
        config["create_team_on_sign_up"] = True  # as schema.init_schema seeds it (upstream's seed does too)
    return config, defaults


def load_levels(cur, project_id):
    cur.execute("SELECT level, config FROM emulator.config_overrides WHERE project_id = %s", (project_id,))
    stored = {row["level"]: row["config"] for row in cur.fetchall()}
    return {level: stored.get(level, {}) for level in pc.LEVELS}


def load_definitions(cur, project_id):
    cur.execute("SELECT id, scope, description, contained FROM emulator.permission_definitions "
                "WHERE project_id = %s ORDER BY id", (project_id,))
    return [dict(row) for row in cur.fetchall()]


def render_levels(flat, levels):
    for level in pc.LEVELS:
        flat = pc.apply(flat, levels[level])
    return pc.cleaned(flat)


def rendered_config(cur, project):
    """Upstream's rendered config of a project (nested), as GET /internal/config returns it."""
    flat = cm.render(project["config"], load_definitions(cur, project["id"]))
    for override in load_levels(cur, project["id"]).values():  # project, branch, environment
        flat = pc.apply(flat, cm.unmapped(override))
    return pc.unflatten(pc.cleaned(flat))


def store(cur, project, level, new_override, changed_keys, source=None):
    """Save one level's (flattened) override and bring the project's config up to date."""
    project_id = project["id"]
    old_levels = load_levels(cur, project_id)
    new_levels = dict(old_levels, **{level: new_override})
    cur.execute("INSERT INTO emulator.config_overrides (project_id, level, config, source) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (project_id, level) DO UPDATE SET config = EXCLUDED.config, "
                "source = COALESCE(EXCLUDED.source, emulator.config_overrides.source)",
                (project_id, level, json.dumps(new_override), json.dumps(source) if source else None))
    touched = cm.fields_touched(changed_keys)
    if not touched:
        return project
    base_config, base_definitions = base(cur, project_id)
    base_flat = cm.render(base_config, base_definitions)
    full_new = render_levels(base_flat, new_levels)
    computed = cm.to_emulator(full_new, old=project["config"])
    config = dict(project["config"])
    for field in touched - {"definitions"}:
        config[field] = computed.get(field)
    cur.execute("UPDATE emulator.projects SET config = %s WHERE id = %s RETURNING *", (json.dumps(config), project_id))
    project = cur.fetchone()
    if "definitions" in touched:
        full_old = render_levels(base_flat, old_levels)
        sync_definitions(cur, project_id, cm.definitions(full_old), cm.definitions(full_new), changed_keys)
    return project


def sync_definitions(cur, project_id, old_rows, new_rows, changed_keys):
    """Make the permission definitions the changed keys name equal to the new rendering."""
    new_by_id = {r["id"]: r for r in new_rows}
    prefix = cm.DEFINITIONS_PATH + "."
    if any(k == cm.DEFINITIONS_PATH or prefix.startswith(k + ".") for k in changed_keys):
        ids = {r["id"] for r in old_rows} | set(new_by_id) | {r["id"] for r in load_definitions(cur, project_id)}
    else:
        ids = {k[len(prefix):].split(".")[0] for k in changed_keys if k.startswith(prefix)}
    for perm_id in sorted(ids):
        row = new_by_id.get(perm_id)
        if row is None:
            cur.execute("DELETE FROM emulator.permission_definitions WHERE project_id = %s AND id = %s",
                        (project_id, perm_id))
            cur.execute("UPDATE emulator.permission_definitions SET contained = contained - %s::text "
                        "WHERE project_id = %s AND contained ? %s::text", (perm_id, project_id, perm_id))
            for table in ("team_permissions", "project_permissions"):
                cur.execute("DELETE FROM emulator.%s WHERE project_id = %%s AND permission_id = %%s" % table,
                            (project_id, perm_id))
            continue
        cur.execute("DELETE FROM emulator.permission_definitions WHERE project_id = %s AND id = %s AND scope <> %s",
                    (project_id, perm_id, row["scope"]))
        cur.execute("INSERT INTO emulator.permission_definitions (project_id, scope, id, description, contained) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (project_id, scope, id) DO UPDATE SET "
                    "description = EXCLUDED.description, contained = EXCLUDED.contained",
                    (project_id, row["scope"], perm_id, row["description"], json.dumps(row["contained"])))


def set_level(cur, project, level, override, source=None):
    """Replace a level's override (already checked); returns the updated project row."""
    flat = pc.flatten(override)
    old = load_levels(cur, project["id"])[level]
    return store(cur, project, level, flat, set(old) | set(flat), source)


# ---------------------------------------------------------------------------- requests

def _level(ctx, level, allowed=pc.LEVELS):
    if level not in allowed:
        raise errors.schema_error("Request validation failed on %s %s:\n  - params.level must be one of the "
                                  "following values: %s" % (ctx.method, ctx.path, ", ".join(allowed)))
    if ctx.access_type == "server" and level != "branch":
        raise errors.StatusError(403, "Server access can only manage branch config overrides.")
    return level


def _refuse_environment_on_file_project(ctx, level):
    if level == "environment" and config_file_of(ctx.cur, ctx.project_id):
        raise errors.StatusError(400, ENV_BLOCKED_MESSAGE)


def parse_override(ctx, level, text, field):
    """The override in a JSON string field, checked against what the level may hold."""
    try:
        value = json.loads(text)
    except ValueError:
        raise errors.StatusError(400, "Invalid config JSON") from None
    found = pc.problems(value, level, where=field)
    if found:
        raise errors.StatusError(400, "The %s config override is not valid:\n  - %s\nSee stack-shared's "
                                      "config schema for the keys each level holds." % (level, "\n  - ".join(found)))
    return value


def _source(ctx, f, data):
    source = data.get("source")
    if source is None:
        return None
    if not isinstance(source, dict) or source.get("type") not in SOURCE_TYPES:
        f.problems.append("body.source.type must be one of the following values: %s" % ", ".join(SOURCE_TYPES))
        return None
    if source["type"] == "pushed-from-github":
        missing = [k for k in GITHUB_SOURCE_KEYS if not isinstance(source.get(k), str)]
        if missing:
            f.problems.append("body.source.%s must be defined" % missing[0])
        return {"type": source["type"], **{k: source.get(k) for k in GITHUB_SOURCE_KEYS}}
    return {"type": source["type"]}


@routes.get("/internal/config", access=ADMIN)
def get_config(ctx):
    return {"config_string": json.dumps(rendered_config(ctx.cur, ctx.project))}


@routes.get("/internal/config/override/<level>", access=SERVER_UP)
def get_override(ctx, level):
    _level(ctx, level)
    override = load_levels(ctx.cur, ctx.project_id)[level]
    return {"config_string": json.dumps(pc.unflatten(override) if not _has_removals(override) else override)}


def _has_removals(flat):
    return any(v is None for v in flat.values())


@routes.put("/internal/config/override/<level>", access=SERVER_UP)
def put_override(ctx, level):
    _level(ctx, level)
    _refuse_environment_on_file_project(ctx, level)
    f, data = read_body(ctx, {"config_string": "string", "source": "json"}, required=("config_string",))
    source = _source(ctx, f, data)
    check(ctx, f)
    override = parse_override(ctx, level, data["config_string"], "config_string")
    if level == "branch" and source is None:
        raise errors.StatusError(400, "source is required for branch level config")
    ctx.project = set_level(ctx.cur, ctx.project, level, override, source if level == "branch" else None)
    return {"success": True}


@routes.patch("/internal/config/override/<level>", access=SERVER_UP)
def patch_override(ctx, level):
    _level(ctx, level)
    _refuse_environment_on_file_project(ctx, level)
    f, data = read_body(ctx, {"config_override_string": "string"}, required=("config_override_string",))
    check(ctx, f)
    patch = parse_override(ctx, level, data["config_override_string"], "config_override_string")
    stored = load_levels(ctx.cur, ctx.project_id)[level]
    merged = pc.merge_overrides(stored, patch)
    changed = set(pc.flatten(patch)) | set(patch)
    ctx.project = store(ctx.cur, ctx.project, level, merged, changed)
    return {"success": True}


@routes.post("/internal/config/override/<level>/reset-keys", access=ADMIN)
def reset_override_keys(ctx, level):
    _level(ctx, level, allowed=("branch", "environment"))
    _refuse_environment_on_file_project(ctx, level)
    f, data = read_body(ctx, {"keys": "json"}, required=("keys",))
    keys = data.get("keys")
    if keys is None:
        f.problems.append("body.keys must be defined")
    elif not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        f.problems.append("body.keys must be a `array` type of strings")
    check(ctx, f)
    stored = load_levels(ctx.cur, ctx.project_id)[level]
    ctx.project = store(ctx.cur, ctx.project, level, pc.reset_keys(stored, keys), set(keys))
    return {"success": True}


@routes.get("/internal/config/source", access=ADMIN)
def get_source(ctx):
    ctx.cur.execute("SELECT source FROM emulator.config_overrides WHERE project_id = %s AND level = 'branch'",
                    (ctx.project_id,))
    row = ctx.cur.fetchone()
    return {"source": (row and row["source"]) or {"type": "unlinked"}}


@routes.delete("/internal/config/source", access=ADMIN)
def unlink_source(ctx):
    ctx.cur.execute("INSERT INTO emulator.config_overrides (project_id, level, source) VALUES (%s, 'branch', %s) "
                    "ON CONFLICT (project_id, level) DO UPDATE SET source = EXCLUDED.source",
                    (ctx.project_id, json.dumps({"type": "unlinked"})))
    return {"success": True}
