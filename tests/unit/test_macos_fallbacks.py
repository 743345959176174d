"""The Linux-only parts of the core step aside on macOS instead of failing (faked platform)."""

import json
import os
import platform
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from pytest_stack_emulator import checkpoint, listen_backlog, machine
from pytest_stack_emulator.argv import socket_dir
from pytest_stack_emulator.bench import markdown, median_memory, memory_text

# sun_path holds 104 bytes on macOS, its NUL included.
MACOS_SOCKET_PATH_MAX = 103


def test_listen_backlog_is_left_alone_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        if platform.system() == "Linux" and listen_backlog._SYS_PIDFD_GETFD is not None:
            assert listen_backlog.raise_listen_backlog(os.getpid(), [port]) == [port]
        monkeypatch.setattr(platform, "system", lambda: "Darwin")
        monkeypatch.setattr(os, "pidfd_open", None, raising=False)  # not there on macOS
        assert listen_backlog.raise_listen_backlog(os.getpid(), [port]) is None
        listen_backlog.widen_forwards(os.getpid(), [port], timeout=0.1)  # returns, raises nothing


def test_no_parent_death_signal_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    if platform.system() == "Linux" and shutil.which("setpriv"):
        assert machine._death_signal_prefix()[1:] == ["--pdeathsig", "KILL", "--"]
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert machine._death_signal_prefix() == []


def test_socket_dir_fits_macos_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run directory moves its sockets under $TMPDIR, on macOS as long as
    /var/folders/3v/0k5gxjnn5ls3wj7kf1v5vjl40000gn/T/ (49 characters)."""
    mac_tmp = "/var/folders/3v/0k5gxjnn5ls3wj7kf1v5vjl40000gn/T"
    short = Path(tempfile.mkdtemp(prefix="mac-", dir="/tmp"))
    try:
        stand_in = short / ("t" * (len(mac_tmp) - len(str(short)) - 1))
        stand_in.mkdir()
        assert len(str(stand_in)) == len(mac_tmp)
        monkeypatch.setattr(tempfile, "tempdir", str(stand_in))
        monkeypatch.setattr(os, "getuid", lambda: 501)  # the first user on a Mac
        sockets = socket_dir(tmp_path / ("long-home-" * 10) / "run" / "session-gw0")
        assert sockets.is_relative_to(stand_in)
        for name in ("monitor.sock", "qga.sock"):
            assert len(str(sockets / name)) <= MACOS_SOCKET_PATH_MAX
    finally:
        shutil.rmtree(short)


def test_sparse_copy_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no copy_file_range: the RAM file is copied by reads and writes, holes kept."""
    source, target = tmp_path / "ram", tmp_path / "copy"
    with source.open("wb") as f:
        f.truncate(64 << 20)
        for offset in (0, 5 << 20, (64 << 20) - 3):
            f.seek(offset)
            f.write(b"\x01\x02\x03")
        f.seek(20 << 20)
        f.write(os.urandom(3 << 20))  # bigger than one read
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    checkpoint._sparse_copy(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_blocks * 512 < 16 << 20


def test_bench_memory_without_pss_and_uss() -> None:
    linux = [{"rss": 300.0, "pss": 200.0, "uss": 100.0}, {"rss": 310.0, "pss": 210.0, "uss": 90.0}]
    assert median_memory(linux) == {"rss": 305.0, "pss": 205.0, "uss": 95.0}
    assert memory_text(median_memory(linux)) == "USS 95 MB, PSS 205 MB, RSS 305 MB"
    mac = [{"rss": 300.0}, {"rss": 320.0}]
    assert median_memory(mac) == {"rss": 310.0}
    assert memory_text(median_memory(mac)) == "RSS 310 MB"


def test_bench_table_of_a_host_without_pss_and_uss() -> None:
    """The published Linux run, as macOS would have measured it (RSS only), still renders."""
    result = json.loads((Path(__file__).parents[2] / "docs" / "bench.json").read_text())
    assert "USS" in markdown(result)
    for measured in (result, result["template"], *result["restore_methods"].values()):
        for mem in measured["memory_mb"].values():
            del mem["pss"], mem["uss"]
    del result["ratios"]["template_uss_over_mapped_ram"]
    table = markdown(result)
    assert "USS" not in table
    assert "PSS" not in table
    assert "per worker RSS" in table
