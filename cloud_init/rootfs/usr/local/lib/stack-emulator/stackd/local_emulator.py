"""Routes only the local emulator has: a project per app config file, and a fresh project.

POST /internal/local-emulator/project is upstream's route: given a config file's absolute
path it creates a project for that file (or finds the one made before) and returns its id
and keys. Upstream's backend read the file through the host's root mounted in the VM; here
the host side reads it and sends the exported config as `config_string` (JSON), so nothing is
shared with the guest. The config is the project's branch config, replaced on every call, so
a changed file takes effect on the next session. As upstream's emulator, a file project
starts from Stack Auth's defaults and refuses environment-level settings.

POST /internal/local-emulator/projects makes a new project each time (what the host's
`new_project()` and `stack_project` fixture use), optionally with a config override.
"""

import json
import os
import posixpath

from . import config_mapping as cm
from . import config_overrides, errors, keys
from . import project_config as pc
from .config import PROJECT_ID
from .inputs import check, read_body
from .owned_projects import new_project
from .routing import CLIENT_UP, SERVER_UP, Routes

routes = Routes()

NO_CONFIG_MESSAGE = (
    "config_string must be sent: this emulator does not read files from the host. Its host side reads the "
    "config file and sends the exported config as JSON (stack-emulator start --config-file FILE, or "
    "pytest --stack-emulator-project-config FILE).")


def _internal_only(ctx):
    if ctx.project_id != PROJECT_ID:
        raise errors.expected_internal_project()


def credentials(cur, project_id, **extra):
    found = keys.project_keys(cur, project_id)
    return {"project_id": project_id, "publishable_client_key": found["publishable_client_key"],
            "secret_server_key": found["secret_server_key"], "super_secret_admin_key": found["super_secret_admin_key"],
            **extra}


def file_config(text, path):
    """The config object of a config file's exported value (JSON), or a 400 that says why not."""
    try:
        value = json.loads(text)
    except ValueError:
        raise errors.StatusError(400, "config_string for %s is not valid JSON." % path) from None
    if value == "show-onboarding":
        return {}
    if not isinstance(value, dict):
        raise errors.StatusError(400, "Invalid config in %s. The file must export a 'config' object." % path)
    found = pc.problems(value, "branch", where="config")
    if found:
        raise errors.StatusError(
            400, "%s holds what the local emulator cannot take from a config file:\n  - %s\nThe file is the "
            "project's branch config. Environment settings (OAuth client ids and secrets, trusted domains, the mail "
            "server, localhost) are changed only in a production deployment: remove them from the file."
            % (path, "\n  - ".join(found)))
    return value


def split_levels(text):
    """A config override for a new project, split into its project and environment levels
    (a new project's own config may set anything a dashboard could)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise errors.StatusError(400, "config_override_string is not valid JSON.") from None
    if not isinstance(value, dict):
        raise errors.StatusError(400, "config_override_string must be a JSON object of config keys.")
    flat = pc.flatten(value)
    project = {k: v for k, v in flat.items() if pc.classify(k, v, "project")[0] == "ok"}
    environment = {k: v for k, v in flat.items() if k not in project}
    found = pc.problems(project, "project", where="config") + pc.problems(environment, "environment", where="config")
    if found:
        raise errors.StatusError(400, "The config for the new project is not valid:\n  - %s\nUse Stack Auth's config "
                                      "keys, e.g. {\"auth.allowSignUp\": false}." % "\n  - ".join(found))
    return {"project": project, "environment": environment}


@routes.post("/internal/local-emulator/project", access=CLIENT_UP)
def project_for_file(ctx):
    _internal_only(ctx)
    f, data = read_body(ctx, {"absolute_file_path": "string", "config_string": "string"},
                        required=("absolute_file_path",))
    check(ctx, f)
    raw_path = data["absolute_file_path"]
    if not raw_path.startswith("/") or "\0" in raw_path:
        raise errors.StatusError(400, "absolute_file_path must be an absolute path.")
    path = posixpath.normpath(raw_path)
    if "config_string" not in data:
        raise errors.StatusError(400, NO_CONFIG_MESSAGE)
    config = file_config(data["config_string"], path)
    cur = ctx.cur
    cur.execute("UPDATE emulator.config_file_projects SET updated_at = clock_timestamp() "
                "WHERE absolute_file_path = %s RETURNING project_id", (path,))
    row = cur.fetchone()
    if row is None:
        project = new_project(cur, "Local Emulator: %s" % (os.path.basename(path) or "Project"),
                              dict(cm.UPSTREAM_DEFAULT_CONFIG), description="Local emulator project for %s" % path)
        # Stack Auth's defaults define no permissions: the file's rbac.permissions are all there is.
        cur.execute("DELETE FROM emulator.permission_definitions WHERE project_id = %s", (project["id"],))
        cur.execute("INSERT INTO emulator.config_file_projects (absolute_file_path, project_id) VALUES (%s, %s)",
                    (path, project["id"]))
    else:
        cur.execute("SELECT * FROM emulator.projects WHERE id = %s", (row["project_id"],))
        project = cur.fetchone()
    config_overrides.set_level(cur, project, "branch", config, source={"type": "pushed-from-unknown"})
    return credentials(cur, project["id"], branch_config_override_string=json.dumps(config))


@routes.post("/internal/local-emulator/projects", access=SERVER_UP)
def fresh_project(ctx):
    _internal_only(ctx)
    f, data = read_body(ctx, {"display_name": "string", "config_override_string": "string"})
    if isinstance(data.get("display_name"), str) and not data["display_name"].strip():
        f.problems.append("body.display_name must not be empty")
    check(ctx, f)
    levels = split_levels(data.get("config_override_string", "{}"))
    cur = ctx.cur
    project = new_project(cur, data.get("display_name") or "Test project")
    for level, override in levels.items():
        if override:
            project = config_overrides.set_level(cur, project, level, override)
    return 201, credentials(cur, project["id"], display_name=project["display_name"])
