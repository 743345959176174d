"""The image store: ``$STACK_EMULATOR_HOME/images``.

An image spec is ``auto`` (an image already in the store, else build the compat image),
``compat`` (build it, or reuse it while its inputs are unchanged), ``upstream`` (pull upstream's
GitHub release asset), a path to a ``.qcow2``, or an ``http(s)://`` URL. Getting an image
happens under a file lock shared by every worker and session.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from filelock import FileLock, Timeout

from .builder import COMPAT_NAME, BuildResult, CompatImageBuilder, file_digest
from .errors import ImageError
from .log import Progress, get_logger
from .manifest import Manifest, upstream_manifest

log = get_logger(__name__)

UPSTREAM_REPO = "stack-auth/stack-auth"
DEFAULT_BRANCH = "dev"


@dataclass(frozen=True)
class Image:
    manifest: Manifest
    directory: Path
    source: str

    @property
    def disk(self) -> Path:
        return self.directory / self.manifest.disk

    @property
    def digest(self) -> str:
        assert self.manifest.digest is not None
        return self.manifest.digest


@contextlib.contextmanager
def locked(path: Path, what: str, timeout: float = 3600.0) -> Iterator[None]:
    """Hold a file lock; say once what we wait for if someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process that is %s (lock %s)", what, path)
        started = time.monotonic()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ImageError(
                f"gave up after {timeout:.0f} s waiting for the lock {path} ({what}): another "
                f"process still holds it. Find it with `fuser {path}` or `stack-emulator list`."
            ) from None
        log.info("lock %s free after %.1f s", path, time.monotonic() - started)
    try:
        yield
    finally:
        lock.release()


def upstream_url(arch: str = "amd64", branch: str | None = None) -> str:
    base = os.environ.get(
        "STACK_EMULATOR_RELEASE_BASE", f"https://github.com/{UPSTREAM_REPO}/releases/download"
    )
    branch = branch or os.environ.get("STACK_EMULATOR_BRANCH", DEFAULT_BRANCH)
    return f"{base.rstrip('/')}/emulator-{branch}-latest/stack-emulator-{arch}.qcow2"


def download(url: str, target: Path, on_progress: Callable[[str], None] | None = None) -> None:
    """Stream ``url`` to ``target`` through a ``.part`` file, with progress. GITHUB_TOKEN is
    sent as a bearer token to GitHub hosts."""
    headers = {}
    token = os.environ.get("GITHUB_TOKEN")
    host = urlparse(url).hostname or ""
    if token and (host == "github.com" or host.endswith(".github.com")):
        headers["Authorization"] = f"Bearer {token}"
    part = target.with_name(target.name + ".part")
    started = time.monotonic()
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as r:
            if r.status_code != 200:
                hint = (
                    " Set GITHUB_TOKEN if the release is private or rate-limited." if "github" in host else ""
                )
                raise ImageError(f"download of {url} failed: HTTP {r.status_code}.{hint}")
            total = int(r.headers.get("content-length") or 0)
            done = 0
            last = 0.0
            with part.open("wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if on_progress and (now - last > 2 or (total and done == total)):
                        last = now
                        rate = done / max(now - started, 1e-6) / 1e6
                        pct = (
                            f"{100 * done / total:5.1f}% of {total / 1e6:.0f} MB"
                            if total
                            else f"{done / 1e6:.0f} MB"
                        )
                        on_progress(f"download {pct} at {rate:.1f} MB/s")
            if total and done != total:
                raise ImageError(f"download of {url} ended after {done} of {total} bytes; try again")
        part.rename(target)
    except httpx.HTTPError as exc:
        raise ImageError(
            f"download of {url} failed: {type(exc).__name__}: {exc}. Check the network and try again."
        ) from None
    finally:
        part.unlink(missing_ok=True)


class ImageStore:
    def __init__(self, root: Path, locks: Path) -> None:
        self.root = root
        self.locks = locks

    def _lock(self, name: str) -> Path:
        return self.locks / f"image-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"

    def build_compat(
        self, force: bool = False, accel: str = "auto", provision_timeout: float = 900.0
    ) -> BuildResult:
        """The compat image, built under the store's lock unless it is up to date."""
        builder = CompatImageBuilder(self.root, accel=accel, provision_timeout=provision_timeout)
        if not force and (cached := builder.cached()) is not None:
            return cached
        with locked(self._lock(COMPAT_NAME), "building the compat image"):
            return builder.build(force=force)

    def compat(self, force: bool = False, accel: str = "auto") -> Image:
        result = self.build_compat(force=force, accel=accel)
        return Image(result.manifest, result.directory, COMPAT_NAME)

    def existing(self) -> Image | None:
        """An image already in the store: the compat image, else an upstream qcow2."""
        compat = self.root / f"{COMPAT_NAME}-amd64" / "manifest.json"
        if compat.exists():
            with contextlib.suppress(ImageError):
                return self.from_manifest(compat, COMPAT_NAME)
        for arch in ("amd64", "arm64"):
            disk = self.root / f"stack-emulator-{arch}.qcow2"
            if disk.exists():
                return self.from_disk(disk)
        return None

    def from_manifest(self, path: Path, source: str) -> Image:
        path = path.resolve()
        manifest = Manifest.load(path)
        disk = path.parent / manifest.disk
        if not disk.exists():
            raise ImageError(
                f"{path} names the disk {disk}, which does not exist. Rebuild or pull the image again."
            )
        if manifest.digest is None:
            manifest = manifest.with_digest(self._digest(disk))
        return Image(manifest, path.parent, source)

    def from_disk(self, disk: Path) -> Image:
        """A bare qcow2: its manifest beside it if there is one, else upstream's built-in one."""
        disk = disk.resolve()
        if not disk.is_file():
            raise ImageError(
                f"image {disk} does not exist. Give a path to a .qcow2 file, a URL, or `compat`."
            )
        for candidate in (
            disk.with_name(disk.name + ".manifest.json"),
            disk.parent / "manifest.json",
        ):
            if candidate.exists():
                with contextlib.suppress(ImageError):
                    image = self.from_manifest(candidate, str(disk))
                    if image.disk == disk:
                        return image
        arch = "arm64" if "arm64" in disk.name else "amd64"
        manifest = upstream_manifest(arch)
        manifest = Manifest(**{**manifest.__dict__, "disk": disk.name}).with_digest(self._digest(disk))
        return Image(manifest, disk.parent, str(disk))

    def _digest(self, disk: Path) -> str:
        """sha256 of a disk, cached beside it and keyed by size and mtime."""
        st = disk.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        cache = disk.with_name(disk.name + ".sha256")
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(cache.read_text())
            if data["stamp"] == stamp:
                return str(data["sha256"])
        digest = file_digest(disk)
        with contextlib.suppress(OSError):
            cache.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
        return digest

    def pull(self, url: str, force: bool = False) -> Image:
        name = Path(urlparse(url).path).name or "image.qcow2"
        if not name.endswith(".qcow2"):
            raise ImageError(f"{url} does not name a .qcow2 file")
        target = self.root / name
        with locked(self._lock(name), f"downloading {url}"):
            if force or not target.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                with Progress("pull", log) as progress:
                    progress.step(f"{url} -> {target}")
                    download(url, target, progress.step)
            return self.from_disk(target)

    def resolve(self, spec: str, accel: str = "auto") -> Image:
        if spec == "auto":
            return self.existing() or self.compat(accel=accel)
        if spec == COMPAT_NAME:
            return self.compat(accel=accel)
        if spec == "upstream":
            return self.pull(upstream_url())
        if spec.startswith(("http://", "https://")):
            return self.pull(spec)
        path = Path(spec).expanduser()
        if path.suffix == ".json":
            return self.from_manifest(path, str(path))
        return self.from_disk(path)
