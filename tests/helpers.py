"""Helpers shared by this project's tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.emulator import StackEmulator

CACHE_HOME = Path(os.environ.get("STACK_EMULATOR_HOME") or "~/.stack/emulator").expanduser()
# Away from the default block, so a developer's own emulator on 26700 is left alone;
# STACK_EMULATOR_TEST_BASE_PORT moves it, so that two checkouts can run their tests at once.
TEST_BASE_PORT = int(os.environ.get("STACK_EMULATOR_TEST_BASE_PORT", "27700"))


def make_home(root: Path) -> Path:
    """A stack-emulator home whose images/ is the shared image cache."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / "images"
    if not link.exists():
        link.symlink_to(CACHE_HOME / "images", target_is_directory=True)
    return root


def qemu_pids(marker: str) -> list[int]:
    """PIDs of qemu-system processes whose command line contains ``marker``."""
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{marker}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@contextlib.contextmanager
def resumed_stack(vm_home: Path, base_port: int, worker: str) -> Iterator[StackEmulator]:
    """One stack of the compat image (resumed from its snapshot) on its own port block."""
    settings = resolve({"image": "compat", "home": vm_home, "base_port": base_port}, {}, {})
    inst = emulator.start(emulator.prepare(settings), worker=worker)
    try:
        yield inst.handle
    finally:
        inst.stop()


def copy_home(src: Path, dst: Path) -> Path:
    """A new home at ``dst`` with a copy of ``src``'s snapshots (sparse: about a second), so
    that a test may break or interrupt things without touching the shared snapshot."""
    make_home(dst)
    if (src / "snapshots").is_dir():
        subprocess.run(["cp", "-a", "--sparse=always", str(src / "snapshots"), str(dst)], check=True)
    return dst


def snapshot_dirs(home: Path) -> list[Path]:
    """Every entry of the home's snapshot store, unfinished captures (``.capture-*``) included."""
    return sorted((home / "snapshots").iterdir()) if (home / "snapshots").is_dir() else []


def session_argv(home: Path, base_port: int, *args: str) -> list[str]:
    """A pytest session with the plugin on, as a user runs it."""
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-W", "always", "--stack-emulator",
        "--stack-emulator-image=compat", f"--stack-emulator-home={home}", f"--stack-emulator-base-port={base_port}",
        *args,
    ]  # fmt: skip


def start_session(
    cwd: Path, home: Path, base_port: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a session in its own process group, as a terminal would (Ctrl-C reaches the group)."""
    return subprocess.Popen(
        session_argv(home, base_port, *args), cwd=cwd, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # SIGINT must not be inherited as ignored, or Ctrl-C would not reach pytest.
        preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)),
    )  # fmt: skip


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen[str] | None = None
) -> None:
    """Poll ``condition`` every 0.2 s; fail naming ``what`` (and the session's output) on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the session ended before {what}:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def listening_ports(pid: int) -> dict[str, int]:
    """The TCP sockets process ``pid`` listens on: local address (``127.0.0.1:26701``) -> backlog."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3]: int(line.split()[2]) for line in out.splitlines() if f"pid={pid}," in line}


def read_json_block(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON object `stack-emulator start --json` prints first, read from its stdout while
    the stack keeps running."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            break
    block: dict[str, Any] = json.loads("".join(lines))
    return block
