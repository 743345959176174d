"""User checkpoints: a snapshot derived from the session's snapshot by the user's seeding code.

A suite seeds data once (a project, some users) and captures that state; every worker, and
every later run, resumes the seeded state directly instead of seeding again. A checkpoint lives
in ``<home>/checkpoints/<id>/`` with the same files as a snapshot (snapshot.py); its disk layer
is backed by the base snapshot's. It is keyed by the user's name for it, the base snapshot's
key and a hash of the seeding code, so a change to either captures it again.

The seeding function gets the handle (``StackEmulator``) of a VM freshly resumed from the base
snapshot; what it returns (JSON) is stored with the checkpoint and returned on every reuse, so
ids and keys it made are known without seeding again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import marshal
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StackEmulatorError
from .images import locked
from .log import Progress, Warn, get_logger
from .snapshot import Snapshot, SnapshotKey, migrate_to_file
from .snapshot_archive import data_ranges

if TYPE_CHECKING:
    from .handle import StackEmulator
    from .lifecycle import Instance

log = get_logger(__name__)

Seed = Callable[["StackEmulator"], Any]


class CheckpointError(StackEmulatorError):
    """A checkpoint could not be captured: the seeding code failed or its result is not JSON."""


def seed_digest(seed: Seed) -> str:
    """A hash of the seeding code: its source where Python has it, else its bytecode."""
    try:
        code = inspect.getsource(seed).encode()
    except (OSError, TypeError):
        code = marshal.dumps(seed.__code__)
    name = f"{getattr(seed, '__module__', '')}.{getattr(seed, '__qualname__', '')}".encode()
    return hashlib.sha256(name + b"\0" + code).hexdigest()


def checkpoint_key(base: SnapshotKey, name: str, seed: Seed) -> SnapshotKey:
    """The base's key with what it descends from: the base, the name and the seeding code."""
    lineage = json.dumps([base.id, name, seed_digest(seed)]).encode()
    return replace(base, image_digest=hashlib.sha256(lineage).hexdigest())


def take(inst: Instance, name: str, seed: Seed, warn: Warn | None = None) -> Any:
    """Put ``inst``'s VM into the checkpoint ``name``: resume it if it exists, else capture it
    first (once, under a lock every worker and session shares). Later resets come back to it.
    Returns what ``seed`` returned when the checkpoint was captured."""
    warn = warn or log.warning
    if not name or "/" in name:
        raise CheckpointError(f"a checkpoint name must be non-empty and have no '/', not {name!r}")
    base = inst.prepared.snapshot
    if base is None:
        # Cold boots only (--stack-emulator-cold, or no snapshot): seed this VM, nothing to keep.
        warn(f"checkpoint {name!r}: no snapshot to derive it from, so it is seeded on this VM and not kept")
        inst.reset(warn)
        return _run_seed(seed, inst, name)
    home = inst.prepared.home
    store = home.checkpoint_store()
    key = checkpoint_key(base.key, name, seed)
    snap = store.load(key)
    if snap is None:
        with locked(key.lock(home.locks), f"capturing checkpoint {name!r}"):
            snap = store.load(key)
            if snap is None:
                try:
                    snap = _capture(inst, base, key, name, seed, warn)
                except BaseException:
                    # Leave the worker a clean VM, not a half-seeded one.
                    with contextlib.suppress(Exception):
                        inst.reset(warn)
                    raise
                for stale in _stale(store.root, name, key):
                    shutil.rmtree(stale, ignore_errors=True)
    else:
        log.info("checkpoint %r: reusing %s", name, snap.directory)
    inst.snapshot = snap
    inst.reset(warn)
    return snap.extra.get("value")


def _run_seed(seed: Seed, inst: Instance, name: str) -> Any:
    try:
        return seed(inst.handle)
    except Exception as exc:
        raise CheckpointError(
            f"the seeding code of checkpoint {name!r} ({getattr(seed, '__qualname__', seed)}) raised "
            f"{type(exc).__name__}: {exc}. Fix it and run again; nothing was kept."
        ) from exc


def _capture(inst: Instance, base: Snapshot, key: SnapshotKey, name: str, seed: Seed, warn: Warn) -> Snapshot:
    store = inst.prepared.home.checkpoint_store()
    staging = store.staging()
    try:
        with Progress("checkpoint", log) as progress:
            memory = None
            if base.memory is not None and key.memory_file is not None:
                # A template's capture VM writes its RAM through to a file: start from a
                # private copy of the base's (sparse), never from the base's own.
                memory = staging / key.memory_file
                progress.step(f"{name!r}: copying the base RAM file {base.memory}")
                _sparse_copy(base.memory, memory)
            progress.step(
                f"{name!r}: resuming the base snapshot on ports {inst.block.first}-{inst.block.first + 4}"
            )
            inst.relaunch(base, warn, capture_memory=memory)
            if inst.handle.boot != "resume":
                raise CheckpointError(
                    f"checkpoint {name!r}: the base snapshot did not resume; nothing was kept"
                )
            progress.step(f"{name!r}: running {getattr(seed, '__qualname__', seed)}")
            value = _run_seed(seed, inst, name)
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise CheckpointError(
                    f"checkpoint {name!r}: the seeding code returned {type(value).__name__}, which is not "
                    f"JSON ({exc}); return ids, keys and strings, or None"
                ) from None
            started = time.monotonic()
            took = migrate_to_file(inst.machine, staging / key.migration_file, key.restore_method,
                                   timeout=300, qemu_version=inst.prepared.host.version)  # fmt: skip
            inst.machine.kill()
            shutil.move(inst.vm_dir / "disk.qcow2", staging / "disk.qcow2")
            snap = store.commit(staging, key, base.guest_ports, took, extra={"name": name, "value": value})
            progress.step(f"{name!r}: captured {key.id} in {time.monotonic() - started:.2f} s")
            return snap
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stale(root: Path, name: str, keep: SnapshotKey) -> list[Path]:
    """Earlier checkpoints of the same name (the seeding code or the base changed)."""
    stale = []
    for meta_path in sorted(root.glob("[!.]*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("extra") or {}).get("name") == name and meta_path.parent.name != keep.id:
            stale.append(meta_path.parent)
    return stale


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy a mostly empty file, keeping its holes (in the kernel where ``os.copy_file_range``
    exists, Linux; by reads and writes elsewhere, macOS)."""
    copy_range = getattr(os, "copy_file_range", None)
    with source.open("rb") as src, target.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        for start, end in data_ranges(src.fileno(), size):
            while start < end:
                if copy_range is not None:
                    copied = copy_range(src.fileno(), dst.fileno(), end - start, start, start)
                else:
                    copied = os.pwrite(
                        dst.fileno(), os.pread(src.fileno(), min(end - start, 1 << 20), start), start
                    )
                if copied == 0:
                    raise OSError(f"copying {source} to {target} stopped at byte {start} of {size}")
                start += copied
        dst.truncate(size)
