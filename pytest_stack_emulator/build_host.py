"""What an image build needs from the host, and the host commands it runs.

The tools (mmdebstrap, mkfs.ext4, qemu-img) and root; for a foreign architecture, qemu-user
registered with binfmt_misc. A command runs with its output streamed, a line of progress
every :data:`HEARTBEAT_S` while it runs, and the tail of its output in the error
when it fails. A build killed mid-way leaves its work directory with mmdebstrap's mounts in it:
:func:`remove_work_dir` unmounts them before it removes anything.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .arch import AMD64, guest_arch, host_arch
from .errors import BuildError, HostSetupError
from .log import get_logger
from .procs import ProcessId

log = get_logger(__name__)

HEARTBEAT_S = 20.0
# How long an interrupted command may take to clean up after SIGINT (mmdebstrap unmounts).
INTERRUPT_GRACE_S = 20.0


def check_host_tools(arch: str = AMD64) -> None:
    missing = [t for t in ("mmdebstrap", "mkfs.ext4", "qemu-img") if shutil.which(t) is None]
    if missing:
        raise HostSetupError(
            f"building the compat image needs {', '.join(missing)} on PATH. On Debian: "
            "`apt-get install mmdebstrap e2fsprogs qemu-utils` (or run scripts/setup)."
        )
    if arch != host_arch():
        check_foreign_exec(arch)
    if os.geteuid() != 0:
        raise HostSetupError(
            "building the compat image runs mmdebstrap as root, so that file owners in the guest "
            f"are right. Run `sudo stack-emulator build-image --arch {arch}`, or pull a built image instead."
        )


def check_foreign_exec(arch: str) -> None:
    """A foreign root filesystem runs its packages' scripts through qemu-user: mmdebstrap
    needs ``arch-test`` and a binfmt_misc entry for the architecture."""
    if shutil.which("arch-test") is None:
        raise HostSetupError(
            f"building an {arch} image on this {host_arch()} host needs arch-test and qemu-user "
            "with binfmt_misc. On Debian: `apt-get install arch-test` and `apt-get install -t "
            "bookworm-backports qemu-user-static`, or run scripts/setup."
        )
    result = subprocess.run(["arch-test", arch], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        entry = f"/usr/lib/binfmt.d/qemu-{guest_arch(arch).qemu.removeprefix('qemu-system-')}.conf"
        raise HostSetupError(
            f"this host cannot run {arch} programs (`arch-test {arch}` said: "
            f"{(result.stdout + result.stderr).strip()}). Install qemu-user-static and register "
            "it with binfmt_misc: `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` if "
            f"it is not mounted, then `cat {entry} > /proc/sys/fs/binfmt_misc/register` "
            "(scripts/setup does both)."
        )


def run_command(
    cmd: list[str],
    what: str,
    on_line: Callable[[str], None] | None = None,
    on_beat: Callable[[float, str], None] | None = None,
) -> None:
    """Run a host command, streaming its output to ``on_line``, and ``on_beat(elapsed, last
    line)`` every :data:`HEARTBEAT_S` while it runs (most of mmdebstrap's output is not worth
    showing, so a long step still says where it is). On failure, the error shows the command and
    the tail of its output.

    The command runs in a process group of its own. On Ctrl-C (or any exception here) the whole
    group gets SIGINT and time to clean up (mmdebstrap unmounts what it mounted), then SIGTERM,
    then SIGKILL: its children (package scripts under qemu-user) hold the output pipe too, and
    they must not outlive the build."""
    log.debug("running: %s", " ".join(cmd))
    tail: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        start_new_session=True,
    )  # fmt: skip
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for raw in stdout:
            lines.put(raw.rstrip())
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True, name=f"output of {what}")
    reader.start()
    next_beat = started + HEARTBEAT_S
    try:
        while True:
            if time.monotonic() >= next_beat:
                next_beat += HEARTBEAT_S
                if on_beat:
                    on_beat(time.monotonic() - started, tail[-1] if tail else "")
            try:
                line = lines.get(timeout=max(0.0, next_beat - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                break
            tail = [*tail[-40:], line]
            if on_line:
                on_line(line)
        code = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    finally:
        # Once every writer is gone the reader sees the end of the pipe; only then close it
        # (closing it under a blocked reader would wait for that reader).
        reader.join(timeout=10)
        if not reader.is_alive():
            stdout.close()
    if code != 0:
        raise BuildError(
            f"{what} failed (exit code {code}).\ncommand: {' '.join(cmd)}\n" + "\n".join(tail[-25:])
        )


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop a command and every process of its group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is empty
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()  # reap the leader, so that it does not count as alive
            time.sleep(0.1)
        if not _group_alive(proc.pid):
            break
    proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mounts_under(path: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below ``path``, deepest first (Linux's /proc/self/mountinfo)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    root = str(path.resolve())
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point == root or point.startswith(root + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a path as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def remove_work_dir(work: Path) -> None:
    """Remove a build's work directory, unmounting first whatever a killed mmdebstrap left
    mounted in it (its root's /proc, /sys, /dev/pts...), so nothing outside is touched."""
    for point in mounts_under(work):
        result = subprocess.run(["umount", "--lazy", str(point)], capture_output=True, text=True, check=False)
        if result.returncode != 0 and point in mounts_under(work):  # not just gone meanwhile
            raise BuildError(
                f"cannot unmount {point}, left mounted by an interrupted build: "
                f"{result.stderr.strip()}. Unmount it (`umount -l {point}`), then remove {work}."
            )
    shutil.rmtree(work, ignore_errors=True)


def remove_dead_builds(store_dir: Path) -> list[Path]:
    """Work directories (``.build-*-<pid>``) of builds whose process is gone."""
    removed = []
    for work in store_dir.glob(".build-*"):
        pid = work.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not ProcessId(int(pid), None).alive():
            remove_work_dir(work)
            log.info("removed %s, left by an interrupted build (pid %s)", work, pid)
            removed.append(work)
    return removed
