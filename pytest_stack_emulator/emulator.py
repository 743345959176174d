"""The core: prepare an image and a snapshot once, start a stack per worker, stop it.

No pytest here. :func:`prepare` gets the image and the snapshot under file locks;
:func:`start` gives one worker its VM (resume, or cold boot as a fallback) and returns an
:class:`Instance` whose :attr:`Instance.handle` is what tests see.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .config import Settings
from .errors import HostSetupError, MachineError, SnapshotError, StackEmulatorError
from .health import wait_healthy
from .images import Image, ImageStore, locked
from .iso import write_atomic, write_runtime_iso
from .log import Progress, get_logger
from .machine import (
    AccelChoice,
    Machine,
    MachineConfig,
    create_overlay,
    detect_accel,
    make_phantom,
    qemu_binary,
    qemu_version,
)
from .mailbox import Mailbox
from .manifest import LAYOUT_VERSION, Manifest
from .ports import PortAllocator, PortBlock, worker_index
from .procs import ProcessId
from .projects import Project, create_project, project_for_config_file
from .qmp import QGAClient, QMPConnection
from .runtime import base_env, runtime_env
from .snapshot import (
    Snapshot,
    SnapshotKey,
    SnapshotLoadError,
    SnapshotStore,
    choose_restore_method,
    migrate_from_file,
    migrate_to_file,
    ram_file,
)

log = get_logger(__name__)

ACCESS_TYPES = ("client", "server", "admin")
ROTATE_NAMES = {
    "publishable_client_key": "STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY",
    "secret_server_key": "STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY",
    "super_secret_admin_key": "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY",
    "cron_secret": "CRON_SECRET",
}
Warn = Callable[[str], None]


# --------------------------------------------------------------------------- the test handle


@dataclass
class StackEmulator:
    """One running stack, as a test sees it."""

    ports: dict[str, int]
    project_id: str
    publishable_client_key: str
    secret_server_key: str
    super_secret_admin_key: str
    vm_dir: Path
    boot: str = "resume"
    host: str = "127.0.0.1"
    # The internal project's keys once project_id and the keys are a config file's project.
    internal: Project | None = field(default=None, repr=False)

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    @property
    def dashboard_url(self) -> str:
        return self.url("dashboard")

    @property
    def backend_url(self) -> str:
        return self.url("backend")

    @property
    def minio_url(self) -> str:
        return self.url("minio")

    @property
    def inbucket_url(self) -> str:
        return self.url("inbucket")

    @property
    def mock_oauth_url(self) -> str:
        return self.url("mock_oauth")

    @property
    def serial_log(self) -> Path:
        return self.vm_dir / "serial.log"

    @property
    def mail(self) -> Mailbox:
        """The mails the stack sent, with their codes and links: ``mail.wait_for(to=..., kind=...)``."""
        console = f"{self.dashboard_url}/console/"
        if self.project_id != "internal":
            console += "?" + urllib.parse.urlencode({"project": self.project_id})
        return Mailbox(self.inbucket_url, console_url=console)

    def headers(self, access: str = "server") -> dict[str, str]:
        if access not in ACCESS_TYPES:
            raise ValueError(f"access must be one of {', '.join(ACCESS_TYPES)}, not {access!r}")
        headers = {
            "x-stack-project-id": self.project_id,
            "x-stack-access-type": access,
            "x-stack-publishable-client-key": self.publishable_client_key,
        }
        if access in ("server", "admin"):
            headers["x-stack-secret-server-key"] = self.secret_server_key
        if access == "admin":
            headers["x-stack-super-secret-admin-key"] = self.super_secret_admin_key
        return headers

    def client(self, access: str = "server", **kwargs: Any) -> httpx.Client:
        """An httpx client on the backend with the ``x-stack-*`` headers for ``access``."""
        headers = {**self.headers(access), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.backend_url, headers=headers, **kwargs)

    def env(self) -> dict[str, str]:
        """Environment variables an app under test needs, like upstream's `stack emulator run`."""
        env = {
            "STACK_API_URL": self.backend_url,
            "STACK_PROJECT_ID": self.project_id,
            "STACK_PUBLISHABLE_CLIENT_KEY": self.publishable_client_key,
            "STACK_SECRET_SERVER_KEY": self.secret_server_key,
        }
        for prefix in ("NEXT_PUBLIC_", "VITE_", "EXPO_PUBLIC_"):
            env[f"{prefix}STACK_API_URL"] = self.backend_url
            env[f"{prefix}STACK_PROJECT_ID"] = self.project_id
            env[f"{prefix}STACK_PUBLISHABLE_CLIENT_KEY"] = self.publishable_client_key
        return env

    def internal_project(self) -> Project:
        """The ``internal`` project (its keys make the other projects)."""
        if self.internal is not None:
            return self.internal
        keys = (self.publishable_client_key, self.secret_server_key, self.super_secret_admin_key)
        return Project(self.backend_url, self.project_id, *keys, display_name="Stack Dashboard")

    def new_project(
        self, config: Mapping[str, Any] | None = None, *, display_name: str | None = None
    ) -> Project:
        """A fresh project with its own keys, users and teams; ``config`` in Stack Auth's
        format, e.g. ``{"auth.allowSignUp": False}``."""
        return create_project(self.internal_project(), config, display_name=display_name)

    def use_config_file(self, path: str | Path) -> Project:
        """Make ``project_id`` and the keys those of an app's Stack config file's project."""
        internal = self.internal_project()
        project = project_for_config_file(internal, path)
        self.internal = internal
        self.project_id = project.project_id
        self.publishable_client_key = project.publishable_client_key
        self.secret_server_key = project.secret_server_key
        self.super_secret_admin_key = project.super_secret_admin_key
        return project


# --------------------------------------------------------------------------- home layout


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def image_store(self) -> ImageStore:
        return ImageStore(self.images, self.locks)

    def snapshot_store(self) -> SnapshotStore:
        return SnapshotStore(self.snapshots)

    def allocator(self, base_port: int) -> PortAllocator:
        return PortAllocator(self.root, base=base_port)


# --------------------------------------------------------------------------- host facts


@dataclass(frozen=True)
class HostInfo:
    qemu: str
    version: str
    accel: AccelChoice
    capabilities: frozenset[str]
    cpu: str = "max"


_probe_cache: dict[tuple[str, str], HostInfo] = {}


def probe_host(arch: str, accel: str = "auto") -> HostInfo:
    """QEMU's path, version and migration capabilities (§5.4), and the accelerator (§5.5)."""
    qemu = qemu_binary(arch)
    cache_key = (qemu, accel)
    if cache_key in _probe_cache:
        return _probe_cache[cache_key]
    version = qemu_version(qemu)
    choice = detect_accel(accel, arch, qemu=qemu)
    sock_dir = Path(tempfile.mkdtemp(prefix="stack-emulator-probe-"))
    sock = sock_dir / "qmp.sock"
    errors = sock_dir / "stderr"
    argv = [qemu, "-machine", "none", "-nodefaults", "-display", "none",
            "-chardev", f"socket,id=m,path={sock},server=on,wait=off", "-mon", "chardev=m,mode=control"]  # fmt: skip
    try:
        with errors.open("wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            with QMPConnection(sock, timeout=15, alive=lambda: proc.poll() is None) as q:
                caps = frozenset(q.capabilities())
                with contextlib.suppress(Exception):
                    q.execute("quit")
        except MachineError as exc:
            said = errors.read_text(errors="replace")[-1000:]
            raise HostSetupError(f"probing `{' '.join(argv)}` failed: {exc}\nQEMU said: {said}") from None
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
    info = HostInfo(qemu, version, choice, caps)
    _probe_cache[cache_key] = info
    return info


# --------------------------------------------------------------------------- prepare (once)


@dataclass
class Prepared:
    settings: Settings
    home: Home
    image: Image
    host: HostInfo
    restore_method: str
    key: SnapshotKey
    snapshot: Snapshot | None
    snapshot_state: str

    def describe(self) -> list[str]:
        m = self.image.manifest
        return [
            f"image: {self.image.source} ({self.image.disk}, sha256 {self.image.digest[:12]}, "
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
    )


def prepare(settings: Settings, capture: bool = True, warn: Warn | None = None) -> Prepared:
    """Get the image and (unless cold) the snapshot. Safe to call from every worker at once."""
    warn = warn or log.warning
    home = Home(settings.home)
    home.root.mkdir(parents=True, exist_ok=True)
    reap(home)
    image = home.image_store().resolve(settings.image, accel=settings.accel)
    host = probe_host(image.manifest.arch, settings.accel)
    method = choose_restore_method(settings.restore, set(host.capabilities))
    key = snapshot_key(image, host, method)
    store = home.snapshot_store()
    snapshot: Snapshot | None = None
    if settings.cold:
        state = "off (cold boot requested)"
    elif (snapshot := store.load(key)) is not None:
        state = f"reused {key.id} (captured in {snapshot.capture_seconds:.1f} s)"
    elif not capture:
        state = f"none yet for key {key.id}"
    else:
        with locked(home.locks / f"snapshot-{key.id}.lock", f"capturing snapshot {key.id}"):
            snapshot = store.load(key)
            if snapshot is not None:
                state = f"reused {key.id} (captured by another process)"
            else:
                try:
                    snapshot = capture_snapshot(home, image, host, key, settings)
                    state = f"captured {key.id} in {snapshot.capture_seconds:.1f} s"
                    store.prune(key, home.locks)
                except StackEmulatorError as exc:
                    warn(f"snapshot capture failed, every VM will boot cold: {exc}")
                    state = f"capture failed ({type(exc).__name__}); cold boot"
    return Prepared(settings, home, image, host, method, key, snapshot, state)


# --------------------------------------------------------------------------- one VM


def _owner_record(vm_dir: Path, machine: Machine, session: str, worker: str) -> None:
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
    }
    write_atomic(vm_dir / "owner.json", json.dumps(record).encode())


def _machine_config(
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
) -> MachineConfig:
    runtime_iso = vm_dir / "runtime-config.iso"
    write_runtime_iso(runtime_iso, runtime_env(host_ports, vm_dir_host), base_env())
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
    )


def cold_guest_ports(manifest: Manifest, host_ports: dict[str, int]) -> dict[str, int]:
    """Guest ports of a cold-booted VM: the manifest's, or the host port where it says so."""
    return {s.name: s.guest_port or host_ports[s.name] for s in manifest.services}


def capture_snapshot(
    home: Home, image: Image, host: HostInfo, key: SnapshotKey, settings: Settings
) -> Snapshot:
    """Cold boot with the snapshot layout, wait for health, migrate to a file (§4)."""
    store = home.snapshot_store()
    vm_dir = home.run / f"capture-{os.getpid()}"
    block = home.allocator(settings.base_port).allocate(0, note="capture")
    staging = store.staging()
    machine: Machine | None = None
    try:
        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True)
        with Progress("capture", log) as progress:
            disk = staging / "disk.qcow2"
            create_overlay(disk, image.disk)
            guest_ports = cold_guest_ports(image.manifest, block.ports)
            cfg = _machine_config(image, host, vm_dir, disk, block.ports, guest_ports,
                                  incoming=False, share=None, vm_dir_host=None)  # fmt: skip
            machine = Machine(cfg)
            progress.step(f"cold boot ({host.accel.name}) on ports {block.first}-{block.first + 4}; "
                          f"serial log {cfg.serial_log}")  # fmt: skip
            launched = time.monotonic()
            machine.launch()
            _owner_record(vm_dir, machine, "capture", "capture")
            wait_healthy(
                image.manifest.services, block.ports, settings.boot_timeout,
                what="services of the capture VM", alive=machine.running, on_progress=progress.step,
            )  # fmt: skip
            boot = time.monotonic() - launched
            progress.step(f"all services healthy after {boot:.1f} s; QMP capture ({key.restore_method})")
            ram = staging / ram_file(key.restore_method)
            took = migrate_to_file(machine, ram, key.restore_method, timeout=300, qemu_version=host.version)
            machine.kill()
            snap = store.commit(staging, key, guest_ports, took, boot, image_disk=image.disk)
            sizes = snap.sizes()
            progress.step(f"snapshot {key.id}: migration {took:.2f} s, {sizes['logical'] / 1e6:.0f} MB "
                          f"logical, {sizes['allocated'] / 1e6:.0f} MB allocated")  # fmt: skip
            return snap
    except StackEmulatorError as exc:
        tail = _serial_tail(vm_dir / "serial.log")
        raise SnapshotError(f"{exc}\nserial log tail:\n{tail}") from None
    finally:
        if machine is not None:
            machine.kill()
        block.release()
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(vm_dir, ignore_errors=True)


def _serial_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no serial log)"


@dataclass(eq=False)
class Instance:
    """A running VM and the resources it holds."""

    handle: StackEmulator
    machine: Machine
    block: PortBlock
    prepared: Prepared
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def vm_dir(self) -> Path:
        return self.handle.vm_dir

    def serial_tail(self, lines: int = 40) -> str:
        return _serial_tail(self.handle.serial_log, lines)

    def stop(self, keep: bool = False) -> float:
        """Power down, then quit, then kill; remove the run directory unless ``keep``."""
        if self.stopped:
            return 0.0
        started = time.monotonic()
        self.stopped = True
        try:
            self.machine.shutdown(powerdown_timeout=self.prepared.settings.shutdown_timeout)
        finally:
            self.block.release()
            _registry.discard(self)
            if keep:
                (self.vm_dir / "kept").write_text("a test on this worker failed\n")
            else:
                shutil.rmtree(self.vm_dir, ignore_errors=True)
        return time.monotonic() - started


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


def _fresh_keys() -> dict[str, str]:
    return {name: secrets.token_hex(32) for name in ROTATE_NAMES}


def write_internal_pck(vm_dir: Path, key: str) -> None:
    write_atomic(vm_dir / "internal-pck", key.encode(), mode=0o600)
    os.chmod(vm_dir / "internal-pck", 0o600)


def rotate_keys(machine: Machine, vm_dir: Path, timeout: float = 60.0) -> dict[str, str]:
    """Fresh secrets through QGA ``trigger-fast-rotate`` (CONTRACT §4)."""
    keys = _fresh_keys()
    write_internal_pck(vm_dir, keys["publishable_client_key"])
    payload = "".join(f"{ROTATE_NAMES[k]}={v}\n" for k, v in keys.items()).encode()
    result = machine.qga(timeout=10).exec(
        "/usr/local/bin/trigger-fast-rotate", input_data=payload, timeout=timeout
    )
    if result.exitcode != 0:
        raise MachineError(
            f"guest command /usr/local/bin/trigger-fast-rotate exited with {result.exitcode}: "
            f"{(result.stderr or result.stdout).strip()[:500]}"
        )
    return keys


def share_host_dir(machine: Machine, timeout: float = 30.0) -> None:
    """Hot-plug virtio-9p on hostfs-port and mount it in the guest at /host (§4, §5.6)."""
    with machine.qmp() as q:
        q.execute("device_add", driver="virtio-9p-pci", id="hostfs-dev", fsdev="hostfs",
                  mount_tag="hostfs", bus="hostfs-port")  # fmt: skip
    result = machine.qga(timeout=10).exec("/usr/local/bin/mount-host-fs", ["--post-resume"], timeout=timeout)
    if result.exitcode != 0:
        raise MachineError(
            f"guest command /usr/local/bin/mount-host-fs --post-resume exited with "
            f"{result.exitcode}: {(result.stderr or result.stdout).strip()[:500]}"
        )


def set_cold_boot_clock(qga: QGAClient, vm_dir: Path, timeout: float, warn: Warn) -> None:
    """Set a cold-booted guest's clock to the host's, warning instead of failing.

    The guest takes its time from the RTC, in whole seconds, and early boot under TCG drifts:
    it ends up about a second off. That is close enough for tokens, and this boot may be the
    fallback of a resume whose clock step failed, so a failure here only warns.
    """
    try:
        qga.sync(timeout)
        step = qga.set_clock_to_host()
    except StackEmulatorError as exc:
        warn(f"cold boot in {vm_dir}: the guest's clock stays as the RTC set it, about a second off: {exc}")
        return
    log.debug("guest clock of %s was %+.3f s off the host's after a cold boot; now %+.3f s",
              vm_dir, step.before, step.after)  # fmt: skip


_placeholder_warned = False


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
    block = home.allocator(prepared.settings.base_port).allocate(index, note=str(vm_dir))
    warnings: list[str] = []

    def record(message: str) -> None:
        warn(message)
        warnings.append(message)

    try:
        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True)
        if prepared.snapshot is not None:
            try:
                inst = _boot(prepared, vm_dir, block, session, worker, resume=True, warn=record)
                inst.warnings = warnings
                return inst
            except StackEmulatorError as exc:
                message = f"snapshot resume failed in {vm_dir}, cold boot instead: {exc}"
                if isinstance(exc, SnapshotLoadError):
                    _discard_snapshot(prepared)
                    message += f" (snapshot {prepared.key.id} discarded; the next session captures it again)"
                record(message)
                for name in ("disk.qcow2", "serial.log", "owner.json"):
                    (vm_dir / name).unlink(missing_ok=True)
        inst = _boot(prepared, vm_dir, block, session, worker, resume=False, warn=record)
        inst.warnings = warnings
        return inst
    except BaseException:
        block.release()
        shutil.rmtree(vm_dir, ignore_errors=True)
        raise


def _discard_snapshot(prepared: Prepared) -> None:
    """Remove a snapshot whose RAM file does not load, so that it is captured again."""
    home = prepared.home
    lock = home.locks / f"snapshot-{prepared.key.id}.lock"
    with (
        contextlib.suppress(StackEmulatorError),
        locked(lock, f"discarding snapshot {prepared.key.id}", timeout=60),
    ):
        home.snapshot_store().discard(prepared.key)


def _boot(
    prepared: Prepared,
    vm_dir: Path,
    block: PortBlock,
    session: str,
    worker: str,
    *,
    resume: bool,
    warn: Warn | None = None,
) -> Instance:
    global _placeholder_warned
    settings, image = prepared.settings, prepared.image
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    disk = vm_dir / "disk.qcow2"
    if resume:
        snap = prepared.snapshot
        assert snap is not None
        create_overlay(disk, snap.disk)
        guest_ports = dict(snap.guest_ports)
    else:
        create_overlay(disk, image.disk)
        guest_ports = cold_guest_ports(image.manifest, block.ports)
    cfg = _machine_config(image, prepared.host, vm_dir, disk, block.ports, guest_ports,
                          incoming=resume, share=settings.share, vm_dir_host=vm_dir)  # fmt: skip
    machine = Machine(cfg)
    timeout = settings.resume_timeout if resume else settings.boot_timeout
    timeout_option = "--stack-emulator-resume-timeout" if resume else "--stack-emulator-boot-timeout"
    handle = StackEmulator(
        ports=dict(block.ports),
        project_id=image.manifest.project_id,
        publishable_client_key=image.manifest.keys["publishable_client_key"],
        secret_server_key=image.manifest.keys["secret_server_key"],
        super_secret_admin_key=image.manifest.keys["super_secret_admin_key"],
        vm_dir=vm_dir,
        boot="resume" if resume else "cold",
    )
    inst = Instance(handle, machine, block, prepared, timings)
    _registry.add(inst)
    try:
        machine.launch()
        _owner_record(vm_dir, machine, session, worker)
        timings["launch"] = time.monotonic() - t0
        qga = machine.qga(timeout=10)
        if resume:
            assert prepared.snapshot is not None
            migrate_from_file(
                machine,
                prepared.snapshot.ram,
                prepared.restore_method,
                timeout,
                qemu_version=prepared.host.version,
            )
            timings["loaded"] = time.monotonic() - t0
            qga.sync(timeout)
            timings["qga"] = time.monotonic() - t0
            # The guest's wall clock restarts at capture time: set it to the host's before
            # anything (rotation, health checks, the test) asks the backend for a token.
            step = qga.set_clock_to_host()
            timings["clock"] = time.monotonic() - t0
            log.debug("guest clock of %s was %+.3f s off the host's; now %+.3f s (%.0f ms)", vm_dir,
                      step.before, step.after, (timings["clock"] - timings["qga"]) * 1000)  # fmt: skip
        else:
            wait_healthy(image.manifest.services, block.ports, timeout, alive=machine.running,
                         what=f"services of the VM in {vm_dir}", timeout_option=timeout_option)  # fmt: skip
            timings["booted"] = time.monotonic() - t0
            if settings.share or settings.rotate:
                qga.sync(timeout)
            set_cold_boot_clock(qga, vm_dir, timeout, warn or log.warning)
            timings["clock"] = time.monotonic() - t0
        if settings.share is not None:
            share_host_dir(machine)
            timings["shared"] = time.monotonic() - t0
        if settings.rotate:
            keys = rotate_keys(machine, vm_dir)
            handle.publishable_client_key = keys["publishable_client_key"]
            handle.secret_server_key = keys["secret_server_key"]
            handle.super_secret_admin_key = keys["super_secret_admin_key"]
            timings["rotated"] = time.monotonic() - t0
        else:
            write_internal_pck(vm_dir, handle.publishable_client_key)
            if not _placeholder_warned:
                _placeholder_warned = True
                log.warning(
                    "the snapshot's placeholder API keys are in effect (no rotation): do not "
                    "expose this stack beyond 127.0.0.1. Use --stack-emulator-rotate for fresh keys."
                )
        wait_healthy(image.manifest.services, block.ports, timeout, alive=machine.running,
                     what=f"services of the VM in {vm_dir}", timeout_option=timeout_option)  # fmt: skip
        timings["healthy"] = time.monotonic() - t0
        return inst
    except BaseException as exc:
        _registry.discard(inst)
        machine.kill()
        if isinstance(exc, StackEmulatorError):
            exc.add_note(f"serial log tail ({cfg.serial_log}):\n{_serial_tail(cfg.serial_log, 25)}")
        raise


# --------------------------------------------------------------------------- leftovers


def reap(home: Home, include_kept: bool = False) -> list[str]:
    """Stop VMs whose owning process is gone and remove their run directories."""
    done: list[str] = []
    if home.run.is_dir():
        for owner_file in home.run.glob("*/owner.json"):
            try:
                record = json.loads(owner_file.read_text())
            except (OSError, ValueError):
                continue
            owner = ProcessId(record["owner"]["pid"], record["owner"]["start"])
            if owner.alive():
                continue
            vm_dir = owner_file.parent
            qemu = ProcessId(record["qemu"]["pid"], record["qemu"]["start"])
            if qemu.alive() and any(str(vm_dir) in arg for arg in qemu.cmdline()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(qemu.pid, 9)
                done.append(f"stopped leftover QEMU pid {qemu.pid} of {vm_dir}")
            sockets = Path(record.get("sockets", vm_dir))
            if sockets != vm_dir:
                shutil.rmtree(sockets, ignore_errors=True)
            if include_kept or not (vm_dir / "kept").exists():
                shutil.rmtree(vm_dir, ignore_errors=True)
                done.append(f"removed {vm_dir}")
    if home.snapshots.is_dir():
        for staging in home.snapshots.glob(".capture-*"):
            pid_text = staging.name.split("-")[1] if staging.name.count("-") >= 2 else ""
            if not pid_text.isdigit() or not ProcessId(int(pid_text), None).alive():
                shutil.rmtree(staging, ignore_errors=True)
                done.append(f"removed unfinished capture {staging}")
    PortAllocator(home.root).release_stale()
    for line in done:
        log.info("reap: %s", line)
    return done


def list_vms(home: Home) -> list[dict[str, Any]]:
    out = []
    for owner_file in sorted(home.run.glob("*/owner.json")) if home.run.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):
            record = json.loads(owner_file.read_text())
            record["owner_alive"] = ProcessId(record["owner"]["pid"], record["owner"]["start"]).alive()
            record["qemu_alive"] = ProcessId(record["qemu"]["pid"], record["qemu"]["start"]).alive()
            record["kept"] = (owner_file.parent / "kept").exists()
            out.append(record)
    return out


def new_session_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
