"""RAM snapshots: capture once, resume many times (CONTRACT §3-4, §5.1, §5.4).

A snapshot is a directory ``<home>/snapshots/<id>/`` holding

- ``disk.qcow2``: the capture VM's overlay, kept read-only as the backing file of every
  worker's overlay, so RAM and disk agree (§5.1);
- the migration file, by restore method:
  - ``template``: ``state.bin``, the device state alone, and ``memory.img``, the guest's RAM
    as the capture VM left it in its file-backed memory. Every clone maps ``memory.img``
    privately and read-only (copy on write), so clean pages are shared through the page
    cache and a resume costs the same whatever the RAM size ("VM templating");
  - ``mapped-ram``: ``ram.raw``, RAM and devices in a seekable file;
  - ``stream``: ``ram.stream``, a plain migration stream;
- ``meta.json``: the key and the guest ports, written last.

The directory is assembled under a temporary name and renamed into place, so an interrupted
capture never leaves a snapshot that looks valid. ``<id>`` hashes everything that must match
for a resume to load: image digest, architecture, QEMU version, accelerator, CPU model, RAM,
vCPUs, layout version and restore method.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import wait
from .errors import MachineError, SnapshotError
from .log import get_logger
from .machine import Machine
from .qmp import QMPConnection

log = get_logger(__name__)

TEMPLATE = "template"
MAPPED_RAM = "mapped-ram"
STREAM = "stream"
RESTORE_METHODS = ("auto", TEMPLATE, MAPPED_RAM, STREAM)
# memory-backend-file's ``rom`` property, which a read-only private RAM file needs, is 8.2's.
TEMPLATE_MIN_QEMU = (8, 2)


@dataclass(frozen=True)
class SnapshotKey:
    image_digest: str
    qemu_version: str
    accel: str
    cpu: str
    ram_mb: int
    vcpus: int
    layout_version: int
    restore_method: str
    # Last, with a default: older keys have none (all amd64); the id hashes it, so they recapture once.
    arch: str = "amd64"

    @property
    def id(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    @property
    def migration_file(self) -> str:
        """The migration file's name: device state alone (template), RAM and devices in a
        seekable file (mapped-ram), or a plain stream."""
        return {TEMPLATE: "state.bin", MAPPED_RAM: "ram.raw"}.get(self.restore_method, "ram.stream")

    @property
    def memory_file(self) -> str | None:
        """The guest RAM file every clone maps (template only)."""
        return "memory.img" if self.restore_method == TEMPLATE else None

    def lock(self, locks: Path) -> Path:
        """The file lock held while this snapshot is captured, discarded or pruned."""
        return lock_path(locks, self.id)


def lock_path(locks: Path, snapshot_id: str) -> Path:
    return locks / f"snapshot-{snapshot_id}.lock"


@dataclass(frozen=True)
class Snapshot:
    directory: Path
    key: SnapshotKey
    guest_ports: dict[str, int]
    capture_seconds: float
    boot_seconds: float = 0.0
    # What the capture recorded beside the state (a checkpoint's name and seed's result).
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def method(self) -> str:
        """How the state was written and is restored: template, mapped-ram or stream."""
        return self.key.restore_method

    @property
    def migration(self) -> Path:
        return self.directory / self.key.migration_file

    @property
    def memory(self) -> Path | None:
        """The guest RAM file a clone maps read-only (template), else None."""
        name = self.key.memory_file
        return None if name is None else self.directory / name

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.migration, self.memory, self.disk) if p is not None]

    def restore(self, machine: Machine, timeout: float, qemu_version: str = "") -> float:
        """Load this snapshot into ``machine`` (started with ``-incoming defer``, and with
        :attr:`memory` as its RAM for a template) and run it."""
        return migrate_from_file(machine, self.migration, self.method, timeout, qemu_version=qemu_version)

    def sizes(self) -> dict[str, int]:
        """Logical and allocated bytes of the snapshot's files together."""
        logical = allocated = 0
        for path in self.files:
            st = path.stat()
            logical += st.st_size
            allocated += st.st_blocks * 512
        return {"logical": logical, "allocated": allocated}


def choose_restore_method(
    requested: str, capabilities: set[str], qemu_version: str = "", option: str = "--stack-emulator-restore"
) -> str:
    """Templating where QEMU can (x-ignore-shared, and 8.2's read-only RAM files), else
    mapped-ram + multifd, else a plain stream (§5.4). ``bench`` measures all three.
    ``option``: the front end's option that sets the method, for messages."""
    # ``requested`` is one of RESTORE_METHODS: config checked it.
    has_template = "x-ignore-shared" in capabilities and _version(qemu_version) >= TEMPLATE_MIN_QEMU
    has_mapped_ram = {"mapped-ram", "multifd"} <= capabilities
    if requested == "auto":
        return TEMPLATE if has_template else MAPPED_RAM if has_mapped_ram else STREAM
    if requested == TEMPLATE and not has_template:
        raise SnapshotError(
            f"this QEMU ({qemu_version or 'unknown version'}) cannot restore a template: it needs the "
            f"x-ignore-shared migration capability and QEMU 8.2 or newer; use "
            f"{option} mapped-ram or stream"
        )
    if requested == MAPPED_RAM and not has_mapped_ram:
        raise SnapshotError(
            "this QEMU has no mapped-ram/multifd migration capability; use QEMU 9.0 or newer, "
            f"or {option} stream"
        )
    return requested


class SnapshotLoadError(SnapshotError):
    """QEMU rejected the snapshot's state: the file is corrupt or does not fit this VM."""


def migration_uri(path: Path, method: str, incoming: bool, qemu_version: str = "") -> str:
    """``file:`` (QEMU 8.2+, needed by mapped-ram), else ``exec:cat`` for a plain stream."""
    if method == MAPPED_RAM or _version(qemu_version) >= (8, 2):
        return f"file:{path}"
    quoted = shlex.quote(str(path))
    return f"exec:cat {quoted}" if incoming else f"exec:cat > {quoted}"


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (99,)


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: SnapshotKey) -> Path:
        return self.root / key.id

    def load(self, key: SnapshotKey) -> Snapshot | None:
        """The snapshot for ``key`` if a complete, matching one exists."""
        directory = self.path(key)
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if meta.get("key") != asdict(key):
            return None
        snap = Snapshot(
            directory,
            key,
            dict(meta["guest_ports"]),
            float(meta.get("capture_seconds", 0)),
            float(meta.get("boot_seconds", 0)),
            dict(meta.get("extra") or {}),
        )
        if not all(path.exists() for path in snap.files):
            return None
        if snap.migration.stat().st_size != meta.get("ram_bytes"):
            return None
        if snap.memory is not None and snap.memory.stat().st_size != key.ram_mb << 20:
            return None
        return snap

    def staging(self) -> Path:
        path = self.root / f".capture-{os.getpid()}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path

    def commit(
        self,
        staging: Path,
        key: SnapshotKey,
        guest_ports: Mapping[str, int],
        seconds: float,
        boot_seconds: float = 0.0,
        image_disk: Path | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        ram = staging / key.migration_file
        os.chmod(staging / "disk.qcow2", 0o444)
        if key.memory_file is not None:
            # Clones map it privately: it must never change while one runs.
            os.chmod(staging / key.memory_file, 0o444)
        meta = {
            "key": asdict(key),
            "guest_ports": dict(guest_ports),
            "capture_seconds": round(seconds, 3),
            "boot_seconds": round(boot_seconds, 3),
            "image_disk": str(image_disk) if image_disk else None,
            "ram_bytes": ram.stat().st_size,
            "created": time.time(),
            "extra": dict(extra or {}),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        target = self.path(key)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        snap = self.load(key)
        assert snap is not None
        return snap

    def discard(self, key: SnapshotKey) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    def prune(self, keep: SnapshotKey, locks: Path) -> list[Path]:
        """Remove stale snapshots: those of the same image and restore method under another key
        (older QEMU, other accelerator...), and those whose image file is gone. A snapshot
        whose lock another process holds is left alone. Snapshots for the other restore method
        stay."""
        removed = []
        for meta_path in sorted(self.root.glob("[!.]*/meta.json")):
            with contextlib.suppress(ValueError, KeyError, OSError):
                meta = json.loads(meta_path.read_text())
                other = meta["key"]
                if other == asdict(keep):
                    continue
                stale = other["image_digest"] == keep.image_digest and (
                    other["restore_method"] == keep.restore_method
                )
                image = meta.get("image_disk")
                orphan = image is not None and not Path(image).exists()
                if not (stale or orphan):
                    continue
                lock = FileLock(str(lock_path(locks, meta_path.parent.name)))
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                try:
                    shutil.rmtree(meta_path.parent, ignore_errors=True)
                    removed.append(meta_path.parent)
                finally:
                    lock.release()
        return removed


def _set_caps(q: QMPConnection, method: str, channels: int) -> None:
    if method == TEMPLATE:
        # RAM in a shared file is left out of the stream (capture) and mapped, not loaded (resume).
        q.execute("migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": True}])
    elif method == MAPPED_RAM:
        q.execute(
            "migrate-set-capabilities",
            capabilities=[
                {"capability": "mapped-ram", "state": True},
                {"capability": "multifd", "state": True},
            ],
        )
        q.execute("migrate-set-parameters", **{"multifd-channels": channels})


def migrate_to_file(
    machine: Machine, path: Path, method: str, timeout: float, channels: int = 2, qemu_version: str = ""
) -> float:
    """Stop the VM and write its state to ``path``; returns seconds. QEMU is told to quit."""
    started = time.monotonic()
    with machine.qmp(timeout=timeout) as q:
        q.execute("stop")
        _set_caps(q, method, channels)
        q.execute("migrate", uri=migration_uri(path, method, incoming=False, qemu_version=qemu_version))
        last: dict[str, Any] = {}

        def completed() -> bool | None:
            info: dict[str, Any] = q.execute("query-migrate")
            last.update(info)
            status = info.get("status")
            if status in ("failed", "cancelled"):
                raise SnapshotError(
                    f"migration to {path} {status}: {info.get('error-desc', 'no reason given')}"
                )
            return True if status == "completed" else None

        wait.poll(
            completed,
            wait.Deadline(timeout, started),
            what=f"the migration to {path}",
            interval=0.02,
            on_timeout=lambda: SnapshotError(
                f"migration to {path} still {last.get('status')} after {timeout:.0f} s"
            ),
        )
        seconds = time.monotonic() - started
        with contextlib.suppress(Exception):
            q.execute("quit")
    machine.wait(10)
    return seconds


def migrate_from_file(
    machine: Machine, path: Path, method: str, timeout: float, channels: int = 2, qemu_version: str = ""
) -> float:
    """Load state into a VM started with ``-incoming defer`` and run it; returns seconds."""
    started = time.monotonic()
    try:
        _load(machine, path, method, timeout, channels, qemu_version, started)
    except MachineError as exc:
        # A monitor that hangs up mid-load is QEMU exiting on bad state; give it a moment.
        if machine.wait(2.0):
            raise SnapshotLoadError(f"QEMU exited while loading {path}: {machine.output()[-500:]}") from None
        raise SnapshotError(f"loading {path}: {exc}") from None
    return time.monotonic() - started


def _load(
    machine: Machine,
    path: Path,
    method: str,
    timeout: float,
    channels: int,
    qemu_version: str,
    started: float,
) -> None:
    with machine.qmp(timeout=timeout) as q:
        _set_caps(q, method, channels)
        q.execute(
            "migrate-incoming", uri=migration_uri(path, method, incoming=True, qemu_version=qemu_version)
        )
        last = ""

        def running() -> bool | None:
            nonlocal last
            status = last = q.execute("query-status")["status"]
            if status == "running":
                return True
            if status in ("paused", "postmigrate", "prelaunch"):
                mig = q.execute("query-migrate")
                if mig.get("status") in ("completed", None):
                    q.execute("cont")
                    return True
            if status not in ("inmigrate", "paused", "postmigrate", "prelaunch", "finish-migrate"):
                raise SnapshotError(f"VM is in state {status!r} while loading {path}")
            mig = q.execute("query-migrate")
            if mig.get("status") in ("failed", "cancelled"):
                raise SnapshotLoadError(f"loading {path} failed: {mig.get('error-desc', 'no reason given')}")
            return None

        wait.poll(
            running,
            wait.Deadline(timeout, started),
            what=f"loading {path}",
            interval=0.01,
            alive=machine.running,
            on_exit=lambda: SnapshotLoadError(f"QEMU exited while loading {path}: {machine.output()[-500:]}"),
            on_timeout=lambda: SnapshotError(
                f"loading {path} did not finish within {timeout:.0f} s (state {last})"
            ),
        )
