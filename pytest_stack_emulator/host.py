"""Host facts: QEMU's path, version, migration capabilities and the accelerator."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .arch import cpu_model
from .errors import HostSetupError, MachineError
from .machine import AccelChoice, detect_accel, qemu_binary, qemu_img, qemu_version, require_version
from .qmp import QMPConnection


@dataclass(frozen=True)
class HostInfo:
    qemu: str
    version: str
    accel: AccelChoice
    capabilities: frozenset[str]
    cpu: str = "max"


_probe_cache: dict[tuple[str, str, str], HostInfo] = {}


def probe_host(arch: str, accel: str = "auto") -> HostInfo:
    """QEMU's path, version and migration capabilities (§5.4), and the accelerator (§5.5).
    A missing or too old QEMU or qemu-img is a :class:`HostSetupError` that says how to install it."""
    qemu = qemu_binary(arch)
    cache_key = (qemu, accel, arch)
    if cache_key in _probe_cache:
        return _probe_cache[cache_key]
    version = qemu_version(qemu)
    require_version(qemu, version)
    image_tool = qemu_img()
    require_version(image_tool, qemu_version(image_tool))
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
    info = HostInfo(qemu, version, choice, caps, cpu_model(arch, choice.name))
    _probe_cache[cache_key] = info
    return info
