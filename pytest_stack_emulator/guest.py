"""Operations inside a running guest over QGA and QMP: key rotation, the host share, the clock."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .contract import KEY_ENV_NAMES, MOUNT_HOST_FS_COMMAND, ROTATE_COMMAND
from .errors import MachineError, StackEmulatorError
from .iso import write_atomic
from .log import Warn, get_logger
from .machine import Machine
from .qga import QGAClient

log = get_logger(__name__)


def _fresh_keys() -> dict[str, str]:
    return {name: secrets.token_hex(32) for name in KEY_ENV_NAMES}


def write_internal_pck(vm_dir: Path, key: str) -> None:
    write_atomic(vm_dir / "internal-pck", key.encode(), mode=0o600)
    os.chmod(vm_dir / "internal-pck", 0o600)


def rotate_keys(machine: Machine, vm_dir: Path, timeout: float = 60.0) -> dict[str, str]:
    """Fresh secrets through QGA ``trigger-fast-rotate`` (CONTRACT §4)."""
    keys = _fresh_keys()
    write_internal_pck(vm_dir, keys["publishable_client_key"])
    payload = "".join(f"{KEY_ENV_NAMES[k]}={v}\n" for k, v in keys.items()).encode()
    result = machine.qga(timeout=10).exec(ROTATE_COMMAND, input_data=payload, timeout=timeout)
    if result.exitcode != 0:
        raise MachineError(
            f"guest command {ROTATE_COMMAND} exited with {result.exitcode}: "
            f"{(result.stderr or result.stdout).strip()[:500]}"
        )
    return keys


def share_host_dir(machine: Machine, timeout: float = 30.0) -> None:
    """Hot-plug virtio-9p on hostfs-port and mount it in the guest at /host (§4, §5.6)."""
    with machine.qmp() as q:
        q.execute("device_add", driver="virtio-9p-pci", id="hostfs-dev", fsdev="hostfs",
                  mount_tag="hostfs", bus="hostfs-port")  # fmt: skip
    result = machine.qga(timeout=10).exec(MOUNT_HOST_FS_COMMAND, ["--post-resume"], timeout=timeout)
    if result.exitcode != 0:
        raise MachineError(
            f"guest command {MOUNT_HOST_FS_COMMAND} --post-resume exited with "
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
