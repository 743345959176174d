"""The guest agent (qemu-guest-agent, QGA) over its virtio-serial socket: sync, exec, and
setting the guest's wall clock to the host's."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import wait
from .errors import MachineError, QMPCommandError


@dataclass(frozen=True)
class ExecResult:
    exitcode: int
    stdout: str
    stderr: str


# The guest's `date` steps its wall clock. A relative date ("+12.5 seconds") is applied to the
# time `date` itself reads just before it sets the clock, so the time the guest takes to start
# the process does not add to the error.
GUEST_DATE = "/bin/date"
# Offsets up to this are left alone (no process is started in the guest).
CLOCK_TOLERANCE = 0.05
# After the step, the guest's clock must be this close to the host's.
CLOCK_MAX_ERROR = 0.5


@dataclass(frozen=True)
class ClockStep:
    """The guest's wall clock minus the host's, in seconds, before and after a step."""

    before: float
    after: float
    stepped: bool


def clock_step_args(delta: float) -> list[str]:
    """Arguments of ``date`` that move the guest's wall clock by ``delta`` seconds."""
    return ["-s", f"{delta:+.6f} seconds"]


class _AgentChannel:
    """One connection to the guest agent, synchronised once (``guest-sync-delimited``)."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
            # 0xFF resets the agent's parser; guest-sync-delimited answers after a 0xFF too, so
            # anything a previous client left unread is skipped.
            sync_id = random.randint(1, 2**31 - 1)
            sync = {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}
            self.sock.sendall(b"\xff" + json.dumps(sync).encode() + b"\n")
            self.reader = _LineReader(self.sock)
            self.reader.skip_to_delimiter()
            while json.loads(self.reader.line()).get("return") != sync_id:
                pass
        except BaseException:
            self.sock.close()
            raise

    def call(self, command: str, arguments: dict[str, Any] | None, window: list[int] | None) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        if window is not None:
            window.append(time.time_ns())
        self.sock.sendall(data)
        reply = json.loads(self.reader.line())
        if window is not None:
            window.append(time.time_ns())
        return reply

    def close(self) -> None:
        self.sock.close()


class QGAClient:
    """qemu-guest-agent over its virtio-serial socket: guest-sync, guest-exec.

    Each command opens a connection and synchronises it, unless it runs inside
    :meth:`connected`, which keeps one connection for a series of commands (every connection
    costs the guest a port event and a sync round trip: ~20-50 ms each just after a resume
    under TCG)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._channel: _AgentChannel | None = None

    @contextlib.contextmanager
    def connected(self, timeout: float | None = None) -> Iterator[float]:
        """Wait until the agent answers (as :meth:`sync`), then keep that connection for the
        commands run inside; yields the seconds the wait took."""
        deadline = wait.Deadline(timeout if timeout is not None else self.timeout)
        last: list[Exception | None] = [None]

        def connect() -> _AgentChannel | None:
            try:
                return _AgentChannel(self.path, min(1.0, self.timeout))
            except (OSError, ValueError) as exc:
                last[0] = exc
                return None

        channel = wait.poll(connect, deadline, what=f"the guest agent on {self.path}",
                            on_timeout=lambda: self._silent(deadline, last[0]))  # fmt: skip
        channel.sock.settimeout(self.timeout)
        self._channel = channel
        try:
            yield deadline.elapsed()
        finally:
            self._channel = None
            channel.close()

    def _silent(self, deadline: wait.Deadline, last: Exception | None) -> MachineError:
        return MachineError(
            f"the guest agent on {self.path} did not answer guest-sync within {deadline.timeout:.0f} s "
            f"(last error: {last}). Is qemu-guest-agent running in the guest? See serial.log in the "
            "VM directory."
        )

    def _roundtrip(
        self,
        command: str,
        arguments: dict[str, Any] | None,
        timeout: float,
        window: list[int] | None = None,
    ) -> Any:
        """Send one command (on the kept connection, or a new synchronised one); the host's
        time_ns() just before the command is sent and just after its reply arrives is appended
        to ``window`` if given."""
        if self._channel is not None:
            reply = self._channel.call(command, arguments, window)
        else:
            channel = _AgentChannel(self.path, timeout)
            try:
                reply = channel.call(command, arguments, window)
            finally:
                channel.close()
        if "error" in reply:
            raise QMPCommandError(command, _redact(arguments), reply["error"], str(self.path))
        return reply.get("return")

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, window: list[int] | None = None
    ) -> Any:
        try:
            return self._roundtrip(command, arguments, self.timeout, window)
        except (OSError, ValueError) as exc:
            raise MachineError(
                f"guest agent {command} on {self.path} failed: {type(exc).__name__}: {exc}"
            ) from None

    def sync(self, timeout: float | None = None) -> float:
        """Wait until the agent answers ``guest-sync``; returns the seconds it took."""
        deadline = wait.Deadline(timeout if timeout is not None else self.timeout)
        last: list[Exception | None] = [None]

        def ping() -> float | None:
            try:
                self._roundtrip("guest-ping", None, timeout=min(1.0, self.timeout))
                return deadline.elapsed()
            except (OSError, ValueError) as exc:
                last[0] = exc
                return None

        return wait.poll(ping, deadline, what=f"the guest agent on {self.path}",
                         on_timeout=lambda: self._silent(deadline, last[0]))  # fmt: skip

    def exec(
        self,
        path: str,
        args: list[str] | None = None,
        input_data: bytes | None = None,
        timeout: float = 60.0,
        poll: float = 0.05,
    ) -> ExecResult:
        """Run a program in the guest and wait for it, like upstream's guest-exec polling
        (``guest-exec-status`` every ``poll`` seconds)."""
        arguments: dict[str, Any] = {"path": path, "arg": args or [], "capture-output": True}
        if input_data is not None:
            arguments["input-data"] = base64.b64encode(input_data).decode()
        pid = self.execute("guest-exec", arguments)["pid"]

        def exited() -> ExecResult | None:
            status = self.execute("guest-exec-status", {"pid": pid})
            if not status.get("exited"):
                return None
            return ExecResult(
                exitcode=int(status.get("exitcode", -1)),
                stdout=_b64(status.get("out-data")),
                stderr=_b64(status.get("err-data")),
            )

        return wait.poll(
            exited,
            timeout,
            what=f"guest command {path}",
            interval=poll,
            on_timeout=lambda: MachineError(
                f"guest command {path} did not finish within {timeout:.0f} s "
                f"(guest pid {pid}); see serial.log in the VM directory"
            ),
        )

    def clock_offset(self) -> float:
        """The guest's wall clock minus the host's, in seconds (``guest-get-time``).

        The host's time is taken as the middle of the command's round trip (without the
        guest-sync before it), so the error is at most half of it (a few milliseconds)."""
        window: list[int] = []
        guest = self.execute("guest-get-time", window=window)
        before, after = window
        if not isinstance(guest, int):
            raise MachineError(
                f"guest agent guest-get-time on {self.path} answered {guest!r}, not an integer"
            )
        return (guest - (before + after) / 2) / 1e9

    def set_clock_to_host(self, timeout: float = 10.0) -> ClockStep:
        """Step the guest's wall clock to the host's.

        A VM resumed from a snapshot wakes up with the clock it had at capture time. The
        offset is read with ``guest-get-time`` and removed by running ``date -s '<±s> seconds'``
        in the guest (relative, so process start-up in the guest does not count). Then the
        clock is read again and must be within :data:`CLOCK_MAX_ERROR` of the host's.

        QGA's own ``guest-set-time`` is not used: the agent refuses it unless the guest has
        ``/sbin/hwclock`` (the compat image has it, as bookworm's util-linux depends on
        util-linux-extra, but an image need not), and it then waits for ``hwclock -w``, which
        aligns to the RTC's second boundary: 0.2 to 1.0 s per resume under TCG, against 0.2 to
        0.55 s for ``date``.

        Raises :class:`MachineError` naming the guest command and what to check.
        """
        try:
            before = self.clock_offset()
        except MachineError as exc:
            raise MachineError(
                f"reading the guest's clock failed: {exc}. The image's qemu-guest-agent must allow "
                "guest-get-time (check its --allow-rpcs/--block-rpcs in the guest)."
            ) from None
        if abs(before) <= CLOCK_TOLERANCE:
            return ClockStep(before, before, stepped=False)
        args = clock_step_args(-before)
        command = f"{GUEST_DATE} {args[0]} '{args[1]}'"
        fix = (
            f"The guest's clock is {before:+.1f} s off the host's, so tokens it issued would be "
            "stale. The image needs qemu-guest-agent with guest-get-time and guest-exec allowed, "
            f"and GNU coreutils' date at {GUEST_DATE}; no time service (NTP, hwclock) in the guest "
            "may reset the clock. Run `stack-emulator start` and read serial.log in its VM directory."
        )
        try:
            result = self.exec(GUEST_DATE, args, timeout=timeout, poll=0.01)
            if result.exitcode != 0:
                said = (result.stderr or result.stdout).strip()[:300]
                raise MachineError(f"guest command {command} exited with {result.exitcode}: {said}")
            after = self.clock_offset()
            if abs(after) > CLOCK_MAX_ERROR:
                raise MachineError(f"after guest command {command} the clock is still {after:+.3f} s off")
        except MachineError as exc:
            raise MachineError(f"setting the guest's clock to the host's failed: {exc}. {fix}") from None
        return ClockStep(before, after, stepped=True)


def _b64(value: str | None) -> str:
    return base64.b64decode(value).decode(errors="replace") if value else ""


def _redact(arguments: dict[str, Any] | None) -> dict[str, Any] | None:
    if arguments and "input-data" in arguments:
        return {**arguments, "input-data": "<redacted>"}
    return arguments


class _LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the guest agent socket closed")
        self.buf += chunk

    def skip_to_delimiter(self) -> None:
        while b"\xff" not in self.buf:
            self.buf = b""
            self._fill()
        self.buf = self.buf.split(b"\xff")[-1]

    def line(self) -> str:
        while True:
            head, sep, rest = self.buf.partition(b"\n")
            if sep:
                self.buf = rest
                text = head.strip().decode(errors="replace")
                if text:
                    return text
                continue
            self._fill()
