"""The build's host side: commands with progress while they run, the tail of their output
when they fail, and what an interrupted build left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_stack_emulator import build_host
from pytest_stack_emulator.build_host import mounts_under, remove_dead_builds, run_command
from pytest_stack_emulator.errors import BuildError, HostSetupError


def test_a_long_command_reports_that_it_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_host, "HEARTBEAT_S", 0.1)
    lines: list[str] = []
    beats: list[tuple[float, str]] = []
    run_command(["sh", "-c", "echo first; sleep 0.5; echo second"], "a step", lines.append,
                lambda elapsed, last: beats.append((elapsed, last)))  # fmt: skip
    assert lines == ["first", "second"]
    assert len(beats) >= 2
    assert sum(last == "first" for _, last in beats) >= 2
    assert {last for _, last in beats} <= {"first", "second"}
    assert beats[-1][0] >= 0.3


def test_a_failing_command_names_itself_and_shows_its_output() -> None:
    with pytest.raises(BuildError) as err:
        run_command(["sh", "-c", "echo 'E: no such package'; exit 3"], "mmdebstrap")
    text = str(err.value)
    assert "mmdebstrap failed (exit code 3)" in text
    assert "command: sh -c" in text
    assert "E: no such package" in text


def test_ctrl_c_stops_the_command_and_its_children(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """KeyboardInterrupt while waiting: the command's whole process group is stopped, a child
    that holds the output pipe too (as dpkg under mmdebstrap does), and nothing waits on it."""
    monkeypatch.setattr(build_host, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(build_host, "INTERRUPT_GRACE_S", 0.5)  # sh's background job ignores SIGINT
    pids = tmp_path / "pids"

    def interrupt(elapsed: float, last: str) -> None:
        raise KeyboardInterrupt

    script = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    with pytest.raises(KeyboardInterrupt):
        run_command(["sh", "-c", script], "sleep", on_beat=interrupt)
    for pid in map(int, pids.read_text().split()):
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, pid


MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 22 0:40 / /store/.build-compat-arm64-123/rootfs/proc ro,relatime - proc proc ro
81 22 0:41 / /store/.build-compat-arm64-123/rootfs/dev/pts rw - devpts none rw
82 81 0:42 / /store/.build-compat-arm64-123/rootfs/dev/pts/deeper rw - tmpfs none rw
83 22 0:43 / /store/.build-compat-arm64-1234/rootfs/proc ro - proc proc ro
84 22 0:44 / /store/with\\040space/proc ro - proc proc ro
"""


def test_mounts_under_a_work_dir_deepest_first() -> None:
    found = mounts_under(Path("/store/.build-compat-arm64-123"), MOUNTINFO)
    assert found == [
        Path("/store/.build-compat-arm64-123/rootfs/dev/pts/deeper"),
        Path("/store/.build-compat-arm64-123/rootfs/dev/pts"),
        Path("/store/.build-compat-arm64-123/rootfs/proc"),
    ]
    assert mounts_under(Path("/store/with space"), MOUNTINFO) == [Path("/store/with space/proc")]


def test_a_dead_build_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    dead = tmp_path / f".build-compat-arm64-{done.pid}"
    live = tmp_path / f".build-compat-amd64-{os.getpid()}"
    for work in (dead, live):
        (work / "rootfs" / "etc").mkdir(parents=True)
    assert remove_dead_builds(tmp_path) == [dead]
    assert not dead.exists()
    assert live.is_dir()


def test_a_foreign_arch_without_binfmt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        build_host.shutil, "which", lambda name: None if name == "arch-test" else "/usr/bin/x"
    )
    with pytest.raises(HostSetupError, match=r"apt-get install arch-test.*qemu-user-static"):
        build_host.check_foreign_exec("arm64")
