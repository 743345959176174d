"""Prepare once per session: the image, the host probe and the snapshot (captured if missing)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import SnapshotError, StackEmulatorError, host_file_error, space_left
from .health import wait_healthy
from .home import Home
from .host import HostInfo, probe_host
from .images import Image, locked
from .log import Progress, Warn, get_logger
from .machine import Machine, create_overlay
from .manifest import LAYOUT_VERSION
from .ports import PortBlock
from .reap import reap
from .snapshot import Snapshot, SnapshotKey, SnapshotStore, choose_restore_method, migrate_to_file
from .vm import cold_guest_ports, machine_config, owner_record, serial_tail

log = get_logger(__name__)


@dataclass
class Prepared:
    settings: Settings
    home: Home
    image: Image
    host: HostInfo
    key: SnapshotKey
    snapshot: Snapshot | None
    snapshot_state: str

    @property
    def restore_method(self) -> str:
        """template, mapped-ram or stream, as chosen for this host: the snapshot key holds it."""
        return self.key.restore_method

    def describe(self) -> list[str]:
        m = self.image.manifest
        return [
            f"image: {self.image.source} ({self.image.disk}, {m.arch}, sha256 {self.image.digest[:12]}, "
            f"{m.ram_mb} MiB, {m.vcpus} vCPU)",
            f"snapshot: {self.snapshot_state}",
            f"accelerator: {self.host.accel.name} ({self.host.accel.reason})",
            f"QEMU: {self.host.version} ({self.host.qemu})",
            f"restore: {self.restore_method}",
        ]


def snapshot_key(image: Image, host: HostInfo, method: str) -> SnapshotKey:
    m = image.manifest
    return SnapshotKey(
        image_digest=image.digest,
        qemu_version=host.version,
        accel=host.accel.name,
        cpu=host.cpu,
        ram_mb=m.ram_mb,
        vcpus=m.vcpus,
        layout_version=int(m.layout.get("version", LAYOUT_VERSION)),
        restore_method=method,
        arch=m.arch,
    )


def prepare(settings: Settings, capture: bool = True, warn: Warn | None = None) -> Prepared:
    """Get the image and (unless cold) the snapshot. Safe to call from every worker at once."""
    warn = warn or log.warning
    home = Home(settings.home)
    home.ensure()
    reap(home)
    image = home.image_store().resolve(
        settings.image, accel=settings.accel, arch=settings.arch, arch_option=settings.option("arch")
    )
    host = probe_host(image.manifest.arch, settings.accel)
    method = choose_restore_method(
        settings.restore, set(host.capabilities), host.version, settings.option("restore")
    )
    key = snapshot_key(image, host, method)
    store = home.snapshot_store()
    snapshot: Snapshot | None = None
    if settings.cold:
        state = "off (cold boot requested)"
    elif (snapshot := store.load(key)) is not None:
        state = f"reused {key.id} (captured in {snapshot.capture_seconds:.2f} s)"
    elif not capture:
        state = f"none yet for key {key.id}"
        if (problem := unusable_snapshot(store, key)) is not None:
            # Left for the next process that captures: it drops and captures it, once.
            warn(f"snapshot {key.id} is unusable: {problem}. This process boots cold; the next "
                 "session captures it again.")  # fmt: skip
            state = f"unusable ({problem}); cold boot"
    else:
        with locked(key.lock(home.locks), f"capturing snapshot {key.id}"):
            snapshot = store.load(key)
            if snapshot is not None:
                state = f"reused {key.id} (captured by another process)"
            else:
                if (problem := unusable_snapshot(store, key)) is not None:
                    # Dropped here, under the lock, by the one process that captures it again.
                    warn(f"snapshot {key.id} is unusable: {problem}. Dropped; capturing it again.")
                    store.discard(key)
                try:
                    snapshot = capture_snapshot(home, image, host, key, settings)
                    state = f"captured {key.id} in {snapshot.capture_seconds:.2f} s"
                    store.prune(key, home.locks)
                except StackEmulatorError as exc:
                    warn(f"snapshot capture failed, every VM will boot cold: {exc}")
                    state = f"capture failed ({type(exc).__name__}); cold boot"
    return Prepared(settings, home, image, host, key, snapshot, state)


def unusable_snapshot(store: SnapshotStore, key: SnapshotKey) -> str | None:
    """Why the snapshot directory for ``key`` did not load (a truncated RAM file, a missing disk
    layer...), naming the file; None when there is no such directory."""
    directory = store.path(key)
    if not directory.exists():
        return None
    meta_path = directory / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return f"{meta_path} is missing"
    except (OSError, ValueError) as exc:
        return f"{meta_path} cannot be read: {exc}"
    snap = Snapshot(directory, key, {}, 0.0)
    for path in snap.files:
        if not path.is_file():
            return f"{path} is missing"
    size, expected = snap.migration.stat().st_size, meta.get("ram_bytes")
    if size != expected:
        return f"{snap.migration} has {size} bytes, {expected} were written (truncated or replaced)"
    if snap.memory is not None and (size := snap.memory.stat().st_size) != key.ram_mb << 20:
        return f"{snap.memory} has {size} bytes, not the guest's {key.ram_mb} MiB (truncated or replaced)"
    return f"{directory} does not match {meta_path}"


def capture_snapshot(
    home: Home, image: Image, host: HostInfo, key: SnapshotKey, settings: Settings
) -> Snapshot:
    """Cold boot with the snapshot layout, wait for health, migrate to a file (§4)."""
    store = home.snapshot_store()
    vm_dir = home.run / f"capture-{os.getpid()}"
    block: PortBlock | None = None
    staging: Path | None = None
    machine: Machine | None = None
    try:
        block = home.allocator(settings.base_port, settings.option("base_port")).allocate(0, note="capture")
        staging = store.staging()
        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True, mode=0o700)
        with Progress("capture", log) as progress:
            disk = staging / "disk.qcow2"
            create_overlay(disk, image.disk)
            guest_ports = cold_guest_ports(image.manifest, block.ports)
            memory = None if key.memory_file is None else staging / key.memory_file
            cfg = machine_config(image, host, vm_dir, disk, block.ports, guest_ports, incoming=False,
                                  share=None, vm_dir_host=None, memory=memory, memory_shared=True)  # fmt: skip
            machine = Machine(cfg)
            progress.step(f"cold boot ({host.accel.name}) on ports {block.first}-{block.first + 4}; "
                          f"serial log {cfg.serial_log}")  # fmt: skip
            launched = time.monotonic()
            machine.launch()
            owner_record(vm_dir, machine, "capture", "capture", ports=block.ports, image=image.source,
                         restore="cold")  # fmt: skip
            wait_healthy(
                image.manifest.services, block.ports, settings.boot_timeout,
                what="services of the capture VM", alive=machine.running, on_progress=progress.step,
            )  # fmt: skip
            boot = time.monotonic() - launched
            progress.step(f"all services healthy after {boot:.1f} s; QMP capture ({key.restore_method})")
            state = staging / key.migration_file
            took = migrate_to_file(machine, state, key.restore_method, timeout=300, qemu_version=host.version)
            machine.kill()
            snap = store.commit(staging, key, guest_ports, took, boot, image_disk=image.disk)
            sizes = snap.sizes()
            progress.step(f"snapshot {key.id}: migration {took:.2f} s, {sizes['logical'] / 1e6:.0f} MB "
                          f"logical, {sizes['allocated'] / 1e6:.0f} MB allocated")  # fmt: skip
            return snap
    except OSError as exc:  # the home's files could not be written (a full disk...)
        raise SnapshotError(str(host_file_error(exc, store.root, f"capturing snapshot {key.id}"))) from None
    except StackEmulatorError as exc:
        message = str(exc)
        with contextlib.suppress(OSError):
            if shutil.disk_usage(store.root).free < image.manifest.ram_mb * 1_000_000:
                message += f"\na snapshot needs up to {image.manifest.ram_mb} MB; {space_left(store.root)}"
        tail = serial_tail(vm_dir / "serial.log")
        raise SnapshotError(f"{message}\nserial log tail:\n{tail}") from None
    finally:
        if machine is not None:
            machine.kill()
        if block is not None:
            block.release()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(vm_dir, ignore_errors=True)
