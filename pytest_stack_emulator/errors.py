"""The exceptions this package raises.

Every message names what failed (a file, a port, a command) and what to do next.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from pathlib import Path


class StackEmulatorError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(StackEmulatorError):
    """A setting has a value that cannot be used."""


class HostSetupError(StackEmulatorError):
    """A host tool (QEMU, mmdebstrap, ...) is missing or too old."""


class ImageError(StackEmulatorError):
    """An image is missing, corrupt, or could not be fetched."""


class BuildError(StackEmulatorError):
    """Building the compat image failed."""


class ProvisioningFailed(BuildError):
    """The guest reported a provisioning failure on its serial console."""


class ProvisioningTimeout(BuildError):
    """The provisioning boot did not finish in time."""


class PortsUnavailable(StackEmulatorError):
    """No free block of host ports could be found."""


class MachineError(StackEmulatorError):
    """A QEMU process failed or misbehaved."""


class VMLaunchFailure(MachineError):
    """QEMU exited during start-up. Keeps the command and what QEMU printed."""

    def __init__(self, exitcode: int | None, command: Sequence[str], output: str) -> None:
        self.exitcode = exitcode
        self.command = list(command)
        self.output = output
        tail = output.strip()[-2000:] or "(QEMU printed nothing)"
        super().__init__(
            f"QEMU exited with code {exitcode} while starting.\n"
            f"command: {' '.join(command)}\n"
            f"QEMU said:\n{tail}\n"
            "Check that the files named in the command exist and that no other program "
            "holds the forwarded ports."
        )


class QMPCommandError(MachineError):
    """A QMP or QGA command returned an error. Keeps the command and the reply."""

    def __init__(self, command: str, arguments: object, reply: object, socket: str) -> None:
        self.command = command
        self.arguments = arguments
        self.reply = reply
        super().__init__(f"{command} on {socket} failed: {reply}")


class SnapshotError(StackEmulatorError):
    """Capturing or resuming a RAM snapshot failed."""


class HealthTimeout(StackEmulatorError):
    """Services did not become healthy before the deadline."""


class DiskFull(StackEmulatorError):
    """The filesystem of the home (or a run directory) has no room left."""


class VMGone(MachineError):
    """A worker's QEMU exited while its tests were using it."""


def space_left(path: Path) -> str:
    """How much room the filesystem of ``path`` (or its nearest existing parent) has left."""
    for candidate in (path, *path.parents):
        try:
            free = shutil.disk_usage(candidate).free
        except OSError:
            continue
        return f"{free / 1e6:.0f} MB free on the filesystem of {candidate}"
    return f"no room left on the filesystem of {path}"


def disk_full(path: Path, what: str, detail: object) -> DiskFull:
    """``what`` (writing under ``path``) failed for lack of room: say where and what to do."""
    return DiskFull(
        f"{what} failed: no space left ({space_left(path)}): {detail}. Free some space there, or point --stack-emulator-home (STACK_EMULATOR_HOME) at a filesystem "
        "with room: a snapshot takes about 300 MB, each running VM a few MB to a few hundred."
    )


def host_file_error(exc: OSError, path: Path, what: str) -> StackEmulatorError:
    """An OSError while writing the home's files, as an error that says what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path, what, exc.strerror or exc)
    return StackEmulatorError(f"{what} failed: {exc}. Check that {path} exists and is writable.")
