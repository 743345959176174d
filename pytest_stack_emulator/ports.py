"""Host port blocks for workers (CONTRACT §5.2).

Worker N prefers the block at ``base + 10*N``. A block is skipped when any of its ports is
busy or when a live process (another worker, another pytest session) holds a lease on it.
The choice is made under a file lock shared by every session on the machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from .contract import SERVICE_NAMES
from .errors import ConfigError, PortsUnavailable
from .procs import ProcessId

SERVICE_OFFSETS = {name: offset for offset, name in enumerate(SERVICE_NAMES)}
BLOCK_STRIDE = 10
DEFAULT_BASE_PORT = 26700
# The highest base port config accepts: room above it for a few blocks below 65535.
MAX_BASE_PORT = 65000


def bind_checks(host: str, platform: str) -> list[tuple[socket.AddressFamily, str]]:
    """The addresses to bind, each with SO_REUSEADDR (so that a port in TIME_WAIT after an
    earlier VM counts as free), to tell whether QEMU can forward ``host``'s port.

    On Linux, binding ``host`` fails while anything listens on it or on the wildcard address.
    On macOS (BSD sockets), SO_REUSEADDR lets the bind to ``host`` succeed beside a listener on
    0.0.0.0 or ``::``; QEMU's forward would then take that server's connections to ``host``.
    The wildcard addresses are bound too there: that fails while another socket holds them."""
    checks = [(socket.AF_INET, host)]
    if platform == "darwin" and host not in ("0.0.0.0", ""):
        checks += [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
    return checks


def port_is_free(port: int, host: str = "127.0.0.1", platform: str | None = None) -> bool:
    for family, address in bind_checks(host, platform or sys.platform):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host: nothing can listen there
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def block_ports(first: int) -> dict[str, int]:
    return {name: first + offset for name, offset in SERVICE_OFFSETS.items()}


@dataclass
class PortBlock:
    first: int
    ports: dict[str, int]
    lease: Path | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.lease is not None:
            self.lease.unlink(missing_ok=True)
            self.lease = None


class PortAllocator:
    def __init__(
        self,
        state_dir: Path,
        base: int = DEFAULT_BASE_PORT,
        stride: int = BLOCK_STRIDE,
        max_blocks: int = 200,
        base_option: str = "--stack-emulator-base-port",
    ) -> None:
        # config checked ``base`` (1024 to MAX_BASE_PORT); it is not checked again here.
        if stride < len(SERVICE_OFFSETS):
            raise ConfigError(f"a port block needs {len(SERVICE_OFFSETS)} ports, stride is {stride}")
        self.lease_dir = state_dir / "ports"
        self.lock = FileLock(str(state_dir / "locks" / "ports.lock"))
        self.base = base
        self.stride = stride
        self.max_blocks = min(max_blocks, (65535 - base) // stride)
        self.base_option = base_option  # named in messages: the front end's option

    def _lease_path(self, first: int) -> Path:
        return self.lease_dir / f"{first}.json"

    def _held(self, first: int) -> bool:
        path = self._lease_path(first)
        try:
            data = json.loads(path.read_text())
            holder = ProcessId(int(data["pid"]), data.get("start"))
        except FileNotFoundError:
            return False
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # unreadable lease: a crash mid-write
            return False
        if holder.alive():
            return True
        path.unlink(missing_ok=True)  # its owner is gone
        return False

    def allocate(self, worker_index: int = 0, owner: ProcessId | None = None, note: str = "") -> PortBlock:
        owner = owner or ProcessId.current()
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        Path(self.lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
        skipped: list[str] = []
        with self.lock:
            for n in range(self.max_blocks):
                index = (worker_index + n) % self.max_blocks
                first = self.base + self.stride * index
                ports = block_ports(first)
                if self._held(first):
                    skipped.append(f"{first} (held by another session)")
                    continue
                busy = [p for p in ports.values() if not port_is_free(p)]
                if busy:
                    skipped.append(f"{first} (port {busy[0]} in use)")
                    continue
                lease = self._lease_path(first)
                lease.write_text(json.dumps({"pid": owner.pid, "start": owner.start, "note": note}))
                return PortBlock(first, ports, lease)
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise PortsUnavailable(
            f"no free block of {len(SERVICE_OFFSETS)} ports from {self.base} "
            f"(stride {self.stride}, {self.max_blocks} blocks tried; skipped {shown}). "
            f"Stop leftover VMs with `stack-emulator reap`, or pick another range with "
            f"{self.base_option}."
        )

    def release_stale(self) -> list[int]:
        """Remove leases whose owners are gone. Returns the first port of each freed block."""
        freed: list[int] = []
        if not self.lease_dir.is_dir():
            return freed
        with self.lock:
            for lease in sorted(self.lease_dir.glob("*.json")):
                with contextlib.suppress(ValueError):
                    if not self._held(int(lease.stem)):
                        freed.append(int(lease.stem))
        return freed


def worker_index(worker_id: str | None) -> int:
    """``gw3`` -> 3; the controller (no xdist) -> 0."""
    if worker_id and worker_id.startswith("gw") and worker_id[2:].isdigit():
        return int(worker_id[2:])
    return 0
