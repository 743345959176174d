"""What the host OS tells about a process (start time, state, command line, memory) and about
its CPU: ``/proc`` on Linux; ``sysctl(3)`` and ``ps`` on macOS.

:func:`for_platform` picks the source for a ``sys.platform`` value; tests build a
:class:`DarwinProcs` with recorded ``sysctl``/``ps`` answers, since macOS cannot run here. The
macOS source was written against Apple's headers and never run on a real Mac.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

# A process's memory in MB: "rss" always; "pss" and "uss" (pages no other process maps) where the
# host can tell them.
Memory = dict[str, float]


class ProcSource(Protocol):
    def start_time(self, pid: int) -> int | None:
        """A number fixed for the life of ``pid`` (its start time), or None if it is gone. A
        zombie (exited, not yet waited for) is gone."""

    def cmdline(self, pid: int) -> list[str]:
        """Its argv, or [] if it is gone or not ours to read."""

    def memory_mb(self, pid: int) -> Memory:
        """Its memory; raises OSError if it cannot be read."""

    def cpu_model(self) -> str:
        """The CPU's marketing name, or "" if unknown."""


class LinuxProcs:
    def start_time(self, pid: int) -> int | None:
        """Clock ticks from boot to its start (field 22 of ``/proc/<pid>/stat``)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # The command name can hold spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None
        return int(fields[19])

    def cmdline(self, pid: int) -> list[str]:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]

    def memory_mb(self, pid: int) -> Memory:
        """RSS, PSS and USS from ``/proc/<pid>/smaps_rollup``."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                fields[key] = int(rest.split()[0]) / 1024
        return {
            "rss": fields["Rss"],
            "pss": fields["Pss"],
            "uss": fields["Private_Clean"] + fields["Private_Dirty"],
        }

    def cpu_model(self) -> str:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        return ""


# <sys/sysctl.h>
CTL_KERN, KERN_ARGMAX, KERN_PROC, KERN_PROC_PID, KERN_PROCARGS2 = 1, 8, 14, 1, 49
# struct kinfo_proc on 64-bit macOS (648 bytes) starts with struct extern_proc: a union whose
# struct timeval p_starttime (int64 tv_sec, int32 tv_usec) is at 0, then p_vmspace (16),
# p_sigacts (24), int p_flag (32), char p_stat (36), pid_t p_pid (40).
KINFO_PROC_SIZE = 648
_STARTTIME = struct.Struct("<qi")
_P_STAT, _P_PID = 36, 40
SZOMB = 5  # p_stat of a zombie

Sysctl = Callable[[list[int], int], bytes | None]
Run = Callable[[list[str]], str]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.sysctl.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_uint, ctypes.c_void_p,
                            ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p, ctypes.c_size_t]  # fmt: skip
    return libc


def _libc_sysctl(mib: list[int], size: int) -> bytes | None:
    """``sysctl(mib)`` into a buffer of ``size`` bytes; None if there is no such process (or it
    is not ours to read)."""
    libc = _libc()
    name = (ctypes.c_int * len(mib))(*mib)
    buf = ctypes.create_string_buffer(size)
    length = ctypes.c_size_t(size)
    if libc.sysctl(name, len(mib), buf, ctypes.byref(length), None, 0) != 0:
        code = ctypes.get_errno()
        if code in (errno.ESRCH, errno.EINVAL, errno.EPERM):
            return None
        raise OSError(code, f"sysctl {mib}: {os.strerror(code)}")
    return buf.raw[: length.value]


def _run(argv: list[str]) -> str:
    """A command's output; "" if it fails (``ps -p`` exits 1 when the process is gone)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                              env={**os.environ, "LC_ALL": "C"}, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def parse_kinfo_proc(raw: bytes | None, pid: int) -> int | None:
    """Start time in microseconds since the epoch from a ``KERN_PROC_PID`` answer; None for no
    such process (an empty answer) or a zombie."""
    if not raw or len(raw) < _P_PID + 4:
        return None
    (found,) = struct.unpack_from("<i", raw, _P_PID)
    if found != pid or raw[_P_STAT] == SZOMB:
        return None
    seconds, micros = _STARTTIME.unpack_from(raw, 0)
    return int(seconds) * 1_000_000 + int(micros)


def parse_procargs2(raw: bytes | None) -> list[str]:
    """argv from a ``KERN_PROCARGS2`` answer: int32 argc, the executable's path, NUL padding,
    then argc NUL-terminated arguments (then the environment, not read)."""
    if not raw or len(raw) < 4:
        return []
    (argc,) = struct.unpack_from("<i", raw, 0)
    end = raw.find(b"\0", 4)  # the executable's path ends
    if end < 0:
        return []
    while end < len(raw) and raw[end] == 0:
        end += 1
    args = raw[end:].split(b"\0")[:argc]
    return [arg.decode(errors="replace") for arg in args]


class DarwinProcs:
    def __init__(self, sysctl: Sysctl = _libc_sysctl, run: Run = _run) -> None:
        self.sysctl = sysctl
        self.run = run

    def start_time(self, pid: int) -> int | None:
        """Microseconds from the epoch to its start (``kinfo_proc.kp_proc.p_starttime``)."""
        if pid <= 0:
            return None
        # Room to spare: the kernel answers with its own size of the struct.
        return parse_kinfo_proc(
            self.sysctl([CTL_KERN, KERN_PROC, KERN_PROC_PID, pid], 2 * KINFO_PROC_SIZE), pid
        )

    def cmdline(self, pid: int) -> list[str]:
        try:
            limit = self.sysctl([CTL_KERN, KERN_ARGMAX], 4)
            size = struct.unpack("<i", limit)[0] if limit and len(limit) == 4 else 1 << 20
            return parse_procargs2(self.sysctl([CTL_KERN, KERN_PROCARGS2, pid], size))
        except OSError:
            return []

    def memory_mb(self, pid: int) -> Memory:
        """RSS only (``ps -o rss=``, in KiB): PSS and USS need root tools on macOS."""
        out = self.run(["ps", "-o", "rss=", "-p", str(pid)]).strip()
        if not out.isdigit():
            raise OSError(errno.ESRCH, f"`ps -o rss= -p {pid}` gave no memory figure: is pid {pid} gone?")
        return {"rss": int(out) / 1024}

    def cpu_model(self) -> str:
        return self.run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()


def for_platform(platform: str) -> ProcSource:
    """The source for a ``sys.platform`` value; other systems get the Linux one (``/proc``)."""
    return DarwinProcs(_libc_sysctl, _run) if platform == "darwin" else LinuxProcs()


def host() -> ProcSource:
    """The source for this host (read ``sys.platform`` each call, so tests can fake it)."""
    return for_platform(sys.platform)
