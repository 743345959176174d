"""What a home holds: its images and snapshots, their sizes, and which snapshots can still be used.

Sizes come in two kinds: logical (what ``ls`` shows) and allocated (what the disk holds; RAM
files and overlays are sparse). A snapshot is usable when an image has its image digest (one
in the store, or the file it was captured from, still unchanged) and the installed QEMU has
its version; ``prune`` removes the others, and
staging directories whose process is gone. Snapshot directories are read generically: every
file in them counts, whatever the restore method wrote.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .arch import ARCHES
from .builder import COMPAT_NAME
from .errors import HostSetupError, ImageError
from .home import Home
from .images import Image, ImageStore
from .machine import qemu_binary, qemu_version
from .procs import start_time
from .snapshot import lock_path


@dataclass(frozen=True)
class Sizes:
    logical: int = 0
    allocated: int = 0

    def __add__(self, other: Sizes) -> Sizes:
        return Sizes(self.logical + other.logical, self.allocated + other.allocated)


def sizes(path: Path) -> Sizes:
    """Logical and allocated bytes of a file, or of every file under a directory (no symlinks)."""
    if path.is_symlink() or not path.exists():
        return Sizes()
    if path.is_file():
        st = path.stat()
        return Sizes(st.st_size, st.st_blocks * 512)
    total = Sizes()
    for child in path.rglob("*"):
        if child.is_file() and not child.is_symlink():
            total += sizes(child)
    return total


@dataclass(frozen=True)
class ImageEntry:
    image: Image
    sizes: Sizes
    current: bool  # what `auto` / `compat` / `upstream` resolve to now
    origin: str


@dataclass(frozen=True)
class SnapshotEntry:
    directory: Path
    key: dict[str, Any]
    sizes: Sizes
    problem: str | None  # why no current QEMU or image can use it; None: usable
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.problem is None


def list_images(store: ImageStore) -> list[ImageEntry]:
    """Every compat build and every pulled or copied ``*.qcow2`` in the store."""
    entries = []
    current_compat = {(store.root / f"{COMPAT_NAME}-{arch}").resolve() for arch in ARCHES}
    for manifest in sorted(store.root.glob(f"{COMPAT_NAME}-*/manifest.json")):
        if manifest.parent.is_symlink():
            continue
        with contextlib.suppress(ImageError):
            image = store.from_manifest(manifest, COMPAT_NAME)
            current = manifest.parent.resolve() in current_compat
            entries.append(ImageEntry(image, sizes(manifest.parent), current, "built here"))
    for disk in sorted(store.root.glob("*.qcow2")):
        with contextlib.suppress(ImageError):
            image = store.from_disk(disk)
            extra = [
                p for p in disk.parent.glob(disk.name + ".*") if not p.name.endswith((".part", ".unpack"))
            ]
            total = sum((sizes(p) for p in extra), sizes(disk))
            entries.append(ImageEntry(image, total, True, _origin(disk)))
    return entries


def _origin(disk: Path) -> str:
    try:
        source = json.loads(disk.with_name(disk.name + ".source.json").read_text())
    except (OSError, ValueError):
        return "copied into the store"
    if source.get("tag"):
        return f"pulled from {source.get('repo')} {source['tag']}"
    return f"pulled from {source.get('url')}"


def _installed_qemu() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for arch in ARCHES:
        try:
            versions[arch] = qemu_version(qemu_binary(arch))
        except HostSetupError:
            versions[arch] = None
    return versions


def list_snapshots(home: Home, images: list[ImageEntry] | None = None) -> list[SnapshotEntry]:
    """Every snapshot directory and leftover staging directory under ``home/snapshots``."""
    images = list_images(home.image_store()) if images is None else images
    arch_of = {entry.image.digest: entry.image.manifest.arch for entry in images}
    qemu = _installed_qemu()
    entries = []
    root = home.snapshots
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not directory.is_dir():
            continue
        if directory.name.startswith("."):
            entries.append(SnapshotEntry(directory, {}, sizes(directory), _staging_problem(directory.name)))
            continue
        try:
            meta = json.loads((directory / "meta.json").read_text())
            key = dict(meta["key"])
        except (OSError, ValueError, KeyError, TypeError):
            entries.append(
                SnapshotEntry(directory, {}, sizes(directory), "no readable meta.json (incomplete)")
            )
            continue
        problem = None
        digest = key.get("image_digest")
        if digest not in arch_of and (arch := _image_outside(home, meta, str(digest))) is not None:
            arch_of[str(digest)] = arch
        if digest not in arch_of:
            problem = f"no image in the store has digest {str(digest)[:12]}"
        elif qemu[arch_of[digest]] is None:
            problem = None  # no QEMU to judge by: keep it
        elif key.get("qemu_version") != qemu[arch_of[digest]]:
            problem = f"captured with QEMU {key.get('qemu_version')}, installed {qemu[arch_of[digest]]}"
        entries.append(SnapshotEntry(directory, key, sizes(directory), problem, meta))
    return entries


def _image_outside(home: Home, meta: dict[str, Any], digest: str) -> str | None:
    """The arch of the image a snapshot names by path (one outside the store, given with
    --image PATH), if that file is still there with the same digest."""
    path = meta.get("image_disk")
    if not path or not Path(path).is_file():
        return None
    with contextlib.suppress(ImageError, OSError):
        image = home.image_store().from_disk(Path(path))
        if image.digest == digest:
            return image.manifest.arch
    return None


def _staging_problem(name: str) -> str | None:
    """A staging directory (``.capture-<pid>-...``, ``.import-<pid>-...``) of a live process is
    in use; of a dead one, it is a leftover."""
    m = re.match(r"\.\w+-(\d+)-", name)
    if m and start_time(int(m.group(1))) is not None:
        return None
    return "leftover of an interrupted capture or import"


def prune(home: Home, entries: list[SnapshotEntry] | None = None) -> list[tuple[Path, str]]:
    """Remove the snapshots no current QEMU or image can use; (directory, why) of each. One
    whose lock another process holds (a capture, an import) is left alone."""
    removed = []
    home.locks.mkdir(parents=True, exist_ok=True)
    for entry in list_snapshots(home) if entries is None else entries:
        if entry.problem is None:
            continue
        name = entry.directory.name
        lock = FileLock(str(lock_path(home.locks, name)))
        if not name.startswith("."):
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
        try:
            shutil.rmtree(entry.directory, ignore_errors=True)
            removed.append((entry.directory, entry.problem))
        finally:
            if lock.is_locked:
                lock.release()
    return removed
