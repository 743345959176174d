"""The image store: ``$STACK_EMULATOR_HOME/images``.

An image spec is ``auto`` (an image already in the store, else build the compat image),
``compat`` (build it, or reuse it while its inputs are unchanged), ``upstream`` (upstream's
GitHub release asset, pulled by pull.py unless the store has it), a path to a ``.qcow2``, or an
``http(s)://`` URL. Getting an image happens under a file lock shared by every worker and
session.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .arch import AMD64, ARCHES, resolve_arch
from .builder import COMPAT_NAME, BuildResult, CompatImageBuilder, file_digest
from .errors import ImageError
from .log import Progress, get_logger
from .manifest import Manifest, upstream_manifest
from .pull import PullSpec, pull_into

log = get_logger(__name__)


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


QCOW2_MAGIC = b"QFI\xfb"


def check_qcow2(disk: Path) -> None:
    """An image disk must be a readable file that starts as a qcow2 file does."""
    if not disk.is_file():
        raise ImageError(f"image {disk} is not a file. Give a path to a .qcow2 file, a URL, or `compat`.")
    try:
        with disk.open("rb") as f:
            head = f.read(len(QCOW2_MAGIC))
    except OSError as exc:
        raise ImageError(f"image {disk} cannot be read: {exc}. Check its permissions.") from None
    if head != QCOW2_MAGIC:
        raise ImageError(
            f"image {disk} is not a qcow2 image (it starts with {head!r}, not {QCOW2_MAGIC!r}): it is "
            "corrupt, or another kind of file. Rebuild or download it again, or convert it with "
            "`qemu-img convert -O qcow2`."
        )


class ImageStore:
    def __init__(self, root: Path, locks: Path) -> None:
        self.root = root
        self.locks = locks

    def _lock(self, name: str) -> Path:
        return self.locks / f"image-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock"

    def build_compat(
        self, force: bool = False, accel: str = "auto", provision_timeout: float = 900.0, arch: str = AMD64
    ) -> BuildResult:
        """The compat image for ``arch``, built under the store's lock unless it is up to date."""
        builder = CompatImageBuilder(self.root, accel=accel, provision_timeout=provision_timeout, arch=arch)
        if not force and (cached := builder.cached()) is not None:
            return cached
        with locked(self._lock(f"{COMPAT_NAME}-{arch}"), f"building the {arch} compat image"):
            return builder.build(force=force)

    def compat(self, force: bool = False, accel: str = "auto", arch: str = AMD64) -> Image:
        result = self.build_compat(force=force, accel=accel, arch=arch)
        return Image(result.manifest, result.directory, COMPAT_NAME)

    def existing(self, arch: str = AMD64) -> Image | None:
        """An ``arch`` image already in the store: the compat image, else an upstream qcow2."""
        compat = self.root / f"{COMPAT_NAME}-{arch}" / "manifest.json"
        if compat.exists():
            with contextlib.suppress(ImageError):
                return self.from_manifest(compat, COMPAT_NAME)
        disk = self.root / f"stack-emulator-{arch}.qcow2"
        return self.from_disk(disk) if disk.exists() else None

    def from_manifest(self, path: Path, source: str) -> Image:
        """The image a manifest describes. Its disk must be a readable qcow2 file whose sha256
        is the manifest's ``digest`` (checked once per size and mtime of the disk)."""
        path = path.resolve()
        manifest = Manifest.load(path)
        disk = path.parent / manifest.disk
        if not disk.exists():
            raise ImageError(
                f"{path} names the disk {disk}, which does not exist. Rebuild or pull the image again."
            )
        check_qcow2(disk)
        digest = self._digest(disk)
        if manifest.digest is None:
            manifest = manifest.with_digest(digest)
        elif manifest.digest != digest:
            raise ImageError(
                f"image {disk} is corrupt or was changed: its sha256 is {digest[:16]}..., the field "
                f"`digest` of {path} says {manifest.digest[:16]}.... Rebuild it with `stack-emulator "
                "build-image --force` (the compat image), or pull it again."
            )
        return Image(manifest, path.parent, source)

    def from_disk(self, disk: Path, arch: str | None = None) -> Image:
        """A bare qcow2: its manifest beside it if there is one, else upstream's built-in one for
        the architecture its name says (``stack-emulator-arm64.qcow2``), else ``arch``, else amd64."""
        disk = disk.resolve()
        if not disk.is_file():
            raise ImageError(
                f"image {disk} does not exist. Give a path to a .qcow2 file, a URL, or `compat`."
            )
        check_qcow2(disk)
        for candidate in (
            disk.with_name(disk.name + ".manifest.json"),
            disk.parent / "manifest.json",
        ):
            if candidate.exists():
                with contextlib.suppress(ImageError):
                    image = self.from_manifest(candidate, str(disk))
                    if image.disk == disk:
                        return image
        named = next((a for a in ARCHES if a in disk.name), None)
        manifest = upstream_manifest(named or arch or AMD64)
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

    def pull(self, spec: PullSpec, force: bool = False) -> Image:
        """Download ``spec`` (pull.py) under the image's lock. ``force`` downloads it again
        even if the store has the same asset."""
        name = spec.disk_name()
        with locked(self._lock(name), f"pulling {name}"), Progress("pull", log) as progress:
            return self.from_disk(pull_into(self.root, spec, force, progress))

    def present_or_pull(self, spec: PullSpec) -> Image:
        """The image ``spec`` names if the store has it (no network), else pulled."""
        disk = self.root / spec.disk_name()
        if disk.exists():
            return self.from_disk(disk)
        return self.pull(spec)

    def resolve(self, spec: str, accel: str = "auto", arch: str = "auto", arch_option: str = "") -> Image:
        """The image ``spec`` names. ``arch`` (``auto``: the host's) picks the compat or upstream
        image; an image given by path or URL has its own, which must match an ``arch`` asked for."""
        wanted = resolve_arch(arch, arch_option or "--stack-emulator-arch")
        if spec == "auto":
            return self.existing(wanted) or self.compat(accel=accel, arch=wanted)
        if spec == COMPAT_NAME:
            return self.compat(accel=accel, arch=wanted)
        if spec == "upstream":
            return self.present_or_pull(PullSpec(arch=wanted))
        if spec.startswith(("http://", "https://")):
            image = self.present_or_pull(PullSpec(url=spec))
        else:
            path = Path(spec).expanduser()
            if path.suffix == ".json":
                image = self.from_manifest(path, str(path))
            else:
                image = self.from_disk(path, None if arch == "auto" else wanted)
        if arch != "auto" and image.manifest.arch != wanted:
            raise ImageError(
                f"image {image.disk} is an {image.manifest.arch} image (its manifest or file name "
                f"says so), but {arch_option or 'the arch setting'} asks for {wanted}. Drop that "
                f"option, or give an {wanted} image."
            )
        return image
