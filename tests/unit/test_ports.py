import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_stack_emulator.errors import PortsUnavailable
from pytest_stack_emulator.ports import PortAllocator, block_ports, worker_index
from pytest_stack_emulator.procs import ProcessId


def free_base(span: int = 200) -> int:
    """A base port whose next ``span`` ports are all free right now."""
    for base in range(31000, 60000, span):
        ok = True
        for port in range(base, base + span):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    pytest.skip("no free port range")


def test_worker_index() -> None:
    assert [worker_index(w) for w in (None, "main", "gw0", "gw7")] == [0, 0, 0, 7]


def test_worker_n_gets_base_plus_ten_n(tmp_path: Path) -> None:
    base = free_base()
    alloc = PortAllocator(tmp_path, base=base)
    block = alloc.allocate(3)
    assert block.first == base + 30
    assert block.ports == {"dashboard": base + 30, "backend": base + 31, "minio": base + 32,
                           "inbucket": base + 33, "mock_oauth": base + 34}  # fmt: skip


def test_busy_block_is_skipped(tmp_path: Path) -> None:
    base = free_base()
    with socket.socket() as s:
        s.bind(("127.0.0.1", base + 2))
        s.listen()
        block = PortAllocator(tmp_path, base=base).allocate(0)
    assert block.first == base + 10


def test_block_held_by_another_live_session_is_skipped(tmp_path: Path) -> None:
    base = free_base()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = PortAllocator(tmp_path, base=base).allocate(0, owner=ProcessId.of(other.pid))
        mine = PortAllocator(tmp_path, base=base).allocate(0)
        assert (held.first, mine.first) == (base, base + 10)
    finally:
        other.kill()
        other.wait()
    # Its owner is gone: the lease is stale and the block is free again.
    again = PortAllocator(tmp_path, base=base).allocate(0)
    assert again.first == base


def test_release_frees_the_block(tmp_path: Path) -> None:
    base = free_base()
    alloc = PortAllocator(tmp_path, base=base)
    first = alloc.allocate(0)
    assert alloc.allocate(0).first == base + 10
    first.release()
    assert alloc.allocate(0).first == base


def test_corrupt_lease_is_treated_as_free(tmp_path: Path) -> None:
    base = free_base()
    (tmp_path / "ports").mkdir()
    (tmp_path / "ports" / f"{base}.json").write_text("{not json")
    assert PortAllocator(tmp_path, base=base).allocate(0).first == base


def test_lease_names_its_owner(tmp_path: Path) -> None:
    base = free_base()
    block = PortAllocator(tmp_path, base=base).allocate(0, note="vm-dir")
    assert block.lease is not None
    data = json.loads(block.lease.read_text())
    assert ProcessId(data["pid"], data["start"]) == ProcessId.current()
    assert data["note"] == "vm-dir"


def test_no_free_block_says_what_to_do(tmp_path: Path) -> None:
    base = free_base()
    alloc = PortAllocator(tmp_path, base=base, max_blocks=2)
    alloc.allocate(0)
    alloc.allocate(0)
    with pytest.raises(PortsUnavailable, match="stack-emulator reap"):
        alloc.allocate(0)


def test_block_ports_are_contiguous() -> None:
    assert list(block_ports(26700).values()) == [26700, 26701, 26702, 26703, 26704]
