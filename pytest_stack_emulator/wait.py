"""One deadline loop for every wait: a socket, QMP, the guest agent, a migration, health.

:func:`poll` calls ``step`` until it returns something other than None, checking between
tries that QEMU is still alive and that the deadline has not passed. Its errors say what was
awaited; a caller that knows more (what to check, which option raises the timeout) passes its
own ``on_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import MachineError

T = TypeVar("T")


class Deadline:
    """The clock of one wait."""

    def __init__(self, timeout: float, started: float | None = None) -> None:
        """``started``: a ``time.monotonic()`` reading to count from (default: now)."""
        self.timeout = timeout
        self.started = time.monotonic() if started is None else started
        self.at = self.started + timeout

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() > self.at


def poll(
    step: Callable[[], T | None],
    timeout: float | Deadline,
    *,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
    on_exit: Callable[[], BaseException] | None = None,
    on_timeout: Callable[[], BaseException] | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> T:
    """Call ``step`` every ``interval`` seconds until it returns a value, and return that.

    ``step`` may raise to end the wait. Between tries: if ``alive`` says QEMU is gone, raise
    ``on_exit()``; past the deadline, raise ``on_timeout()``; then ``on_tick(elapsed)``.
    Without them the errors are :class:`MachineError`\\ s naming ``what``.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    while True:
        result = step()
        if result is not None:
            return result
        if alive is not None and not alive():
            raise on_exit() if on_exit else MachineError(f"QEMU exited while waiting for {what}")
        if deadline.expired():
            if on_timeout is not None:
                raise on_timeout()
            raise MachineError(f"{what} did not happen within {deadline.timeout:.0f} s")
        if on_tick is not None:
            on_tick(deadline.elapsed())
        time.sleep(interval)
