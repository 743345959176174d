"""Moving a captured snapshot between homes and machines (``snapshot export`` / ``import``).

Export packs the snapshot the current image, QEMU, accelerator and restore method use (or a
named one) with snapshot_archive.py. Import reads the file's key first and refuses it unless
it equals the key this host computes for its own image with the same restore method; then it
unpacks into a staging directory, points every qcow2 layer's backing file at this store's
image, records that image in ``meta.json``, and renames the directory into place under the
snapshot's lock, as a capture does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path
from typing import Any

from .arch import ARCHES, resolve_arch
from .builder import COMPAT_NAME
from .config import Settings
from .errors import ImageError, SnapshotError, StackEmulatorError
from .home import Home
from .host import probe_host
from .images import Image, ImageStore, locked
from .log import Progress, get_logger
from .machine import qemu_img
from .prepare import snapshot_key
from .snapshot import SnapshotKey, choose_restore_method, lock_path
from .snapshot_archive import pack, read_header, read_meta, unpack

log = get_logger(__name__)

QCOW2_MAGIC = b"QFI\xfb"


def present_image(store: ImageStore, settings: Settings) -> Image:
    """The image the settings name, without building one: ``auto`` and ``compat`` take what the
    store has for the architecture; a path, URL or ``upstream`` resolve as usual."""
    spec, option = settings.image, settings.option("arch")
    if spec in ("auto", COMPAT_NAME):
        arch = resolve_arch(settings.arch, option)
        compat = store.root / f"{COMPAT_NAME}-{arch}" / "manifest.json"
        image = store.from_manifest(compat, COMPAT_NAME) if compat.exists() else None
        if image is None and spec == "auto":
            image = store.existing(arch)
        if image is None:
            raise ImageError(
                f"{store.root} has no {'compat ' if spec == COMPAT_NAME else ''}{arch} image. Build "
                f"one (`stack-emulator build-image --arch {arch}`) or pull one (`stack-emulator pull "
                f"--arch {arch}`) first."
            )
        return image
    return store.resolve(spec, accel=settings.accel, arch=settings.arch, arch_option=option)


def local_key(home: Home, settings: Settings, method: str | None = None) -> tuple[Image, SnapshotKey]:
    """This host's key for its image: with ``method`` (a file's), else the configured one."""
    image = present_image(home.image_store(), settings)
    host = probe_host(image.manifest.arch, settings.accel)
    try:
        chosen = choose_restore_method(method or settings.restore, set(host.capabilities))
    except SnapshotError as exc:
        raise SnapshotError(f"this host cannot restore a {method} snapshot: {exc}") from None
    return image, snapshot_key(image, host, chosen)


def export_snapshot(
    home: Home, settings: Settings, out: Path, snapshot_id: str | None = None
) -> dict[str, Any]:
    """Pack the snapshot ``snapshot_id`` (default: the one this host would resume) to ``out``."""
    if snapshot_id is None:
        _, key = local_key(home, settings)
        snapshot_id = key.id
    directory = home.snapshots / snapshot_id
    if not (directory / "meta.json").exists():
        raise SnapshotError(
            f"there is no captured snapshot {snapshot_id} in {home.snapshots}. Capture it with "
            "`stack-emulator capture` (same options), or pick one from `stack-emulator images`."
        )
    with Progress("snapshot export", log) as progress:
        home.locks.mkdir(parents=True, exist_ok=True)
        with locked(lock_path(home.locks, snapshot_id), f"capturing snapshot {snapshot_id}"):
            return pack(directory, out, progress)


def _differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    return [
        f"{name}: the file has {theirs.get(name)!r}, this host {ours.get(name)!r}"
        for name in sorted(set(theirs) | set(ours))
        if theirs.get(name) != ours.get(name)
    ]


def _key_fields(written: dict[str, Any]) -> dict[str, Any]:
    """A key's fields as a file wrote them, with the defaults of fields added to
    :class:`SnapshotKey` since (``arch``: files exported before arm64 guests were all amd64)."""
    defaults = {f.name: f.default for f in fields(SnapshotKey) if f.default is not MISSING}
    return {**defaults, **written}


def import_snapshot(home: Home, settings: Settings, source: Path) -> Path:
    """Import ``source`` into ``home``'s snapshot store; the snapshot's directory."""
    header = read_header(source)
    theirs = _key_fields(header["key"])
    if settings.arch == "auto" and theirs["arch"] in ARCHES:
        settings = replace(settings, arch=theirs["arch"])  # the file's guest, not the host's
    image, key = local_key(home, settings, theirs.get("restore_method"))
    ours = asdict(key)
    if theirs != ours:
        raise SnapshotError(
            f"{source} does not fit this host and image ({image.disk}):\n  "
            + "\n  ".join(_differences(theirs, ours))
            + "\nA snapshot only resumes with the same image, architecture, QEMU version, accelerator, "
            "CPU model, RAM and layout. Use the image it was captured from (--image), or capture one here "
            "with `stack-emulator capture`."
        )
    store = home.snapshot_store()
    store.root.mkdir(parents=True, exist_ok=True)
    staging = store.root / f".import-{os.getpid()}-{time.monotonic_ns()}"
    staging.mkdir()
    try:
        with Progress("snapshot import", log) as progress:
            unpack(source, staging, progress)
            modes = {e["path"]: int(e.get("mode", 0o644)) for e in header["files"]}
            for rel in modes:
                _rebase(staging / rel, image.disk)
            meta = read_meta(staging)
            if "image_disk" in meta:
                meta["image_disk"] = str(image.disk)
            if "key" in meta:
                meta["key"] = _key_fields(meta["key"])
            (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            for rel, mode in modes.items():
                os.chmod(staging / rel, mode)
            home.locks.mkdir(parents=True, exist_ok=True)
            with locked(key.lock(home.locks), f"capturing snapshot {key.id}"):
                target = store.path(key)
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
                if store.load(key) is None:
                    shutil.rmtree(target, ignore_errors=True)
                    raise SnapshotError(
                        f"{source} unpacked into a snapshot this plugin cannot load; export it again"
                    )
            progress.step(f"snapshot {key.id} in {target}")
            return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rebase(path: Path, image_disk: Path) -> None:
    """Point a qcow2 layer that has a backing file at this store's image (unsafe rebase: only
    the name changes; the key check proved that the image is the same)."""
    with path.open("rb") as f:
        if f.read(4) != QCOW2_MAGIC:
            return
    try:
        info = json.loads(
            subprocess.run(
                [qemu_img(), "info", "--output=json", "-U", str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        if not info.get("backing-filename") or info["backing-filename"] == str(image_disk):
            return
        cmd = [qemu_img(), "rebase", "-u", "-F", "qcow2", "-b", str(image_disk), str(path)]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        raise SnapshotError(
            f"`{' '.join(map(str, exc.cmd))}` failed: {exc.stderr.strip()}. Is qemu-img installed and "
            f"{image_disk} a readable qcow2?"
        ) from None
    except (ValueError, StackEmulatorError) as exc:
        raise SnapshotError(f"reading the qcow2 header of {path} failed: {exc}") from None
