"""The exceptions this package raises.

Every message names what failed (a file, a port, a command) and what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence


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
