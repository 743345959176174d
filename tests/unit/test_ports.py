import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_stack_emulator.errors import PortsUnavailable
from pytest_stack_emulator.ports import PortAllocator, bind_checks, block_ports, port_is_free, worker_index
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


def test_bind_checks_per_platform() -> None:
    assert bind_checks("127.0.0.1", "linux") == [(socket.AF_INET, "127.0.0.1")]
    assert bind_checks("127.0.0.1", "darwin") == [
        (socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::"),
    ]  # fmt: skip


@pytest.mark.parametrize("platform", ["linux", "darwin"])
@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_a_listener_makes_the_port_busy(platform: str, address: str) -> None:
    port = free_base(1)
    assert port_is_free(port, platform=platform)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU does: past TIME_WAIT
        s.bind((address, port))
        s.listen()
        assert not port_is_free(port, platform=platform)
    assert port_is_free(port, platform=platform)


def test_an_ipv6_wildcard_listener_counts_on_macos_only() -> None:
    """On macOS a server on [::] can take connections to 127.0.0.1, and SO_REUSEADDR lets a
    bind to 127.0.0.1 beside it succeed: the port is checked on [::] there."""
    port = free_base(1)
    try:
        s = socket.socket(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 on this host")
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", port))
        s.listen()
        assert port_is_free(port, platform="linux")  # Linux keeps v6-only sockets apart
        assert not port_is_free(port, platform="darwin")


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_port_in_time_wait_is_free(platform: str) -> None:
    """An earlier VM's closed connections leave the port in TIME_WAIT: still usable (QEMU
    binds its forwards with SO_REUSEADDR)."""
    port = free_base(1)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server's side closes first: it goes to TIME_WAIT
        client.close()
    if shutil.which("ss"):
        time_wait = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert "TIME-WAIT" in time_wait
    assert port_is_free(port, platform=platform)
