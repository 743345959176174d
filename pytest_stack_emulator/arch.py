"""Guest architectures: what differs between an amd64 and an arm64 VM.

The QEMU program and its Debian package, the machine type and its options per accelerator, the
CPU model, the serial console and (for images that boot through firmware) the UEFI firmware.
Everything else (devices, drives, sockets, snapshot layout) is the same on both.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import HostSetupError

AMD64, ARM64 = "amd64", "arm64"
ARCHES = (AMD64, ARM64)


@dataclass(frozen=True)
class GuestArch:
    name: str  # Debian's name for it
    qemu: str  # the qemu-system program
    machine: str
    console: str  # the kernel's name for the first serial port
    apt_qemu: str  # Debian's package of ``qemu``


GUEST_ARCHES = {
    AMD64: GuestArch(AMD64, "qemu-system-x86_64", "q35", "ttyS0", "qemu-system-x86"),
    ARM64: GuestArch(ARM64, "qemu-system-aarch64", "virt", "ttyAMA0", "qemu-system-arm"),
}  # fmt: skip


def guest_arch(name: str) -> GuestArch:
    try:
        return GUEST_ARCHES[name]
    except KeyError:
        raise HostSetupError(
            f"unsupported guest architecture {name!r}: choose one of {', '.join(ARCHES)}"
        ) from None


def host_arch(machine: str | None = None) -> str:
    """The host's architecture in Debian's naming (``x86_64`` is amd64, ``aarch64`` arm64)."""
    machine = (machine or platform.machine()).lower()
    return {"x86_64": AMD64, "amd64": AMD64, "aarch64": ARM64, "arm64": ARM64}.get(machine, machine)


def resolve_arch(requested: str, option: str = "--stack-emulator-arch") -> str:
    """``auto`` follows the host; anything else must be a known architecture. ``option`` is
    the front end's option that chooses it, for the message."""
    if requested == "auto":
        arch = host_arch()
        if arch not in GUEST_ARCHES:
            raise HostSetupError(
                f"this host is {platform.machine()}, for which there is no guest image: pass "
                f"{option} {AMD64} or {ARM64} (it runs under TCG, in software)"
            )
        return arch
    return guest_arch(requested).name


# The most RAM a ``virt`` guest can have below 4 GiB: its RAM starts at 1 GiB.
_LOW_RAM_MB = 3072


def machine_type(arch: str, manifest_machine: str, accel: str, ram_mb: int) -> str:
    """The ``-machine`` value. On arm64, KVM takes the host's GIC version (a GICv3-only host
    has no GICv2 to emulate), and HVF keeps guest addresses below 4 GiB where the RAM fits
    there: the first Apple Silicon chips give a VM only 36 bits of physical address space.
    A bigger guest (upstream's 4 GiB image) is left to QEMU, which sizes the map to the host."""
    if arch != ARM64:
        return manifest_machine
    if accel == "kvm":
        return f"{manifest_machine},gic-version=host"
    if accel == "hvf" and ram_mb <= _LOW_RAM_MB:
        return f"{manifest_machine},highmem=off"
    return manifest_machine


def cpu_model(arch: str, accel: str) -> str:
    """The ``-cpu`` value. Under TCG an arm64 guest gets ``max`` with QEMU's own pointer
    authentication algorithm, which emulates several times faster than the architected one."""
    if arch == ARM64:
        return "host" if accel in ("kvm", "hvf") else "max,pauth-impdef=on"
    return "max"


def kernel_append(arch: str, base: str) -> str:
    """The kernel command line with the architecture's serial console."""
    return f"{base} console={guest_arch(arch).console}"


# Where QEMU packages put the aarch64 UEFI firmware, in order: Debian's qemu-efi-aarch64,
# QEMU's own build (Homebrew, MacPorts, Fedora).
_AARCH64_FIRMWARE = (
    "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
    "/usr/share/AAVMF/AAVMF_CODE.fd",
    "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
    "/usr/local/share/qemu/edk2-aarch64-code.fd",
    "/opt/local/share/qemu/edk2-aarch64-code.fd",
    "/usr/share/edk2/aarch64/QEMU_EFI.fd",
)


def firmware_candidates(qemu: str) -> list[Path]:
    """Firmware files to try for an arm64 guest, beside ``qemu``'s own share/ first."""
    prefix = Path(os.path.realpath(shutil.which(qemu) or qemu)).parent.parent
    return [prefix / "share" / "qemu" / "edk2-aarch64-code.fd", *map(Path, _AARCH64_FIRMWARE)]


def find_firmware(arch: str, qemu: str, candidates: Iterable[Path] | None = None) -> Path | None:
    """The UEFI firmware an image that boots from its disk needs: None on amd64 (QEMU's
    built-in SeaBIOS boots it), else the first aarch64 firmware file that exists. An arm64
    guest has no built-in firmware, so none found is a setup error that says what to install."""
    if arch != ARM64:
        return None
    tried = list(candidates) if candidates is not None else firmware_candidates(qemu)
    for path in tried:
        if path.is_file():
            return path
    raise HostSetupError(
        "an arm64 image that boots from its disk needs the aarch64 UEFI firmware, and none was "
        f"found (looked at {', '.join(map(str, tried))}). Install it: `apt-get install "
        "qemu-efi-aarch64` on Debian, or `brew install qemu` on macOS (it ships "
        "edk2-aarch64-code.fd)."
    )
