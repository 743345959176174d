"""Logging and progress output.

The library logs through :mod:`logging` and never prints. Progress of long steps is reported
through :class:`Progress`, which logs at INFO; the CLI and the pytest plugin decide where
those lines go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger("pytest_stack_emulator")
logger.addHandler(logging.NullHandler())

# Where a warning goes: the plugin passes pytest's warnings, the library logs.
Warn = Callable[[str], None]


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


class Progress:
    """Announces a long step, its sub-steps with elapsed time, and how it ended."""

    def __init__(self, title: str, log: logging.Logger | None = None) -> None:
        self.title = title
        self.log = log or logger
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        self.log.info("[%s %6.1fs] %s", self.title, self.elapsed, message)

    def __enter__(self) -> Progress:
        self.step("started")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.step("done")
        else:
            self.step(f"failed: {type(exc).__name__}")
