"""The handle a test gets: one running stack's URLs, ports, keys, clients and env."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from .contract import INTERNAL_PROJECT_ID
from .errors import VMGone
from .mailbox import Mailbox
from .projects import Project, create_project, project_for_config_file

ACCESS_TYPES = ("client", "server", "admin")


class Control(Protocol):
    """What the core that started a stack lets its handle do to the VM (lifecycle.Instance)."""

    def reset(self) -> float: ...

    def checkpoint(self, name: str, seed: Callable[[StackEmulator], Any]) -> Any: ...

    def gone(self) -> str | None: ...


@dataclass
class StackEmulator:
    """One running stack, as a test sees it."""

    ports: dict[str, int]
    project_id: str
    publishable_client_key: str
    secret_server_key: str = field(repr=False)  # never in a traceback or a log
    super_secret_admin_key: str = field(repr=False)
    vm_dir: Path
    boot: str = "resume"
    host: str = "127.0.0.1"
    # The internal project's keys once project_id and the keys are a config file's project.
    internal: Project | None = field(default=None, repr=False)
    # The app config file whose project this handle uses (use_config_file), kept across reset().
    config_file: Path | None = None
    # Resets and checkpoints the VM, and says whether it still runs; set by the core that started it.
    control: Control | None = field(default=None, repr=False, compare=False)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def dashboard_url(self) -> str:
        return self.url("dashboard")

    @property
    def backend_url(self) -> str:
        return self.url("backend")

    @property
    def minio_url(self) -> str:
        return self.url("minio")

    @property
    def inbucket_url(self) -> str:
        return self.url("inbucket")

    @property
    def mock_oauth_url(self) -> str:
        return self.url("mock_oauth")

    @property
    def serial_log(self) -> Path:
        return self.vm_dir / "serial.log"

    @property
    def mail(self) -> Mailbox:
        """The mails the stack sent, with their codes and links: ``mail.wait_for(to=..., kind=...)``."""
        console = f"{self.dashboard_url}/console/"
        if self.project_id != INTERNAL_PROJECT_ID:
            console += "?" + urllib.parse.urlencode({"project": self.project_id})
        return Mailbox(self.inbucket_url, console_url=console)

    def headers(self, access: str = "server") -> dict[str, str]:
        if access not in ACCESS_TYPES:
            raise ValueError(f"access must be one of {', '.join(ACCESS_TYPES)}, not {access!r}")
        headers = {
            "x-stack-project-id": self.project_id,
            "x-stack-access-type": access,
            "x-stack-publishable-client-key": self.publishable_client_key,
        }
        if access in ("server", "admin"):
            headers["x-stack-secret-server-key"] = self.secret_server_key
        if access == "admin":
            headers["x-stack-super-secret-admin-key"] = self.super_secret_admin_key
        return headers

    def ensure_running(self) -> None:
        """Raise :class:`VMGone`, naming the worker and its serial log, if the VM has exited."""
        reason = self.control.gone() if self.control is not None else None
        if reason is not None:
            raise VMGone(reason)

    def client(self, access: str = "server", **kwargs: Any) -> httpx.Client:
        """An httpx client on the backend with the ``x-stack-*`` headers for ``access``. A request
        that cannot reach a VM that has exited raises :class:`VMGone` instead of a bare
        connection error."""
        self.ensure_running()
        headers = {**self.headers(access), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30.0)
        kwargs.setdefault("transport", _CheckedTransport(self.ensure_running))
        return httpx.Client(base_url=self.backend_url, headers=headers, **kwargs)

    def env(self) -> dict[str, str]:
        """Environment variables an app under test needs, like upstream's `stack emulator run`."""
        env = {
            "STACK_API_URL": self.backend_url,
            "STACK_PROJECT_ID": self.project_id,
            "STACK_PUBLISHABLE_CLIENT_KEY": self.publishable_client_key,
            "STACK_SECRET_SERVER_KEY": self.secret_server_key,
        }
        for prefix in ("NEXT_PUBLIC_", "VITE_", "EXPO_PUBLIC_"):
            env[f"{prefix}STACK_API_URL"] = self.backend_url
            env[f"{prefix}STACK_PROJECT_ID"] = self.project_id
            env[f"{prefix}STACK_PUBLISHABLE_CLIENT_KEY"] = self.publishable_client_key
        return env

    def reset(self) -> float:
        """Put the stack back into the state it was captured in (or last checkpointed in):
        every user, team, project and mail made since is gone. The URLs, ports and handle stay;
        the keys are the snapshot's again (fresh ones with rotation). Returns seconds."""
        return self._control().reset()

    def checkpoint(self, name: str, seed: Callable[[StackEmulator], Any]) -> Any:
        """Put the stack into the state ``seed(stack)`` makes from the captured state, captured
        once as a checkpoint: every worker, and every later run, resumes it instead of seeding
        again, until the seeding code or the base snapshot changes. reset() comes back to it.
        Returns what ``seed`` returned (it must be JSON) when the checkpoint was captured."""
        return self._control().checkpoint(name, seed)

    def _control(self) -> Control:
        if self.control is None:
            raise RuntimeError("this handle was not started by stack-emulator; it has no VM to control")
        return self.control

    def set_project(self, project_id: str, keys: Mapping[str, str]) -> None:
        """Use ``project_id`` with ``keys`` (``publishable_client_key``, ``secret_server_key``,
        ``super_secret_admin_key``) as the internal project."""
        self.internal = None
        self.project_id = project_id
        self.publishable_client_key = keys["publishable_client_key"]
        self.secret_server_key = keys["secret_server_key"]
        self.super_secret_admin_key = keys["super_secret_admin_key"]

    def internal_project(self) -> Project:
        """The ``internal`` project (its keys make the other projects)."""
        if self.internal is not None:
            return self.internal
        keys = (self.publishable_client_key, self.secret_server_key, self.super_secret_admin_key)
        return Project(self.backend_url, self.project_id, *keys, display_name="Stack Dashboard")

    def new_project(
        self, config: Mapping[str, Any] | None = None, *, display_name: str | None = None
    ) -> Project:
        """A fresh project with its own keys, users and teams; ``config`` in Stack Auth's
        format, e.g. ``{"auth.allowSignUp": False}``."""
        return create_project(self.internal_project(), config, display_name=display_name)

    def use_config_file(self, path: str | Path) -> Project:
        """Make ``project_id`` and the keys those of an app's Stack config file's project."""
        internal = self.internal_project()
        project = project_for_config_file(internal, path)
        self.config_file = Path(path)
        self.internal = internal
        self.project_id = project.project_id
        self.publishable_client_key = project.publishable_client_key
        self.secret_server_key = project.secret_server_key
        self.super_secret_admin_key = project.super_secret_admin_key
        return project


class _CheckedTransport(httpx.HTTPTransport):
    """On a connection failure, says first whether the VM behind it has exited."""

    def __init__(self, check: Callable[[], None]) -> None:
        super().__init__()
        self._check = check

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            self._check()
            raise
