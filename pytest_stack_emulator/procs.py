"""Process identity that survives pid reuse: a pid plus its start time from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone.

    A zombie (exited, not yet waited for: a detached owner whose new parent does not reap)
    is gone too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name can hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


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
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
