"""The stacks the stack-emulator command runs, as the run directory describes them.

A stack started by ``start`` (in the foreground or ``--detach``ed) or ``run`` is one VM whose
run directory (``<home>/run/<ID>/``) holds, besides lifecycle's ``owner.json``, the stack's
description ``stack.json`` (:class:`StackRecord`): ports, URLs, keys, env, owner, image,
restore method. Other commands find it by ID (the run directory's name, or a unique prefix)
and read it; nothing here starts or stops a VM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import StackEmulatorError
from .home import Home
from .iso import write_atomic
from .lifecycle import Instance
from .manifest import Service
from .procs import ProcessId

STACK_FILE = "stack.json"
OWNER_FILE = "owner.json"
# How the stack's owner process runs: ``start --detach``, ``start``, ``run``.
MODES = ("detached", "foreground", "run")


class StackNotFound(StackEmulatorError):
    """No stack (or no single stack) matches what was asked for."""


@dataclass(frozen=True)
class StackRecord:
    """One stack of the command, as written to ``stack.json`` when it is ready."""

    id: str
    vm_dir: Path
    mode: str
    owner_pid: int
    owner_start: int | None
    image: str
    restore: str  # mapped-ram, stream, or cold
    started: float
    ports: dict[str, int]
    project_id: str
    keys: dict[str, str]
    env: dict[str, str]
    services: list[dict[str, Any]]  # manifest.Service fields
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    @property
    def owner(self) -> ProcessId:
        return ProcessId(self.owner_pid, self.owner_start)

    @property
    def urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{port}" for name, port in self.ports.items()}

    def health_checks(self) -> list[tuple[Service, int]]:
        return [(Service(**s), self.ports[s["name"]]) for s in self.services]

    @classmethod
    def of(cls, inst: Instance, mode: str) -> StackRecord:
        h, prepared = inst.handle, inst.prepared
        owner = ProcessId.current()
        return cls(
            id=h.vm_dir.name,
            vm_dir=h.vm_dir,
            mode=mode,
            owner_pid=owner.pid,
            owner_start=owner.start,
            image=f"{prepared.image.source} ({prepared.image.disk})",
            restore=inst.snapshot.method if inst.snapshot is not None and h.boot == "resume" else "cold",
            started=time.time(),
            ports=dict(h.ports),
            project_id=h.project_id,
            keys={
                "publishable_client_key": h.publishable_client_key,
                "secret_server_key": h.secret_server_key,
                "super_secret_admin_key": h.super_secret_admin_key,
            },
            env=h.env(),
            services=[asdict(s) for s in prepared.image.manifest.services],
            timings={k: round(v, 3) for k, v in inst.timings.items()},
            warnings=list(inst.warnings),
            host=h.host,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vm_dir"] = str(self.vm_dir)
        data["urls"] = self.urls
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackRecord:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["vm_dir"] = Path(fields["vm_dir"])
        return cls(**fields)

    def write(self) -> None:
        # It holds the stack's keys: readable by this user only.
        write_atomic(self.vm_dir / STACK_FILE, json.dumps(self.to_dict(), indent=2).encode(), mode=0o600)

    @classmethod
    def read(cls, vm_dir: Path) -> StackRecord | None:
        """The record in ``vm_dir``; None while the stack is starting or once it is gone."""
        path = vm_dir / STACK_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackEmulatorError(
                f"{path} cannot be read ({exc}); stop that stack with `stack-emulator stop "
                f"{vm_dir.name}` or remove the directory after `stack-emulator reap`"
            ) from None


def read_owner(vm_dir: Path) -> dict[str, Any] | None:
    """lifecycle's ``owner.json`` of a VM (owner, QEMU, session, ports, image), or None."""
    try:
        data: dict[str, Any] = json.loads((vm_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


def vm_dirs(home: Home) -> list[Path]:
    """Every VM's run directory under the home (pytest workers' and this command's)."""
    if not home.run.is_dir():
        return []
    return sorted(p for p in home.run.iterdir() if p.is_dir() and (p / OWNER_FILE).exists())


def stacks(home: Home) -> list[StackRecord]:
    """The command's stacks whose owner still runs them."""
    found = []
    for vm_dir in vm_dirs(home):
        record = StackRecord.read(vm_dir)
        if record is not None and record.owner.alive():
            found.append(record)
    return found


def find_stack(home: Home, ident: str | None, command: str) -> StackRecord:
    """The stack named by ``ident`` (a run directory's name or a unique prefix); without
    ``ident``, the only running one. Errors say what there is and what to type."""
    if ident is None:
        running = stacks(home)
        if len(running) == 1:
            return running[0]
        if not running:
            raise StackNotFound(
                f"no stack is running under {home.run}; start one with `stack-emulator start "
                "--detach` (`stack-emulator ps` lists every VM, pytest sessions' too)"
            )
        raise StackNotFound(
            f"{len(running)} stacks are running ({', '.join(r.id for r in running)}); name one: "
            f"`stack-emulator {command} ID`"
        )
    candidates = [p for p in vm_dirs(home) if p.name == ident] or [
        p for p in vm_dirs(home) if p.name.startswith(ident)
    ]
    if not candidates:
        raise StackNotFound(
            f"no stack {ident!r} under {home.run} (stopped, or never started); "
            "`stack-emulator ps` lists the VMs there"
        )
    if len(candidates) > 1:
        raise StackNotFound(
            f"{ident!r} matches {len(candidates)} stacks ({', '.join(p.name for p in candidates)}); "
            "give more of the ID"
        )
    vm_dir = candidates[0]
    record = StackRecord.read(vm_dir)
    if record is None:
        owner = read_owner(vm_dir) or {}
        session = owner.get("session", "?")
        raise StackNotFound(
            f"{vm_dir.name} is not a stack of this command: it is a VM of pytest session {session} "
            f"(worker {owner.get('worker', '?')}), or one still starting. A pytest session stops its "
            "VMs itself; `stack-emulator reap` stops those whose session is gone"
        )
    return record


@dataclass(frozen=True)
class VMInfo:
    """One VM under the home, for ``stack-emulator ps``."""

    id: str
    owner: str
    ports: str
    image: str
    restore: str
    age: str
    state: str


def describe_vms(home: Home, now: float | None = None) -> list[VMInfo]:
    """Every VM's run directory under the home: pytest workers', captures', this command's."""
    now = time.time() if now is None else now
    rows = []
    for vm_dir in vm_dirs(home):
        owner = read_owner(vm_dir)
        if owner is None:
            continue
        try:
            stack = StackRecord.read(vm_dir)
        except StackEmulatorError:
            stack = None
        owner_id = ProcessId(owner["owner"]["pid"], owner["owner"]["start"])
        qemu_alive = ProcessId(owner["qemu"]["pid"], owner["qemu"]["start"]).alive()
        if stack is not None:
            who = f"pid {owner_id.pid} ({stack.mode})"
        elif owner.get("session") == "capture":
            who = f"pid {owner_id.pid} (capture)"
        else:
            who = f"pid {owner_id.pid} (pytest {owner.get('session')} {owner.get('worker')})"
        ports = sorted((owner.get("ports") or {}).values())
        rows.append(VMInfo(
            id=vm_dir.name,
            owner=who,
            ports=f"{ports[0]}-{ports[-1]}" if ports else "?",
            image=str(owner.get("image") or "?"),
            restore=str(owner.get("restore") or "?"),
            age=age(owner.get("created", now), now),
            state=_state(owner_id.alive(), qemu_alive, _kept(vm_dir)),
        ))  # fmt: skip
    return rows


def _kept(vm_dir: Path) -> str | None:
    """Why lifecycle kept a stopped VM's run directory (a failed test, a failed reset)."""
    try:
        return (vm_dir / "kept").read_text().strip() or "kept"
    except OSError:
        return None


def _state(owner_alive: bool, qemu_alive: bool, kept: str | None) -> str:
    if kept and not qemu_alive:
        return f"kept: {kept} (`stack-emulator reap --all` removes it)"
    if owner_alive and qemu_alive:
        return "running"
    if qemu_alive:
        return "owner gone (`stack-emulator reap` stops it)"
    if owner_alive:
        return "QEMU exited"
    return "stopped (`stack-emulator reap` removes it)"


def age(started: float, now: float) -> str:
    """``42s``, ``7m``, ``3h05m``."""
    seconds = max(0, int(now - started))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
