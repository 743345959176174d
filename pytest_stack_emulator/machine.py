"""One QEMU process: the accelerator choice, launch and shutdown, disk overlays.

The argv it runs comes from :func:`.argv.build_argv`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .arch import guest_arch, host_arch
from .argv import MachineConfig, build_argv
from .errors import HostSetupError, MachineError, VMLaunchFailure, disk_full
from .listen_backlog import widen_forwards
from .log import get_logger
from .procs import ProcessId
from .qga import QGAClient
from .qmp import QMPConnection, wait_for_socket

# builder.py imports MachineConfig from here. builder.py, iso.py and runtime.py are hashed into
# the compat image's inputs (builder.inputs_hash): editing them makes every stored image stale.
__all__ = [
    "ACCELERATORS",
    "AccelChoice",
    "Machine",
    "MachineConfig",
    "create_overlay",
    "detect_accel",
    "host_arch",
    "lasting_thread",
    "make_phantom",
    "qemu_binary",
    "qemu_img",
    "qemu_version",
    "require_version",
]

log = get_logger(__name__)

ACCELERATORS = ("auto", "kvm", "hvf", "tcg")

# The oldest QEMU this plugin runs on: Debian 12's own. mapped-ram (a faster resume) needs 9.0;
# an older QEMU resumes from a plain stream.
MIN_QEMU = (7, 2)
INSTALL_QEMU = (
    "Install QEMU 7.2 or newer, 9.0 or newer for the fastest resume (Debian 12: `apt-get install -t "
    "bookworm-backports qemu-system-x86 qemu-utils`, and qemu-system-arm for arm64 guests, or run "
    "scripts/setup; macOS: `brew install qemu`)."
)


@dataclass(frozen=True)
class AccelChoice:
    name: str
    reason: str


def _cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


def detect_accel(
    requested: str = "auto",
    arch: str | None = None,
    *,
    system: str | None = None,
    cpuinfo: str | None = None,
    kvm_path: str = "/dev/kvm",
    qemu: str | None = None,
    host: str | None = None,
) -> AccelChoice:
    """Pick the accelerator (CONTRACT §5.5).

    On x86 Linux, KVM needs a writable ``/dev/kvm`` *and* the ``vmx`` or ``svm`` CPU flag: a
    paravirtual ``/dev/kvm`` without them hangs a stock kernel, so TCG is chosen there.
    """
    if requested not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {requested!r}; choose one of {', '.join(ACCELERATORS)}")
    if requested != "auto":
        return AccelChoice(requested, "asked for explicitly")
    host = host or host_arch()
    arch = arch or host
    system = system or platform.system()
    if arch != host:
        return AccelChoice("tcg", f"guest arch {arch} differs from host arch {host}: emulated in software")
    if system == "Darwin":
        try:
            out = subprocess.run(
                [qemu or qemu_binary(arch), "-accel", "help"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if "hvf" in out.split():
            return AccelChoice("hvf", "macOS with Hypervisor.framework")
        return AccelChoice("tcg", "QEMU lists no hvf accelerator")
    if system != "Linux":
        return AccelChoice("tcg", f"no accelerator support for {system}")
    if not os.access(kvm_path, os.R_OK | os.W_OK):
        return AccelChoice("tcg", f"{kvm_path} is missing or not writable")
    if arch == "amd64":
        if cpuinfo is None:
            try:
                cpuinfo = Path("/proc/cpuinfo").read_text()
            except OSError:
                cpuinfo = ""
        flags = _cpu_flags(cpuinfo)
        if not flags & {"vmx", "svm"}:
            return AccelChoice(
                "tcg",
                f"{kvm_path} exists but the CPU has no vmx/svm flag (paravirtual KVM); "
                "a stock kernel hangs there",
            )
    return AccelChoice("kvm", f"{kvm_path} is writable and the CPU can virtualise")


def qemu_binary(arch: str) -> str:
    override = os.environ.get("STACK_EMULATOR_QEMU")
    if override:
        return override
    guest = guest_arch(arch)
    path = shutil.which(guest.qemu)
    if path is None:
        raise HostSetupError(
            f"{guest.qemu} is not on PATH ({arch} guests need it; Debian's package is {guest.apt_qemu}). "
            f"{INSTALL_QEMU}"
        )
    return path


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise HostSetupError(f"qemu-img is not on PATH. {INSTALL_QEMU}")
    return path


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostSetupError(f"`{binary} --version` failed: {exc}") from None
    match = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not match:
        raise HostSetupError(f"cannot read the QEMU version from `{binary} --version`: {out!r}")
    return match.group(1)


def require_version(binary: str, version: str) -> None:
    """A QEMU program older than :data:`MIN_QEMU` is a setup error that says how to upgrade."""
    if tuple(int(part) for part in version.split(".")[:2]) < MIN_QEMU:
        raise HostSetupError(f"{binary} is version {version}, too old for stack-emulator. {INSTALL_QEMU}")


# Threads that live as long as their process (besides the main thread): see lasting_thread().
_lasting_threads: set[threading.Thread] = set()


def lasting_thread() -> None:
    """Declare that the calling thread lives until its process ends (a pool thread that is never
    shut down, such as the plugin's early start): QEMU started from it gets the parent-death
    signal too."""
    _lasting_threads.add(threading.current_thread())


def _death_signal_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL``: QEMU dies if the thread that started it dies (pytest
    killed hard). Linux ties that signal to the starting *thread*, so it is only asked for
    from the main thread or a :func:`lasting_thread`: a worker thread that exits would
    otherwise take QEMU with it. The reaper covers the other cases."""
    thread = threading.current_thread()
    if platform.system() != "Linux" or (
        thread is not threading.main_thread() and thread not in _lasting_threads
    ):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class Machine:
    """A QEMU process with QMP and QGA sockets. Mirrors qemu.machine's launch()/shutdown()."""

    def __init__(self, cfg: MachineConfig) -> None:
        self.cfg = cfg
        self.argv = build_argv(cfg)
        self.process: subprocess.Popen[bytes] | None = None
        self.qemu_log = cfg.vm_dir / "qemu.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, timeout: float = 30.0) -> None:
        self.cfg.vm_dir.mkdir(parents=True, exist_ok=True)
        for sock in (self.cfg.qmp_socket, self.cfg.qga_socket):
            sock.unlink(missing_ok=True)
        self.cfg.serial_log.write_bytes(b"")
        log.debug("launching: %s", " ".join(self.argv))
        with self.qemu_log.open("wb") as out:
            try:
                self.process = subprocess.Popen(
                    [*_death_signal_prefix(), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise VMLaunchFailure(None, self.argv, str(exc)) from None
        (self.cfg.vm_dir / "qemu.pid").write_text(f"{self.process.pid}\n")
        try:
            wait_for_socket(self.cfg.qmp_socket, timeout, alive=self.running, hint=self.hint)
        except MachineError:
            self._raise_launch_failure()
            raise
        if not self.running():
            self._raise_launch_failure()
        widen_forwards(self.process.pid, self.cfg.host_ports.values())

    @property
    def hint(self) -> str:
        return f"See {self.qemu_log} and {self.cfg.serial_log}."

    def _raise_launch_failure(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            self.kill()
            code = self.process.poll()
        raise VMLaunchFailure(code, self.argv, self.output())

    def output(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def process_id(self) -> ProcessId:
        assert self.process is not None
        return ProcessId.of(self.process.pid)

    @contextlib.contextmanager
    def qmp(self, timeout: float = 30.0) -> Iterator[QMPConnection]:
        with QMPConnection(self.cfg.qmp_socket, timeout=timeout, alive=self.running, hint=self.hint) as conn:
            yield conn

    def qga(self, timeout: float = 30.0) -> QGAClient:
        return QGAClient(self.cfg.qga_socket, timeout=timeout)

    def wait(self, timeout: float) -> bool:
        """Wait for QEMU to exit; True if it did."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def shutdown(self, powerdown_timeout: float = 2.0, quit_timeout: float = 2.0) -> None:
        """QMP ``system_powerdown``, a bounded wait, then ``quit``, then a kill. Never raises."""
        if self.process is None:
            return
        try:
            if self.running() and powerdown_timeout > 0:
                with contextlib.suppress(Exception), self.qmp(timeout=2.0) as q:
                    q.execute("system_powerdown")
                self.wait(powerdown_timeout)
            if self.running():
                with contextlib.suppress(Exception), self.qmp(timeout=2.0) as q:
                    q.execute("quit")
                self.wait(quit_timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            if not self.wait(2.0):
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        for path in (self.cfg.qmp_socket, self.cfg.qga_socket, self.cfg.vm_dir / "qemu.pid"):
            path.unlink(missing_ok=True)
        if self.cfg.sockets != self.cfg.vm_dir:
            shutil.rmtree(self.cfg.sockets, ignore_errors=True)


def make_phantom(path: Path, size: int = 1024 * 1024) -> None:
    """A drive of zeros that holds a device slot (CONTRACT §3)."""
    if not path.exists() or path.stat().st_size != size:
        with path.open("wb") as f:
            f.truncate(size)


def create_overlay(path: Path, backing: Path) -> None:
    path.unlink(missing_ok=True)
    cmd = [qemu_img(), "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "qcow2", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 and "No space left" in result.stderr:
        path.unlink(missing_ok=True)
        raise disk_full(path.parent, f"creating the disk overlay {path}", result.stderr.strip())
    if result.returncode != 0:
        raise MachineError(
            f"`{' '.join(cmd)}` failed: {result.stderr.strip()}. Check that {backing} exists "
            "and is a readable qcow2 image."
        )
