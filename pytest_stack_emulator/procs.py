"""Process identity that survives pid reuse: a pid plus its start time (see procinfo.py for
where each host keeps it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .procinfo import host


def start_time(pid: int) -> int | None:
    """A number fixed for the life of ``pid`` (its start time: clock ticks since boot on Linux,
    microseconds since the epoch on macOS), or None if it is gone.

    A zombie (exited, not yet waited for: a detached owner whose new parent does not reap)
    is gone too."""
    return host().start_time(pid)


@dataclass(frozen=True)
class ProcessId:
    pid: int
    start: int | None

    @classmethod
    def current(cls) -> ProcessId:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid, start_time(pid))

    def alive(self) -> bool:
        now = start_time(self.pid)
        if now is None:
            return False
        return self.start is None or now == self.start

    def cmdline(self) -> list[str]:
        return host().cmdline(self.pid)
