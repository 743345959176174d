"""QEMU's argv: :class:`MachineConfig` holds everything that decides it, :func:`build_argv` builds it.

Capture, resume and cold boot all use it, so their device layouts match (CONTRACT §3): the
only difference is ``-incoming defer`` on resume. A template's capture VM keeps its RAM in a
shared file, and its clones map that file privately and read-only (``memory``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .arch import machine_type
from .errors import MachineError
from .manifest import Manifest

# AF_UNIX paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def socket_dir(vm_dir: Path) -> Path:
    """Where a VM's sockets live: its run directory, or a short path if that is too long."""
    if len(str(vm_dir / "monitor.sock")) <= _MAX_SOCKET_PATH:
        return vm_dir
    digest = hashlib.sha256(str(vm_dir).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"stack-emulator-{os.getuid()}" / digest
    short.mkdir(parents=True, exist_ok=True, mode=0o700)
    return short


@dataclass
class MachineConfig:
    """Everything that decides a VM's QEMU argv."""

    qemu: str
    manifest: Manifest
    image_dir: Path
    disk: Path
    vm_dir: Path
    accel: str
    host_ports: Mapping[str, int]
    guest_ports: Mapping[str, int]
    runtime_iso: Path
    seed: Path
    bundle: Path
    cpu: str = "max"
    incoming: bool = False
    share_dir: Path | None = None
    # Guest RAM in a file: written through (capture of a template) or mapped copy-on-write
    # from a read-only file (its clones). None: anonymous RAM.
    memory: Path | None = None
    memory_shared: bool = False
    # UEFI firmware for an arm64 image that boots from its disk (arch.find_firmware).
    firmware: Path | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def sockets(self) -> Path:
        return socket_dir(self.vm_dir)

    @property
    def qmp_socket(self) -> Path:
        return self.sockets / "monitor.sock"

    @property
    def qga_socket(self) -> Path:
        return self.sockets / "qga.sock"

    @property
    def serial_log(self) -> Path:
        return self.vm_dir / "serial.log"


def hostfwd(host_ports: Mapping[str, int], guest_ports: Mapping[str, int]) -> str:
    rules = [f"hostfwd=tcp:127.0.0.1:{host_ports[name]}-:{guest_ports[name]}" for name in sorted(host_ports)]
    return ",".join(["user", "id=net0", *rules])


def build_argv(cfg: MachineConfig) -> list[str]:
    """The QEMU command line. Device order is part of the snapshot format: keep it stable."""
    m = cfg.manifest
    machine = machine_type(m.arch, m.machine, cfg.accel, m.ram_mb)
    argv = [
        cfg.qemu,
        "-name", "stack-emulator,debug-threads=on",
        "-machine", machine if cfg.memory is None else f"{machine},memory-backend=ram0",
        "-accel", cfg.accel,
        "-cpu", cfg.cpu,
        "-m", str(m.ram_mb),
        "-smp", str(m.vcpus),
        "-nodefaults",
        "-display", "none",
        "-vga", "none",
    ]  # fmt: skip
    if cfg.memory is not None:
        mode = "share=on" if cfg.memory_shared else "share=off,readonly=on,rom=off"
        path = str(cfg.memory).replace(",", ",,")
        argv += ["-object", f"memory-backend-file,id=ram0,size={m.ram_mb}M,mem-path={path},{mode}"]
    if m.boot.method == "kernel":
        assert m.boot.kernel is not None
        assert m.boot.initrd is not None
        argv += [
            "-kernel", str(cfg.image_dir / m.boot.kernel),
            "-initrd", str(cfg.image_dir / m.boot.initrd),
            "-append", m.boot.append or "",
        ]  # fmt: skip
    elif m.boot.method == "firmware":
        if cfg.firmware is not None:
            argv += ["-bios", str(cfg.firmware)]
        argv += ["-boot", "order=c"]
    else:
        raise MachineError(f"image manifest asks for unknown boot method {m.boot.method!r}")
    argv += [
        "-drive", f"file={cfg.disk},format=qcow2,if=virtio",
        "-drive", f"file={cfg.seed},format=raw,if=virtio,readonly=on",
        "-drive", f"file={cfg.bundle},format=raw,if=virtio,readonly=on",
        "-drive", f"file={cfg.runtime_iso},format=raw,if=virtio,readonly=on",
        "-netdev", hostfwd(cfg.host_ports, cfg.guest_ports),
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-chardev", f"socket,id=monitor,path={cfg.qmp_socket},server=on,wait=off",
        "-mon", "chardev=monitor,mode=control",
        "-chardev", f"socket,path={cfg.qga_socket},server=on,wait=off,id=qga0",
        "-device", "virtio-serial",
        "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        "-device", "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1",
        "-serial", f"file:{cfg.serial_log}",
    ]  # fmt: skip
    if cfg.share_dir is not None:
        argv += ["-fsdev", f"local,id=hostfs,path={cfg.share_dir},security_model=none"]
    if cfg.incoming:
        argv += ["-incoming", "defer"]
    return argv + list(cfg.extra_args)
