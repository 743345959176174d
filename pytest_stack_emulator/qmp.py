"""Talking to QEMU over QMP, through qemu.qmp (the guest agent is qga.py's).

QMP sockets accept one client at a time, so a connection is opened per operation and closed
afterwards; any thread may then drive any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
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
