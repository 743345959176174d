"""Projects besides ``internal``: a fresh one per test, or one per app config file.

Both are made over the backend's REST API with the internal project's keys, in milliseconds:
``POST /api/v1/internal/local-emulator/projects`` (a new project, optionally with a config
override in Stack Auth's format) and ``POST /api/v1/internal/local-emulator/project``
(upstream's route: the project of a config file, made once per absolute path and given the
file's config again on every call). A :class:`Project` has the same ``headers``, ``client``
and ``env`` as the fixture's handle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .config_file import load_config_file
from .errors import StackEmulatorError

ACCESS_TYPES = ("client", "server", "admin")
ENV_PREFIXES = ("NEXT_PUBLIC_", "VITE_", "EXPO_PUBLIC_")


class ProjectError(StackEmulatorError):
    """The backend refused to make a project (its message says why)."""


def stack_headers(
    project_id: str,
    publishable_client_key: str,
    secret_server_key: str,
    super_secret_admin_key: str,
    access: str = "server",
) -> dict[str, str]:
    """The ``x-stack-*`` headers of one project for ``client``, ``server`` or ``admin`` access."""
    if access not in ACCESS_TYPES:
        raise ValueError(f"access must be one of {', '.join(ACCESS_TYPES)}, not {access!r}")
    headers = {
        "x-stack-project-id": project_id,
        "x-stack-access-type": access,
        "x-stack-publishable-client-key": publishable_client_key,
    }
    if access in ("server", "admin"):
        headers["x-stack-secret-server-key"] = secret_server_key
    if access == "admin":
        headers["x-stack-super-secret-admin-key"] = super_secret_admin_key
    return headers


def stack_env(
    backend_url: str, project_id: str, publishable_client_key: str, secret_server_key: str
) -> dict[str, str]:
    """What an app under test needs, like upstream's ``stack emulator run`` (CONTRACT §4)."""
    env = {
        "STACK_API_URL": backend_url,
        "STACK_PROJECT_ID": project_id,
        "STACK_PUBLISHABLE_CLIENT_KEY": publishable_client_key,
        "STACK_SECRET_SERVER_KEY": secret_server_key,
    }
    for prefix in ENV_PREFIXES:
        env[f"{prefix}STACK_API_URL"] = backend_url
        env[f"{prefix}STACK_PROJECT_ID"] = project_id
        env[f"{prefix}STACK_PUBLISHABLE_CLIENT_KEY"] = publishable_client_key
    return env


@dataclass(frozen=True)
class Project:
    """One project of a running stack: its id, its keys, and clients on it."""

    backend_url: str
    project_id: str
    publishable_client_key: str
    secret_server_key: str = field(repr=False)  # never in a traceback or a log
    super_secret_admin_key: str = field(repr=False)
    display_name: str | None = None
    config_file: Path | None = None

    def headers(self, access: str = "server") -> dict[str, str]:
        return stack_headers(
            self.project_id,
            self.publishable_client_key,
            self.secret_server_key,
            self.super_secret_admin_key,
            access,
        )

    def client(self, access: str = "server", **kwargs: Any) -> httpx.Client:
        """An httpx client on the backend with this project's ``x-stack-*`` headers for ``access``."""
        headers = {**self.headers(access), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.backend_url, headers=headers, **kwargs)

    def env(self) -> dict[str, str]:
        return stack_env(
            self.backend_url, self.project_id, self.publishable_client_key, self.secret_server_key
        )


def _post(internal: Project, access: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        with internal.client(access) as client:
            response = client.post(f"/api/v1{path}", json=body)
    except httpx.HTTPError as exc:
        raise ProjectError(f"{what}: the backend at {internal.backend_url} did not answer: {exc}") from None
    if response.status_code >= 300:
        raise ProjectError(f"{what} failed (HTTP {response.status_code}): {response.text.strip()}")
    data: dict[str, Any] = response.json()
    return data


def _project(internal: Project, data: Mapping[str, Any], **extra: Any) -> Project:
    return Project(
        backend_url=internal.backend_url,
        project_id=str(data["project_id"]),
        publishable_client_key=str(data["publishable_client_key"]),
        secret_server_key=str(data["secret_server_key"]),
        super_secret_admin_key=str(data["super_secret_admin_key"]),
        **extra,
    )


def create_project(
    internal: Project, config: Mapping[str, Any] | None = None, display_name: str | None = None
) -> Project:
    """A new project with fresh keys. ``config`` is Stack Auth's config format, e.g.
    ``{"auth.allowSignUp": False}`` or ``{"auth": {"password": {"allowSignIn": True}}}``;
    it starts from what a project made in the dashboard has (password sign-in, shared
    GitHub and Google OAuth, team_admin/team_member)."""
    body: dict[str, Any] = {}
    if display_name is not None:
        body["display_name"] = display_name
    if config:
        body["config_override_string"] = json.dumps(dict(config))
    data = _post(internal, "admin", "/internal/local-emulator/projects", body, "creating a project")
    return _project(internal, data, display_name=data.get("display_name"))


def project_for_config_file(internal: Project, path: str | Path) -> Project:
    """The project of an app's Stack config file: made on the first call for that absolute
    path, given the file's current config on every call (as upstream's emulator did)."""
    loaded = load_config_file(path)
    body = {"absolute_file_path": str(loaded.path), "config_string": json.dumps(loaded.config)}
    data = _post(
        internal, "client", "/internal/local-emulator/project", body, f"the project of {loaded.path}"
    )
    return _project(internal, data, config_file=loaded.path)
