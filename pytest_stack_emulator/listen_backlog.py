"""The listen backlog of QEMU's port forwards.

QEMU's user-mode network (libslirp) listens on each ``hostfwd`` port with a backlog of 1. A
burst of connections (a test suite's parallel requests) then overflows the host kernel's
accept queue while QEMU's main loop is busy: clients wait a second for a SYN retransmit, and
some get "connection reset by peer". The backlog of a listening socket can be raised by
calling ``listen()`` on it again, from any process holding it: on Linux 5.6 and later the
host takes a copy of QEMU's socket with ``pidfd_getfd`` (QEMU is its child, so it may),
raises the backlog, and closes its copy. Where that is not possible, the backlog stays 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from .log import get_logger

log = get_logger(__name__)

BACKLOG = 128
_SYS_PIDFD_GETFD = {"x86_64": 438, "aarch64": 438}.get(platform.machine())
_TCP_LISTEN = "0A"


def _listening_inodes(ports: set[int]) -> dict[int, int]:
    """Socket inode -> port, for the TCP sockets listening on ``ports``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[3] == _TCP_LISTEN and port in ports:
                    found[int(fields[9])] = port
    return found


def _socket_fds(pid: int, inodes: dict[int, int]) -> dict[int, int]:
    """QEMU's fd number -> port, for its sockets among ``inodes``."""
    fds = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError, ValueError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                fds[int(name)] = inodes[int(target[8:-1])]
    return fds


def raise_listen_backlog(pid: int, ports: Iterable[int], backlog: int = BACKLOG) -> list[int] | None:
    """Raise the listen backlog of process ``pid``'s sockets on ``ports``; returns the ports
    done (those it listens on yet), or None where this cannot be done (not Linux, no
    pidfd_getfd, not allowed). Never raises."""
    if platform.system() != "Linux" or _SYS_PIDFD_GETFD is None:
        return None
    done: list[int] = []
    try:
        fds = _socket_fds(pid, _listening_inodes(set(ports)))
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
        try:
            for fd, port in fds.items():
                copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
                if copy < 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                with socket.socket(fileno=copy) as sock:  # closes the copy only
                    sock.listen(backlog)
                done.append(port)
        finally:
            os.close(pidfd)
    except OSError as exc:
        log.debug("the forwards of QEMU pid %d keep a listen backlog of 1: %s", pid, exc)
        return None
    return sorted(done)


def widen_forwards(pid: int, ports: Iterable[int], timeout: float = 2.0) -> None:
    """Raise the backlog of each forward once QEMU listens on it (it starts listening a few
    milliseconds after its monitor socket appears)."""
    pending = set(ports)
    deadline = time.monotonic() + timeout
    while pending:
        done = raise_listen_backlog(pid, pending)
        if done is None:
            return
        pending -= set(done)
        if pending and time.monotonic() > deadline:
            log.debug("QEMU pid %d does not listen on %s; their backlog stays 1", pid, sorted(pending))
            return
        if pending:
            time.sleep(0.01)
