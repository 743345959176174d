"""One worker's VM: start (resume, or cold boot as a fallback), stop, stop all."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint
from .checkpoint import Seed
from .errors import DiskFull, StackEmulatorError, host_file_error
from .guest import rotate_keys, set_cold_boot_clock, share_host_dir, write_internal_pck
from .handle import StackEmulator
from .health import wait_healthy
from .images import locked
from .log import Warn, get_logger
from .machine import Machine, create_overlay
from .ports import PortBlock, worker_index
from .prepare import Prepared
from .snapshot import Snapshot, SnapshotLoadError
from .vm import cold_guest_ports, machine_config, owner_record, serial_tail

log = get_logger(__name__)


@dataclass(eq=False)
class Instance:
    """A running VM and the resources it holds."""

    handle: StackEmulator
    machine: Machine
    block: PortBlock
    prepared: Prepared
    session: str
    worker: str
    # What reset() goes back to: the session's snapshot (None: a cold boot).
    snapshot: Snapshot | None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def vm_dir(self) -> Path:
        return self.handle.vm_dir

    def serial_tail(self, lines: int = 40) -> str:
        return serial_tail(self.handle.serial_log, lines)

    def gone(self) -> str | None:
        """Why this VM no longer runs, naming the worker and the serial log; None while it runs."""
        if self.stopped:
            return f"the VM of worker {self.worker} in {self.vm_dir} was stopped (its session ended)"
        process = self.machine.process
        if process is None or process.poll() is None:
            return None
        code = process.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return (
            f"the VM of worker {self.worker} is gone: its QEMU (pid {process.pid}) exited ({how}) "
            f"while tests were using it. Serial log: {self.handle.serial_log}; QEMU's output: "
            f"{self.machine.qemu_log}. The tests after this one on worker {self.worker} cannot "
            f"use it either. Last lines of the serial log:\n{self.serial_tail(15)}"
        )

    def stop(self, keep: bool = False) -> float:
        """Power down, then quit, then kill; remove the run directory unless ``keep``."""
        if self.stopped:
            return 0.0
        started = time.monotonic()
        self.stopped = True
        try:
            self.machine.shutdown(powerdown_timeout=self.prepared.settings.shutdown_timeout)
        finally:
            self._release("a test on this worker failed" if keep else None)
        return time.monotonic() - started

    def _release(self, kept_because: str | None) -> None:
        self.block.release()
        _registry.discard(self)
        if kept_because:
            (self.vm_dir / "kept").write_text(kept_because + "\n")
        else:
            shutil.rmtree(self.vm_dir, ignore_errors=True)

    def reset(self, warn: Warn | None = None) -> float:
        """Put the stack back into the captured state (or the last checkpoint): the VM is
        discarded (no power-down: its state is thrown away) and a new one is resumed from the
        snapshot on the same ports. The handle stays the same object; returns seconds."""
        started = time.monotonic()
        self.relaunch(self.snapshot, warn or log.warning)
        if self.handle.config_file is not None:
            self.handle.use_config_file(self.handle.config_file)
        return time.monotonic() - started

    def checkpoint(self, name: str, seed: Seed, warn: Warn | None = None) -> Any:
        """Resume the checkpoint ``name``, capturing it with ``seed`` first if needed."""
        return checkpoint.take(self, name, seed, warn)

    def relaunch(self, snapshot: Snapshot | None, warn: Warn, capture_memory: Path | None = None) -> None:
        """Replace this VM by one resumed from ``snapshot`` (cold booted if None or if the
        resume fails) in the same run directory, on the same ports, with the same handle.
        ``capture_memory``: the new VM keeps its RAM in that shared file, to be captured as a
        template; it must resume, no cold boot instead."""
        if self.stopped:
            raise StackEmulatorError(f"the VM in {self.vm_dir} is stopped; it cannot be reset")
        _registry.discard(self)
        self.machine.kill()
        _clear_run_files(self.vm_dir)
        args = (self.prepared, self.vm_dir, self.block, self.session, self.worker, snapshot)
        try:
            if capture_memory is None:
                fresh = _resume_or_boot(*args, warn, handle=self.handle)
            else:
                fresh = _boot(*args, warn=warn, handle=self.handle, capture_memory=capture_memory)
        except BaseException:
            self.stopped = True
            self._release(f"relaunching this VM failed at {time.strftime('%H:%M:%S')}")
            raise
        _registry.discard(fresh)
        self.machine, self.timings, self.snapshot = fresh.machine, fresh.timings, fresh.snapshot
        self.warnings.extend(fresh.warnings)
        _registry.add(self)


class _Registry:
    """Instances of this process, so that Ctrl-C and crashes can stop them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: set[Instance] = set()

    def add(self, inst: Instance) -> None:
        with self._lock:
            self._items.add(inst)

    def discard(self, inst: Instance) -> None:
        with self._lock:
            self._items.discard(inst)

    def running(self) -> list[Instance]:
        with self._lock:
            return list(self._items)


_registry = _Registry()


def stop_all(instances: Iterable[Instance] | None = None, keep: bool = False) -> list[float]:
    """Stop instances in parallel (all of this process's by default). Never raises."""
    todo = list(instances) if instances is not None else _registry.running()
    if not todo:
        return []

    def one(inst: Instance) -> float:
        try:
            return inst.stop(keep=keep)
        except Exception as exc:  # a teardown failure must not hide the others
            log.warning("stopping the VM in %s failed: %s", inst.vm_dir, exc)
            return -1.0

    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        return list(pool.map(one, todo))


_placeholder_warned = False
# Health checks that run while a resumed guest's clock is set (one per VM starting at once).
_health_checks = ThreadPoolExecutor(thread_name_prefix="stack-emulator-health")


def start(
    prepared: Prepared,
    worker: str = "main",
    session: str | None = None,
    warn: Warn | None = None,
    worker_idx: int | None = None,
) -> Instance:
    """Start one worker's VM: resume the snapshot, or cold boot if that fails or is off."""
    warn = warn or log.warning
    session = session or f"{os.getpid()}"
    home = prepared.home
    vm_dir = home.run / f"{session}-{worker}"
    index = worker_index(worker) if worker_idx is None else worker_idx
    settings = prepared.settings
    try:
        block = home.allocator(settings.base_port, settings.option("base_port")).allocate(
            index, note=str(vm_dir)
        )
    except OSError as exc:
        raise host_file_error(exc, home.root, f"leasing ports for {vm_dir}") from None
    try:
        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True, mode=0o700)
        return _resume_or_boot(prepared, vm_dir, block, session, worker, prepared.snapshot, warn)
    except OSError as exc:  # the run directory's files could not be written (a full disk...)
        block.release()
        shutil.rmtree(vm_dir, ignore_errors=True)
        raise host_file_error(exc, vm_dir, f"starting the VM in {vm_dir}") from None
    except BaseException:
        block.release()
        shutil.rmtree(vm_dir, ignore_errors=True)
        raise


# The files a VM writes into its run directory; removed before another VM uses the directory.
_RUN_FILES = ("disk.qcow2", "serial.log", "owner.json")


def _clear_run_files(vm_dir: Path) -> None:
    for name in _RUN_FILES:
        (vm_dir / name).unlink(missing_ok=True)


def _resume_or_boot(
    prepared: Prepared,
    vm_dir: Path,
    block: PortBlock,
    session: str,
    worker: str,
    snapshot: Snapshot | None,
    warn: Warn,
    handle: StackEmulator | None = None,
) -> Instance:
    """Resume ``snapshot`` in ``vm_dir``, or cold boot if there is none or it fails."""
    warnings: list[str] = []

    def record(message: str) -> None:
        warn(message)
        warnings.append(message)

    if snapshot is not None:
        try:
            inst = _boot(prepared, vm_dir, block, session, worker, snapshot, warn=record, handle=handle)
            inst.warnings = warnings
            return inst
        except DiskFull:
            raise  # a cold boot needs the same room
        except StackEmulatorError as exc:
            message = f"snapshot resume failed in {vm_dir}, cold boot instead: {exc}"
            if isinstance(exc, SnapshotLoadError):
                _discard_snapshot(prepared, snapshot)
                message += f" ({snapshot.directory} discarded; the next session captures it again)"
            record(message)
            _clear_run_files(vm_dir)
    inst = _boot(prepared, vm_dir, block, session, worker, None, warn=record, handle=handle)
    inst.warnings = warnings
    return inst


def _discard_snapshot(prepared: Prepared, snapshot: Snapshot) -> None:
    """Remove a snapshot (or checkpoint) whose state does not load, so that it is captured again."""
    lock = snapshot.key.lock(prepared.home.locks)
    with (
        contextlib.suppress(StackEmulatorError),
        locked(lock, f"discarding snapshot {snapshot.key.id}", timeout=60),
    ):
        shutil.rmtree(snapshot.directory, ignore_errors=True)


def _boot(
    prepared: Prepared,
    vm_dir: Path,
    block: PortBlock,
    session: str,
    worker: str,
    snapshot: Snapshot | None,
    *,
    warn: Warn | None = None,
    handle: StackEmulator | None = None,
    capture_memory: Path | None = None,
) -> Instance:
    """One VM in ``vm_dir``: resumed from ``snapshot``, or cold booted when it is None. An
    existing ``handle`` (a reset) is updated in place. With ``capture_memory`` the guest's RAM
    lives in that shared file (a template's capture VM)."""
    global _placeholder_warned
    settings, image = prepared.settings, prepared.image
    resume = snapshot is not None
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    disk = vm_dir / "disk.qcow2"
    if snapshot is not None:
        for path in snapshot.files:
            if not path.is_file():  # removed since prepare() found it
                raise SnapshotLoadError(f"the snapshot's {path} is missing")
        create_overlay(disk, snapshot.disk)
        guest_ports = dict(snapshot.guest_ports)
    else:
        create_overlay(disk, image.disk)
        guest_ports = cold_guest_ports(image.manifest, block.ports)
    memory = capture_memory or (None if snapshot is None else snapshot.memory)
    cfg = machine_config(image, prepared.host, vm_dir, disk, block.ports, guest_ports, incoming=resume,
                          share=settings.share, vm_dir_host=vm_dir, memory=memory,
                          memory_shared=capture_memory is not None)  # fmt: skip
    machine = Machine(cfg)
    timeout = settings.resume_timeout if resume else settings.boot_timeout
    timeout_option = settings.option("resume_timeout" if resume else "boot_timeout")
    keys = image.manifest.keys
    if handle is None:
        handle = StackEmulator(
            ports=dict(block.ports),
            project_id=image.manifest.project_id,
            publishable_client_key=keys["publishable_client_key"],
            secret_server_key=keys["secret_server_key"],
            super_secret_admin_key=keys["super_secret_admin_key"],
            vm_dir=vm_dir,
        )
    handle.boot = "resume" if resume else "cold"
    handle.set_project(image.manifest.project_id, keys)
    inst = Instance(handle, machine, block, prepared, session, worker, snapshot, timings)
    early: Future[float] | None = None
    if handle.control is None:
        handle.control = inst
    _registry.add(inst)
    try:
        machine.launch()
        owner_record(vm_dir, machine, session, worker, ports=block.ports, image=image.source,
                     restore=snapshot.method if snapshot is not None else "cold")  # fmt: skip
        timings["launch"] = time.monotonic() - t0
        qga = machine.qga(timeout=10)
        healthy = functools.partial(wait_healthy, image.manifest.services, block.ports, timeout, alive=machine.running,
                                    what=f"services of the VM in {vm_dir}", timeout_option=timeout_option)  # fmt: skip
        if snapshot is not None:
            snapshot.restore(machine, timeout, qemu_version=prepared.host.version)
            timings["loaded"] = time.monotonic() - t0
            if not settings.rotate:
                # The services run as captured (rotation would restart them): check them while
                # the guest agent sets the clock. A killed machine ends the check at once.
                early = _health_checks.submit(healthy)
            with qga.connected(timeout):  # one agent connection for the clock step
                timings["qga"] = time.monotonic() - t0
                # The guest's wall clock restarts at capture time: set it to the host's before
                # anything (rotation, the test) asks the backend for a token.
                step = qga.set_clock_to_host()
            timings["clock"] = time.monotonic() - t0
            log.debug("guest clock of %s was %+.3f s off the host's; now %+.3f s (%.0f ms)", vm_dir,
                      step.before, step.after, (timings["clock"] - timings["qga"]) * 1000)  # fmt: skip
        else:
            healthy()
            timings["booted"] = time.monotonic() - t0
            if settings.share or settings.rotate:
                qga.sync(timeout)
            set_cold_boot_clock(qga, vm_dir, timeout, warn or log.warning)
            timings["clock"] = time.monotonic() - t0
        if settings.share is not None:
            share_host_dir(machine)
            timings["shared"] = time.monotonic() - t0
        if settings.rotate:
            handle.set_project(handle.project_id, rotate_keys(machine, vm_dir))
            timings["rotated"] = time.monotonic() - t0
        else:
            write_internal_pck(vm_dir, handle.publishable_client_key)
            if not _placeholder_warned:
                _placeholder_warned = True
                log.warning(
                    "the snapshot's placeholder API keys are in effect (no rotation): do not "
                    "expose this stack beyond 127.0.0.1. Use %s for fresh keys.",
                    settings.option("rotate"),
                )
        if early is not None:
            early.result()
        else:
            healthy()
        timings["healthy"] = time.monotonic() - t0
        return inst
    except BaseException as exc:
        _registry.discard(inst)
        machine.kill()
        if isinstance(exc, StackEmulatorError):
            exc.add_note(f"serial log tail ({cfg.serial_log}):\n{serial_tail(cfg.serial_log, 25)}")
        raise


def new_session_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
