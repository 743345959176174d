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
from typing import TextIO

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


# A LogRecord attribute: this record is a progress bar's current state. On a terminal it
# redraws the line of the previous one; elsewhere only one in a while is written.
BAR = "stack_emulator_bar"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Transfer:
    """Bytes moved so far: logs a bar (bytes, percent, rate, ETA) at most every ``every`` s.

    ``start`` bytes were there already (a resumed download): they count towards the total
    but not towards the rate."""

    def __init__(
        self, progress: Progress, what: str, total: int | None, start: int = 0, every: float = 0.2
    ) -> None:
        self.progress = progress
        self.what = what
        self.total = total or None
        self.start = self.done = start
        self.every = every
        self.started = self.last = time.monotonic()

    def rate(self) -> float:
        return (self.done - self.start) / max(time.monotonic() - self.started, 1e-6)

    def line(self) -> str:
        rate = self.rate()
        parts = [self.what, human_bytes(self.done)]
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * 20)
            parts[1] += f" / {human_bytes(self.total)}"
            parts += [f"{100 * frac:3.0f}%", "[" + "#" * filled + "." * (20 - filled) + "]"]
        parts.append(f"{human_bytes(rate)}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.done, 0) / rate)}")
        return "  ".join(parts)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.progress.log.info("[%s %6.1fs] %s", self.progress.title, self.progress.elapsed,
                                   self.line(), extra={BAR: True})  # fmt: skip

    def finish(self) -> None:
        seconds = time.monotonic() - self.started
        moved = self.done - self.start
        resumed = f" (resumed at {human_bytes(self.start)})" if self.start else ""
        self.progress.step(
            f"{self.what}: {human_bytes(moved)} in {seconds:.1f} s, {human_bytes(self.rate())}/s{resumed}"
        )


class LineSink(logging.Handler):
    """Writes records as lines through ``write``. A bar record redraws one line through
    ``rewrite`` (a terminal), or, without one, is written at most every ``every`` s."""

    def __init__(
        self,
        write: Callable[[str], None],
        rewrite: Callable[[str], None] | None = None,
        prefix: str = "",
        every: float = 5.0,
        level: int = logging.INFO,
    ) -> None:
        super().__init__(level)
        self.write_line = write
        self.rewrite = rewrite
        self.prefix = prefix
        self.every = every
        self.bar_open = False
        self.last_bar = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.prefix + record.getMessage()
            if getattr(record, BAR, False):
                if self.rewrite is not None:
                    self.rewrite(line)
                    self.bar_open = True
                elif time.monotonic() - self.last_bar >= self.every:
                    self.last_bar = time.monotonic()
                    self.write_line(line)
                return
            if self.bar_open:
                self.bar_open = False
                self.write_line("")
            self.write_line(line)
        except Exception:
            self.handleError(record)


def console(stream: TextIO, level: int = logging.INFO) -> LineSink:
    """A LineSink on ``stream``: a bar redraws its line when ``stream`` is a terminal."""

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def rewrite(line: str) -> None:
        stream.write("\r\x1b[2K" + line)
        stream.flush()

    return LineSink(write, rewrite if stream.isatty() else None, level=level)
