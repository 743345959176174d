"""Projects besides internal, through the fixture's handle: shared by the host-run stackd test
(tests/guest/test_projects_host.py) and the compat image test (tests/vm/test_projects.py)."""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path

import pytest

from pytest_stack_emulator.emulator import StackEmulator
from pytest_stack_emulator.projects import Project, ProjectError

PASSWORD = "correct-horse-battery-1"


def email(what: str) -> str:
    return f"{what}-{secrets.token_hex(4)}@example.com"


def sign_up(project: Project | StackEmulator, address: str) -> tuple[int, dict[str, object]]:
    with project.client("client") as client:
        r = client.post("/api/v1/auth/password/sign-up", json={"email": address, "password": PASSWORD})
    return r.status_code, r.json()


def user_emails(project: Project | StackEmulator) -> list[str]:
    with project.client("server") as server:
        r = server.get("/api/v1/users")
    assert r.status_code == 200, r.text
    return sorted(u["primary_email"] for u in r.json()["items"])


def check_new_project(handle: StackEmulator) -> None:
    internal = handle.internal_project()
    closed = handle.new_project({"auth.allowSignUp": False}, display_name="closed")
    assert closed.project_id != internal.project_id
    assert closed.display_name == "closed"
    assert {closed.publishable_client_key, closed.secret_server_key} & {
        internal.publishable_client_key,
        internal.secret_server_key,
    } == set()
    status, body = sign_up(closed, email("refused"))
    assert (status, body["code"]) == (400, "SIGN_UP_NOT_ENABLED")
    # The server may still create users; they belong to that project only.
    address = email("server-made")
    with closed.client("server") as server:
        r = server.post("/api/v1/users", json={"primary_email": address, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert user_emails(closed) == [address]
    with internal.client("server") as server:
        found = server.get("/api/v1/users", params={"query": address}).json()["items"]
    assert found == []
    # Its admin key administers it; the internal project's keys do not.
    with closed.client("admin") as admin:
        project = admin.get("/api/v1/internal/projects/current").json()
    assert (project["id"], project["config"]["sign_up_enabled"]) == (closed.project_id, False)
    wrong = {**closed.headers("server"), "x-stack-secret-server-key": internal.secret_server_key}
    with closed.client("server", headers=wrong) as server:
        assert server.get("/api/v1/users").json()["code"] == "INVALID_SECRET_SERVER_KEY"

    default = handle.new_project()
    status, body = sign_up(default, email("welcome"))
    assert status == 200, body
    env = default.env()
    assert env["STACK_PROJECT_ID"] == env["VITE_STACK_PROJECT_ID"] == default.project_id
    assert env["NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"] == default.publishable_client_key
    assert env["STACK_API_URL"] == handle.backend_url

    with pytest.raises(ProjectError, match=r"auth\.allowSignUpp is not a Stack Auth config key"):
        handle.new_project({"auth.allowSignUpp": False})


CONFIG_TS = """\
import type { StackConfig } from "@stackframe/js";

// What the app needs from Stack Auth.
export const config: StackConfig = {
  auth: {
    allowSignUp: %(sign_up)s,
    password: { allowSignIn: true },
  },
  "teams.createPersonalTeamOnSignUp": true,
  rbac: {
    permissions: {
      "read:reports": { scope: "team", description: 'Read the reports', containedPermissionIds: {} },
    },
    defaultPermissions: { teamCreator: { "read:reports": true } },
  },
} satisfies StackConfig;
"""


def check_config_file(handle: StackEmulator, tmp: Path) -> None:
    internal_id = handle.internal_project().project_id
    app = tmp / "my-app"
    app.mkdir()
    file = app / "stack.config.ts"
    file.write_text(CONFIG_TS % {"sign_up": "true"})
    first = handle.use_config_file(file)
    assert handle.project_id == first.project_id != internal_id
    assert handle.secret_server_key == first.secret_server_key
    assert handle.internal_project().project_id == internal_id
    assert first.config_file == file
    # The file's config is in effect: sign-up with a password, a personal team, its permission.
    address = email("file-user")
    status, body = sign_up(handle, address)
    assert status == 200, body
    with handle.client("server") as server:
        user_id = server.get("/api/v1/users", params={"query": address}).json()["items"][0]["id"]
        teams = server.get("/api/v1/teams", params={"user_id": user_id}).json()["items"]
        assert len(teams) == 1
        perms = server.get(
            "/api/v1/team-permissions", params={"user_id": user_id, "team_id": teams[0]["id"]}
        ).json()["items"]
    assert [p["id"] for p in perms] == ["read:reports"]

    # The same file gets the same project, with the file's config of now.
    file.write_text(CONFIG_TS % {"sign_up": "false"})
    second = handle.use_config_file(file)
    assert second.project_id == first.project_id
    assert second.secret_server_key == first.secret_server_key
    status, body = sign_up(handle, email("late"))
    assert (status, body["code"]) == (400, "SIGN_UP_NOT_ENABLED")

    # What only production can change is refused, naming the key.
    bad = app / "bad.config.json"
    bad.write_text('{"domains": {"trustedDomains": {"prod": {"baseUrl": "https://app.example.com"}}}}')
    with pytest.raises(
        ProjectError, match=r"domains\.trustedDomains\.prod\.baseUrl belongs to the environment"
    ):
        handle.use_config_file(bad)
    assert handle.project_id == first.project_id
    # Another file is another project.
    other = app / "stack.config.json"
    other.write_text(textwrap.dedent('{"auth.allowSignUp": true}'))
    third = handle.use_config_file(other)
    assert third.project_id not in (first.project_id, internal_id)
