"""Process facts: the Linux source against live processes here; the macOS source against
answers laid out as macOS gives them (no Mac here: recorded ``ps``/``sysctl`` outputs)."""

import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_stack_emulator import procinfo
from pytest_stack_emulator.procinfo import (
    CTL_KERN,
    KERN_ARGMAX,
    KERN_PROC,
    KERN_PROC_PID,
    KERN_PROCARGS2,
    KINFO_PROC_SIZE,
    DarwinProcs,
    LinuxProcs,
    for_platform,
    parse_kinfo_proc,
    parse_procargs2,
)
from pytest_stack_emulator.procs import ProcessId, start_time

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marker arg"])
    yield child
    child.kill()
    child.wait()


@linux
def test_linux_start_time_is_fixed_for_a_live_process(sleeper: subprocess.Popen[bytes]) -> None:
    linux_procs = LinuxProcs()
    first = linux_procs.start_time(sleeper.pid)
    assert isinstance(first, int)
    assert linux_procs.start_time(sleeper.pid) == first
    assert linux_procs.start_time(os.getpid()) == ProcessId.current().start != first
    assert ProcessId.of(sleeper.pid).alive()
    assert not ProcessId(sleeper.pid, (first or 0) + 1).alive()  # the pid reused by another process


@linux
def test_linux_zombie_and_reaped_child_are_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    before = ProcessId.of(child.pid)
    deadline = time.monotonic() + 30
    while "Z" not in Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]:
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert start_time(child.pid) is None  # exited, not waited for: a zombie
    assert not before.alive()
    child.wait()
    assert start_time(child.pid) is None
    assert LinuxProcs().cmdline(child.pid) == []


@linux
def test_linux_cmdline_and_memory(sleeper: subprocess.Popen[bytes]) -> None:
    assert ProcessId.of(sleeper.pid).cmdline()[-1] == "marker arg"
    mem = LinuxProcs().memory_mb(os.getpid())
    assert set(mem) == {"rss", "pss", "uss"}
    assert 0 < mem["uss"] <= mem["pss"] <= mem["rss"]
    with pytest.raises(FileNotFoundError, match="smaps_rollup"):
        LinuxProcs().memory_mb(2**22 + 1)  # above pid_max: no such process
    assert LinuxProcs().cpu_model() == procinfo.host().cpu_model() != ""


def test_platform_selects_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(for_platform("linux"), LinuxProcs)
    assert isinstance(for_platform("darwin"), DarwinProcs)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert isinstance(procinfo.host(), DarwinProcs)


def kinfo_proc(pid: int, seconds: int, micros: int, stat: int = 2) -> bytes:
    """A struct kinfo_proc as 64-bit macOS lays it out (SRUN = 2, SZOMB = 5)."""
    raw = bytearray(KINFO_PROC_SIZE)
    struct.pack_into("<qi", raw, 0, seconds, micros)
    raw[36] = stat
    struct.pack_into("<i", raw, 40, pid)
    return bytes(raw)


def procargs2(argv: list[str], exe: str = "/opt/homebrew/bin/qemu-system-aarch64") -> bytes:
    """A KERN_PROCARGS2 answer: argc, the executable path, NUL padding, argv, environment."""
    return (
        struct.pack("<i", len(argv)) + exe.encode() + b"\0" * 7 + b"\0".join(a.encode() for a in argv)
        + b"\0PATH=/usr/bin\0HOME=/Users/me\0"
    )  # fmt: skip


def test_darwin_start_time_from_kinfo_proc() -> None:
    assert parse_kinfo_proc(kinfo_proc(4242, 1_700_000_000, 123_456), 4242) == 1_700_000_000_123_456
    assert parse_kinfo_proc(kinfo_proc(4242, 1_700_000_000, 123_456, stat=5), 4242) is None  # zombie
    assert parse_kinfo_proc(b"", 4242) is None  # no such process: sysctl answers 0 bytes
    assert parse_kinfo_proc(kinfo_proc(17, 1, 2), 4242) is None


def test_darwin_argv_from_procargs2() -> None:
    argv = ["qemu-system-aarch64", "-name", "vm", "-chardev", "socket,path=/Users/me/my run/monitor.sock"]
    assert parse_procargs2(procargs2(argv)) == argv
    assert parse_procargs2(procargs2([])) == []
    assert parse_procargs2(None) == parse_procargs2(b"\0\0") == []


class FakeDarwin:
    """sysctl and ps as a Mac answers them, for a table of processes."""

    def __init__(self) -> None:
        self.procs: dict[int, tuple[bytes, list[str]]] = {}
        self.calls: list[list[int] | list[str]] = []

    def sysctl(self, mib: list[int], size: int) -> bytes | None:
        self.calls.append(mib)
        if mib == [CTL_KERN, KERN_ARGMAX]:
            return struct.pack("<i", 1024 * 1024)
        if mib[:3] == [CTL_KERN, KERN_PROC, KERN_PROC_PID]:
            assert size >= KINFO_PROC_SIZE
            return self.procs[mib[3]][0] if mib[3] in self.procs else b""
        if mib[:2] == [CTL_KERN, KERN_PROCARGS2]:
            assert size == 1024 * 1024
            return procargs2(self.procs[mib[2]][1]) if mib[2] in self.procs else None
        raise AssertionError(f"unexpected sysctl {mib}")

    def run(self, argv: list[str]) -> str:
        self.calls.append(argv)
        outputs = {
            ("ps", "-o", "rss=", "-p", "4242"): "  524288\n",
            ("sysctl", "-n", "machdep.cpu.brand_string"): "Apple M2 Pro\n",
        }
        return outputs.get(tuple(argv), "")


def test_process_identity_on_a_faked_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    mac = FakeDarwin()
    mac.procs[4242] = (kinfo_proc(4242, 1_700_000_000, 5), ["qemu-system-aarch64", "-name", "/run/vm"])
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(procinfo, "_libc_sysctl", mac.sysctl)
    monkeypatch.setattr(procinfo, "_run", mac.run)
    qemu = ProcessId.of(4242)
    assert qemu == ProcessId(4242, 1_700_000_000_000_005)
    assert qemu.alive()
    assert qemu.cmdline() == ["qemu-system-aarch64", "-name", "/run/vm"]
    mac.procs[4242] = (kinfo_proc(4242, 1_700_000_000, 5, stat=5), [])
    assert not qemu.alive()  # a zombie is gone
    mac.procs[4242] = (kinfo_proc(4242, 1_700_000_099, 0), ["bash"])
    assert not qemu.alive()  # the pid now names another process
    del mac.procs[4242]
    assert not qemu.alive()
    assert qemu.cmdline() == []
    assert start_time(0) is None
    assert start_time(-1) is None
    assert [CTL_KERN, KERN_PROC, KERN_PROC_PID, 0] not in mac.calls  # pid 0 is the kernel


def test_darwin_memory_is_rss_only_and_cpu_from_sysctl() -> None:
    mac = FakeDarwin()
    darwin = DarwinProcs(mac.sysctl, mac.run)
    assert darwin.memory_mb(4242) == {"rss": 512.0}
    with pytest.raises(OSError, match="ps -o rss= -p 99"):
        darwin.memory_mb(99)
    assert darwin.cpu_model() == "Apple M2 Pro"
    assert ["ps", "-o", "rss=", "-p", "4242"] in mac.calls
