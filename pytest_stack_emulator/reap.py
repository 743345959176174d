"""Leftovers of earlier runs: stop VMs whose owner is gone, list VMs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .home import Home
from .log import get_logger
from .ports import PortAllocator, block_ports
from .procs import ProcessId

log = get_logger(__name__)


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
            done += remove_vm(owner_file.parent, record, keep_kept=not include_kept)
        done += _remove_unowned_logs(home.run)
    if home.snapshots.is_dir():
        for staging in home.snapshots.glob(".capture-*"):
            pid_text = staging.name.split("-")[1] if staging.name.count("-") >= 2 else ""
            if not pid_text.isdigit() or not ProcessId(int(pid_text), None).alive():
                shutil.rmtree(staging, ignore_errors=True)
                done.append(f"removed unfinished capture {staging}")
    for first in PortAllocator(home.root).release_stale():
        done.append(f"freed ports {first}-{max(block_ports(first).values())} (their process is gone)")
    for line in done:
        log.info("reap: %s", line)
    return done


def remove_vm(vm_dir: Path, record: dict[str, Any], keep_kept: bool = False) -> list[str]:
    """Kill a VM's QEMU (if it still runs this VM) and remove its sockets and run directory."""
    done: list[str] = []
    qemu = ProcessId(record["qemu"]["pid"], record["qemu"]["start"])
    if qemu.alive() and any(str(vm_dir) in arg for arg in qemu.cmdline()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(qemu.pid, 9)
        done.append(f"stopped leftover QEMU pid {qemu.pid} of {vm_dir}")
    sockets = Path(record.get("sockets", vm_dir))
    if sockets != vm_dir:
        shutil.rmtree(sockets, ignore_errors=True)
    if not (keep_kept and (vm_dir / "kept").exists()):
        shutil.rmtree(vm_dir, ignore_errors=True)
        done.append(f"removed {vm_dir}")
    return done


def _remove_unowned_logs(run: Path) -> list[str]:
    """Logs of detached owners that died before their VM was up (``<id>.log`` in run/): the
    owner holds an flock on its log while it lives."""
    done: list[str] = []
    for log_file in run.glob("*.log"):
        try:
            with log_file.open("rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is still starting its stack
        except OSError:
            continue
        log_file.unlink(missing_ok=True)
        done.append(f"removed {log_file} (its owner exited before its stack was up)")
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
