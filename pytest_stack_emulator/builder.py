"""Build the compat image (issue: offline, from cloud_init/, Debian packages only).

Stages, each reported with its elapsed time:

1. ``mmdebstrap`` makes a bookworm root filesystem from ``cloud_init/packages`` and copies
   ``cloud_init/rootfs/`` over it.
2. ``mkfs.ext4 -d`` turns the tree into a filesystem image without mounting anything, and
   ``qemu-img convert`` makes it a qcow2. The kernel and initrd are copied out for direct
   kernel boot.
3. A provisioning boot under QEMU runs cloud-init from a NoCloud seed ISO (label ``cidata``)
   written with pycdlib. The guest writes ``STACK_PROVISION_OK`` or
   ``STACK_PROVISION_FAILED: ...`` to its serial console and powers off.
4. The qcow2 is compressed and a manifest (with a hash of every input) is written beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .arch import AMD64, guest_arch, host_arch, kernel_append
from .build_host import check_host_tools, remove_dead_builds, remove_work_dir, run_command
from .errors import BuildError
from .log import Progress, get_logger
from .machine import qemu_img
from .manifest import Boot, Manifest, stack_services
from .provision import KERNEL_APPEND, provision_boot

log = get_logger(__name__)

COMPAT_NAME = "compat"
COMPAT_RAM_MB = 1024
COMPAT_VCPUS = 2
SUITE = "bookworm"
DISK_SIZE = "4G"
# Kernel module trees a VM on virtio never needs; removing them saves about 250 MB.
PRUNED_MODULE_DIRS = (
    "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet",
    "drivers/infiniband", "drivers/staging", "drivers/scsi", "drivers/usb", "drivers/bluetooth",
    "drivers/iio", "drivers/isdn", "drivers/input/touchscreen", "drivers/hid", "drivers/mtd",
    "drivers/net/can", "drivers/atm", "sound", "net/wireless", "net/mac80211", "net/bluetooth",
)  # fmt: skip


def cloud_init_dir() -> Path:
    """The provisioning tree: ``$STACK_EMULATOR_CLOUD_INIT``, the checkout's, or the package's."""
    override = os.environ.get("STACK_EMULATOR_CLOUD_INIT")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parent.parent / "cloud_init"
    if checkout.is_dir():
        return checkout
    packaged = Path(__file__).resolve().parent / "cloud_init"
    if packaged.is_dir():
        return packaged
    raise BuildError(
        f"cannot find the cloud_init/ provisioning tree (looked at {checkout} and {packaged}). "
        "Set STACK_EMULATOR_CLOUD_INIT to its path."
    )


def read_packages(source: Path, arch: str = AMD64) -> list[str]:
    """The guest's Debian packages; ``{arch}`` in a name is the guest's architecture."""
    path = source / "packages"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise BuildError(f"{path} is missing: it lists the guest's Debian packages") from None
    return [word.replace("{arch}", arch) for line in lines for word in line.split("#", 1)[0].split()]


def _files(root: Path) -> Iterable[Path]:
    """The tree's files, without caches that tools leave in a checkout (``__pycache__``,
    ``.ruff_cache``, ``.mypy_cache``...): they must not make one checkout's image stale."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part == "__pycache__" or part.endswith("_cache") for part in p.relative_to(root).parts)
    )  # fmt: skip


def inputs_hash(source: Path | None = None) -> str:
    """A hash of everything the image is built from: cloud_init/, this builder, the argv."""
    source = source or cloud_init_dir()
    h = hashlib.sha256()
    for path in _files(source):
        h.update(str(path.relative_to(source)).encode() + b"\0")
        # Only the executable bit, as git keeps it: a checkout's umask must not force a rebuild.
        h.update(b"x" if path.stat().st_mode & 0o100 else b"-")
        h.update(path.read_bytes() + b"\0")
    here = Path(__file__).resolve().parent
    for name in ("builder.py", "provision.py", "iso.py", "runtime.py", "contract.py", "arch.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class BuildResult:
    manifest: Manifest
    directory: Path
    built: bool
    seconds: float


# Builds kept in the store: the newest, the previous one (a running session may use it), and
# one more, so that switching between two branches does not rebuild every time.
KEEP_BUILDS = 3


class CompatImageBuilder:
    def __init__(
        self,
        store_dir: Path,
        source: Path | None = None,
        mirror: str | None = None,
        provision_timeout: float = 900.0,
        accel: str = "auto",
        arch: str = AMD64,
    ) -> None:
        self.arch = guest_arch(arch).name
        self.store_dir = store_dir
        self.source = source or cloud_init_dir()
        self.mirror = mirror or os.environ.get("STACK_EMULATOR_DEBIAN_MIRROR")
        self.provision_timeout = provision_timeout
        self.accel = accel
        self.target = store_dir / f"{COMPAT_NAME}-{self.arch}"

    @property
    def directory(self) -> Path:
        """The build the ``compat-<arch>`` pointer names (a real directory, never replaced)."""
        return self.target.resolve()

    def cached(self) -> BuildResult | None:
        """A kept build whose inputs hash matches the current inputs: the one the pointer names,
        else another (a checkout on another branch built it), which the pointer then names."""
        wanted = inputs_hash(self.source)
        pointed = self.directory
        builds = sorted(
            (p.resolve() for p in self.store_dir.glob(f"{self.target.name}-*")), key=lambda p: p != pointed
        )
        for build in builds:
            with contextlib.suppress(Exception):
                manifest = Manifest.load(build / "manifest.json")
                if manifest.inputs_hash == wanted and (build / manifest.disk).exists():
                    if build != pointed:
                        self._point_to(build)
                    return BuildResult(manifest, build, False, 0.0)
        return None

    def _point_to(self, build: Path) -> None:
        pointer = self.store_dir / f".{self.target.name}.{os.getpid()}.link"
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(build.name)
        os.replace(pointer, self.target)

    def build(self, force: bool = False) -> BuildResult:
        """Build into a new directory named after the disk's digest, then switch the
        ``compat-<arch>`` pointer to it. A build in use by a running VM or a snapshot is never
        overwritten in place; the newest :data:`KEEP_BUILDS` stay (another branch's inputs
        reuse theirs), older ones are removed."""
        started = time.monotonic()
        if not force and (cached := self.cached()) is not None:
            log.info("compat image is up to date: %s", cached.directory)
            return cached
        check_host_tools(self.arch)
        remove_dead_builds(self.store_dir)
        work = self.store_dir / f".build-{COMPAT_NAME}-{self.arch}-{os.getpid()}"
        remove_work_dir(work)
        (work / "scratch").mkdir(parents=True)
        try:
            with Progress(f"build-image {self.arch}", log) as progress:
                manifest = self._build(work, progress)
                serial = work / "scratch" / "provision-vm" / "serial.log"
                if serial.exists():
                    shutil.copy2(serial, work / "provision-serial.log")
                shutil.rmtree(work / "scratch")
                final = self._install(work, manifest, progress)
        finally:
            remove_work_dir(work)
        return BuildResult(manifest, final, True, time.monotonic() - started)

    def _install(self, work: Path, manifest: Manifest, progress: Progress) -> Path:
        assert manifest.digest is not None
        final = self.store_dir / f"{self.target.name}-{manifest.digest[:12]}"
        progress.step(f"installing into {final}")
        previous = self.directory if self.target.is_symlink() else None
        if self.target.is_dir() and not self.target.is_symlink():
            # A store from before pointers: keep that build under a name of its own.
            previous = self.store_dir / f"{self.target.name}-legacy-{os.getpid()}"
            self.target.rename(previous)
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        self._point_to(final)
        builds = sorted((p for p in self.store_dir.glob(f"{self.target.name}-*") if p.is_dir() and p != final),
                        key=lambda p: p.stat().st_mtime, reverse=True)  # fmt: skip
        for old in builds[KEEP_BUILDS - 1 :]:
            if old != previous:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def _build(self, work: Path, progress: Progress) -> Manifest:
        digest_in = inputs_hash(self.source)
        rootfs = work / "rootfs"
        foreign = "" if self.arch == host_arch() else ", through qemu-user"
        progress.step(f"mmdebstrap: {self.arch} root filesystem from Debian packages{foreign}")
        self._mmdebstrap(rootfs, work, progress)

        progress.step("kernel and initrd for direct kernel boot")
        kernel = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrd = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernel or not initrd:
            raise BuildError(f"no kernel or initrd in {rootfs / 'boot'}: is linux-image-{{arch}} in "
                             f"{self.source / 'packages'}?")  # fmt: skip
        shutil.copy2(kernel[-1], work / "vmlinuz")
        shutil.copy2(initrd[-1], work / "initrd.img")

        progress.step(f"mkfs.ext4 -d: {DISK_SIZE} filesystem image, no mount")
        raw = work / "disk.raw"
        self._run(
            progress,
            ["mkfs.ext4", "-q", "-F", "-L", "stackroot", "-d", str(rootfs), "-E",
             "lazy_itable_init=0,lazy_journal_init=0", str(raw), DISK_SIZE],
            "mkfs.ext4",
        )  # fmt: skip
        shutil.rmtree(rootfs)
        work_disk = work / "provision.qcow2"
        self._run(
            progress,
            [qemu_img(), "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work_disk)],
            "qemu-img convert",
        )
        raw.unlink()

        progress.step("provisioning boot: cloud-init from the NoCloud seed ISO")
        self._provision(work, work_disk, digest_in, progress)

        progress.step("compressing the qcow2 (zstd)")
        disk_name = f"stack-emulator-{self.arch}.qcow2"
        self._run(
            progress,
            [qemu_img(), "convert", "-c", "-f", "qcow2", "-O", "qcow2", "-o",
             "compression_type=zstd", str(work_disk), str(work / disk_name)],
            "qemu-img convert -c",
        )  # fmt: skip
        work_disk.unlink()
        manifest = Manifest(
            name=COMPAT_NAME,
            arch=self.arch,
            disk=disk_name,
            ram_mb=COMPAT_RAM_MB,
            vcpus=COMPAT_VCPUS,
            boot=Boot(
                method="kernel",
                kernel="vmlinuz",
                initrd="initrd.img",
                append=kernel_append(self.arch, KERNEL_APPEND),
            ),
            machine=guest_arch(self.arch).machine,
            services=stack_services("81", mock_oauth_health="/.well-known/openid-configuration"),
            inputs_hash=digest_in,
            digest=file_digest(work / disk_name),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (work / "manifest.json").write_text(manifest.to_json())
        size = (work / disk_name).stat().st_size
        progress.step(f"image is {size / 1e6:.0f} MB")
        return manifest

    def _mmdebstrap(self, rootfs: Path, work: Path, progress: Progress) -> None:
        packages = read_packages(self.source, self.arch)
        setup = work / "scratch" / "setup-hook.sh"
        # The initramfs settings go in before the kernel package, whose install builds it.
        setup.write_text(
            "set -e\n"
            'mkdir -p "$1/etc/initramfs-tools"\n'
            f'cp -a "{self.source / "rootfs" / "etc" / "initramfs-tools"}/." "$1/etc/initramfs-tools/"\n'
        )
        customize = work / "scratch" / "customize-hook.sh"
        pruned = " ".join(PRUNED_MODULE_DIRS)
        customize.write_text(
            "set -e\n"
            f'cp -a "{self.source / "rootfs"}/." "$1/"\n'
            'for moddir in "$1"/usr/lib/modules/*; do\n'
            f'  for d in {pruned}; do rm -rf "$moddir/kernel/$d"; done\n'
            '  chroot "$1" depmod -a "$(basename "$moddir")"\n'
            "done\n"
            'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb\n'
            'rm -f "$1/etc/machine-id" && : > "$1/etc/machine-id"\n'
        )
        cmd = [
            "mmdebstrap", "--mode=root", "--variant=apt", "--format=directory", f"--architectures={self.arch}",
            f"--include={','.join(packages)}",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--aptopt=APT::Install-Recommends \"false\"",
            f"--setup-hook=sh {setup} \"$1\"",
            f"--customize-hook=sh {customize} \"$1\"",
            SUITE, str(rootfs),
        ]  # fmt: skip
        if self.mirror:
            cmd.append(self.mirror)

        def show(line: str) -> None:
            if line.startswith(("I: ", "E: ", "W: ")):
                progress.step(f"mmdebstrap {line}")

        self._run(progress, cmd, "mmdebstrap", on_line=show)

    @staticmethod
    def _run(
        progress: Progress, cmd: list[str], what: str, on_line: Callable[[str], None] | None = None
    ) -> None:
        def beat(elapsed: float, last: str) -> None:
            progress.step(
                f"{what}: still running after {elapsed:.0f} s; last output: {last[:100] or '(none yet)'}"
            )

        run_command(cmd, what, on_line=on_line, on_beat=beat)

    def _provision(self, work: Path, disk: Path, digest_in: str, progress: Progress) -> None:
        provision_boot(self.source, work, disk, self.accel, self.provision_timeout, progress,
                       ram_mb=COMPAT_RAM_MB, vcpus=COMPAT_VCPUS, arch=self.arch)  # fmt: skip
