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
    deadline = time.monotonic() + timeout
    while not path.exists():
        if alive is not None and not alive():
            raise MachineError(f"QEMU exited before it opened {path}. {hint}".strip())
        if time.monotonic() > deadline:
            raise MachineError(f"{path} did not appear within {timeout:.0f} s. {hint}".strip())
        time.sleep(0.01)


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
        deadline = time.monotonic() + self.timeout
        while True:
            client = QMPClient(str(self.path))
            try:
                self._run(client.connect(str(self.path)), max(0.5, deadline - time.monotonic()))
                break
            except (TimeoutError, QMPError, OSError) as exc:
                with contextlib.suppress(Exception):
                    self._run(client.disconnect(), 2.0)
                if self.alive is not None and not self.alive():
                    self.close()
                    raise MachineError(
                        f"QEMU exited; cannot open QMP on {self.path}. {self.hint}".strip()
                    ) from None
                if time.monotonic() > deadline:
                    self.close()
                    raise MachineError(
                        f"cannot open QMP on {self.path} within {self.timeout:.0f} s "
                        f"({type(exc).__name__}: {exc}). {self.hint}".strip()
                    ) from None
                time.sleep(0.02)
        self._client = client
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


class QGAClient:
    """qemu-guest-agent over its virtio-serial socket: guest-sync, guest-exec."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def _roundtrip(self, command: str, arguments: dict[str, Any] | None, timeout: float) -> Any:
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
            s.sendall(json.dumps(message).encode() + b"\n")
            reply = json.loads(reader.line())
        if "error" in reply:
            raise QMPCommandError(command, _redact(arguments), reply["error"], str(self.path))
        return reply.get("return")

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return self._roundtrip(command, arguments, self.timeout)
        except (OSError, ValueError) as exc:
            raise MachineError(
                f"guest agent {command} on {self.path} failed: {type(exc).__name__}: {exc}"
            ) from None

    def sync(self, timeout: float | None = None) -> float:
        """Wait until the agent answers ``guest-sync``; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + (timeout if timeout is not None else self.timeout)
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._roundtrip("guest-ping", None, timeout=min(1.0, self.timeout))
                return time.monotonic() - started
            except (OSError, ValueError) as exc:
                last = exc
                time.sleep(0.05)
        raise MachineError(
            f"the guest agent on {self.path} did not answer guest-sync within "
            f"{deadline - started:.0f} s (last error: {last}). Is qemu-guest-agent running in "
            "the guest? See serial.log in the VM directory."
        )

    def exec(
        self,
        path: str,
        args: list[str] | None = None,
        input_data: bytes | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        """Run a program in the guest and wait for it, like upstream's guest-exec polling."""
        arguments: dict[str, Any] = {"path": path, "arg": args or [], "capture-output": True}
        if input_data is not None:
            arguments["input-data"] = base64.b64encode(input_data).decode()
        pid = self.execute("guest-exec", arguments)["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.execute("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                return ExecResult(
                    exitcode=int(status.get("exitcode", -1)),
                    stdout=_b64(status.get("out-data")),
                    stderr=_b64(status.get("err-data")),
                )
            if time.monotonic() > deadline:
                raise MachineError(
                    f"guest command {path} did not finish within {timeout:.0f} s "
                    f"(guest pid {pid}); see serial.log in the VM directory"
                )
            time.sleep(0.05)


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
