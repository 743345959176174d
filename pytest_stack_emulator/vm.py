"""One VM's run directory: its QEMU config and runtime ISO, owner record and serial log."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from .arch import find_firmware
from .argv import MachineConfig
from .host import HostInfo
from .images import Image
from .iso import write_atomic, write_runtime_iso
from .log import get_logger
from .machine import Machine, make_phantom
from .manifest import Manifest
from .procs import ProcessId
from .runtime import image_base_env, runtime_env

log = get_logger(__name__)


def owner_record(
    vm_dir: Path,
    machine: Machine,
    session: str,
    worker: str,
    *,
    ports: Mapping[str, int] | None = None,
    image: str | None = None,
    restore: str | None = None,
) -> None:
    """``owner.json``: who owns the VM and its QEMU process (for reaping), and what it runs
    (ports, image, ``mapped-ram``/``stream``/``cold``) for ``stack-emulator ps``."""
    owner = ProcessId.current()
    qemu = machine.process_id()
    record = {
        "owner": {"pid": owner.pid, "start": owner.start},
        "qemu": {"pid": qemu.pid, "start": qemu.start},
        "vm_dir": str(vm_dir),
        "sockets": str(machine.cfg.sockets),
        "session": session,
        "worker": worker,
        "created": time.time(),
        "ports": dict(ports or {}),
        "image": image,
        "restore": restore,
    }
    write_atomic(vm_dir / "owner.json", json.dumps(record).encode())


def machine_config(
    prepared_image: Image,
    host: HostInfo,
    vm_dir: Path,
    disk: Path,
    host_ports: dict[str, int],
    guest_ports: dict[str, int],
    *,
    incoming: bool,
    share: Path | None,
    vm_dir_host: Path | None,
    memory: Path | None = None,
    memory_shared: bool = False,
) -> MachineConfig:
    runtime_iso = vm_dir / "runtime-config.iso"
    base = image_base_env(prepared_image.manifest.name, prepared_image.disk)
    write_runtime_iso(runtime_iso, runtime_env(host_ports, vm_dir_host), base)
    seed, bundle = vm_dir / "seed.phantom", vm_dir / "bundle.phantom"
    make_phantom(seed)
    make_phantom(bundle)
    return MachineConfig(
        qemu=host.qemu,
        manifest=prepared_image.manifest,
        image_dir=prepared_image.directory,
        disk=disk,
        vm_dir=vm_dir,
        accel=host.accel.name,
        cpu=host.cpu,
        host_ports=host_ports,
        guest_ports=guest_ports,
        runtime_iso=runtime_iso,
        seed=seed,
        bundle=bundle,
        incoming=incoming,
        share_dir=share,
        memory=memory,
        memory_shared=memory_shared,
        firmware=firmware_for(prepared_image.manifest, host.qemu),
    )


def firmware_for(manifest: Manifest, qemu: str) -> Path | None:
    """The UEFI firmware of an arm64 image that boots from its disk (upstream's), else None."""
    return find_firmware(manifest.arch, qemu) if manifest.boot.method == "firmware" else None


def cold_guest_ports(manifest: Manifest, host_ports: dict[str, int]) -> dict[str, int]:
    """Guest ports of a cold-booted VM: the manifest's, or the host port where it says so."""
    return {s.name: s.guest_port or host_ports[s.name] for s in manifest.services}


def serial_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no serial log)"
