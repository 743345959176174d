"""Talking to QEMU: QMP through qemu.qmp, and the guest agent (QGA) over its socket.

QMP sockets accept one client at a time, so a connection is opened per operation and closed
afterwards; any thread may then drive any machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from . import wait
from .errors import MachineError, QMPCommandError
from .log import get_logger

log = get_logger(__name__)
T = TypeVar("T")
# qemu.qmp logs every failed connection attempt at ERROR; the retries here are expected and
# a final failure is raised with its cause, so keep its protocol logger quiet.
logging.getLogger("qemu.qmp.protocol").setLevel(logging.CRITICAL)


def wait_for_socket(
    path: Path, timeout: float, alive: Callable[[], bool] | None = None, hint: str = ""
) -> None:
    """Wait until QEMU has created a UNIX socket. Does not connect: a chardev server takes one
    client at a time, and a probe connection would race with the real one."""
    wait.poll(
        lambda: True if path.exists() else None,
        timeout,
        what=f"QEMU to create {path}",
        interval=0.01,
        alive=alive,
        on_exit=lambda: MachineError(f"QEMU exited before it opened {path}. {hint}".strip()),
        on_timeout=lambda: MachineError(f"{path} did not appear within {timeout:.0f} s. {hint}".strip()),
    )


class QMPConnection:
    """A short-lived QMP session (capabilities negotiated) on a UNIX socket.

    Uses qemu.qmp's asyncio ``QMPClient`` on a private event loop, so that connecting, every
    command and closing are all bounded by ``timeout``.
    """

    def __init__(
        self,
        path: Path,
        timeout: float = 30.0,
        alive: Callable[[], bool] | None = None,
        hint: str = "",
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.alive = alive
        self.hint = hint
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: QMPClient | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def __enter__(self) -> QMPConnection:
        wait_for_socket(self.path, self.timeout, self.alive, self.hint)
        self._loop = asyncio.new_event_loop()
        deadline = wait.Deadline(self.timeout)
        last: list[BaseException] = []

        def connect() -> QMPClient | None:
            client = QMPClient(str(self.path))
            try:
                self._run(client.connect(str(self.path)), max(0.5, deadline.left()))
                return client
            except (TimeoutError, QMPError, OSError) as exc:
                with contextlib.suppress(Exception):
                    self._run(client.disconnect(), 2.0)
                last[:] = [exc]
                return None

        def failed(message: str) -> MachineError:
            self.close()
            return MachineError(f"{message}. {self.hint}".strip())

        self._client = wait.poll(
            connect,
            deadline,
            what=f"QMP on {self.path}",
            interval=0.02,
            alive=self.alive,
            on_exit=lambda: failed(f"QEMU exited; cannot open QMP on {self.path}"),
            on_timeout=lambda: failed(
                f"cannot open QMP on {self.path} within {self.timeout:.0f} s "
                f"({type(last[0]).__name__}: {last[0]})"
            ),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is not None:
            # After `quit`, QEMU hangs up first: a normal end.
            with contextlib.suppress(EOFError, QMPError, OSError, asyncio.TimeoutError):
                self._run(client.disconnect(), 2.0)
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def execute(self, command: str, **arguments: Any) -> Any:
        if self._client is None:
            raise MachineError("QMP connection is not open")
        try:
            return self._run(self._client.execute(command, arguments or None), self.timeout)
        except ExecuteError as exc:
            raise QMPCommandError(command, arguments, str(exc), str(self.path)) from None
        except TimeoutError:
            raise MachineError(
                f"QMP {command} on {self.path} got no answer within {self.timeout:.0f} s"
            ) from None
        except (QMPError, OSError, EOFError) as exc:
            raise MachineError(f"QMP {command} on {self.path} failed: {type(exc).__name__}: {exc}") from None

    def capabilities(self) -> set[str]:
        caps = self.execute("query-migrate-capabilities")
        return {c["capability"] for c in caps}


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


class QGAClient:
    """qemu-guest-agent over its virtio-serial socket: guest-sync, guest-exec."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def _roundtrip(
        self,
        command: str,
        arguments: dict[str, Any] | None,
        timeout: float,
        window: list[int] | None = None,
    ) -> Any:
        """Send one command after a guest-sync; the host's time_ns() just before the command is
        sent and just after its reply arrives is appended to ``window`` if given."""
        sync_id = random.randint(1, 2**31 - 1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.path))
            # 0xFF resets the agent's parser; guest-sync-delimited answers after a 0xFF too, so
            # anything a previous client left unread is skipped.
            sync = {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}
            s.sendall(b"\xff" + json.dumps(sync).encode() + b"\n")
            reader = _LineReader(s)
            reader.skip_to_delimiter()
            while True:
                reply = json.loads(reader.line())
                if reply.get("return") == sync_id:
                    break
            message: dict[str, Any] = {"execute": command}
            if arguments:
                message["arguments"] = arguments
            data = json.dumps(message).encode() + b"\n"
            if window is not None:
                window.append(time.time_ns())
            s.sendall(data)
            reply = json.loads(reader.line())
            if window is not None:
                window.append(time.time_ns())
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

        return wait.poll(
            ping,
            deadline,
            what=f"the guest agent on {self.path}",
            on_timeout=lambda: MachineError(
                f"the guest agent on {self.path} did not answer guest-sync within "
                f"{deadline.timeout:.0f} s (last error: {last[0]}). Is qemu-guest-agent running in "
                "the guest? See serial.log in the VM directory."
            ),
        )

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
