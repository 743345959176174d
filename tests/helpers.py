"""Helpers shared by this project's tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

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
