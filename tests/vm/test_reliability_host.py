"""Reliability (issue 12) of what the host provides: QEMU and qemu-img, the image and its
manifest, room on disk. Each bad case gets an error that names what is wrong and what to do,
and loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.errors import DiskFull, ImageError
from pytest_stack_emulator.images import Image
from tests.helpers import TEST_BASE_PORT, copy_home, make_home, qemu_pids, session_argv, snapshot_dirs

BASE = TEST_BASE_PORT + 750

USES_FIXTURE = "def test_stack(stack_emulator):\n    assert stack_emulator.boot == 'resume'\n"


def tool_dir(directory: Path, **tools: str) -> Path:
    """A directory for PATH holding each tool: a real program's path, or a stand-in script."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, what in tools.items():
        if what.startswith("/"):
            (directory / name).symlink_to(what)
        else:
            (directory / name).write_text(f"#!/bin/sh\necho '{what}'\n")
            (directory / name).chmod(0o755)
    return directory


def session(tmp_path: Path, home: Path, path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_uses.py").write_text(USES_FIXTURE)
    env = {k: v for k, v in os.environ.items() if k != "STACK_EMULATOR_QEMU"}
    return subprocess.run(session_argv(home, BASE, "test_uses.py"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**env, "PATH": str(path)})  # fmt: skip


def cli(home: Path, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STACK_EMULATOR_QEMU"}
    return subprocess.run([sys.executable, "-m", "pytest_stack_emulator.cli", *args, f"--home={home}"],
                          capture_output=True, text=True, timeout=300, env={**env, "PATH": str(path)})  # fmt: skip


INSTALL = "Install QEMU 7.2 or newer, 9.0 or newer for the fastest resume (Debian 12: `apt-get install"


def test_missing_qemu_is_a_usage_error_that_says_how_to_install_it(
    tmp_path: Path, compat_image: Image
) -> None:
    """Case 6: no QEMU on PATH (a real PATH without it), then no qemu-img."""
    home = make_home(tmp_path / "home")
    result = session(tmp_path, home, tool_dir(tmp_path / "empty"))
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert (
        "ERROR: stack-emulator: qemu-system-x86_64 is not on PATH (amd64 guests need it; Debian's package "
        f"is qemu-system-x86). {INSTALL}"
    ) in result.stderr
    only_qemu = tool_dir(
        tmp_path / "only-qemu", **{"qemu-system-x86_64": shutil.which("qemu-system-x86_64") or ""}
    )
    result = cli(home, only_qemu, "capture")
    assert result.returncode == 1
    assert f"stack-emulator: qemu-img is not on PATH. {INSTALL}" in result.stderr
    assert snapshot_dirs(home) == []


def test_too_old_qemu_or_qemu_img_is_refused(tmp_path: Path, compat_image: Image) -> None:
    """Case 6: an old QEMU cannot be installed on this machine, so a stand-in script prints an old
    version (`QEMU emulator version 6.2.0`, as Ubuntu 22.04's does); the rest is real."""
    home = make_home(tmp_path / "home")
    old_qemu = tool_dir(tmp_path / "old-qemu", **{"qemu-system-x86_64": "QEMU emulator version 6.2.0"})
    result = session(tmp_path, home, old_qemu)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert f"qemu-system-x86_64 is version 6.2.0, too old for stack-emulator. {INSTALL}" in result.stderr
    old_img = tool_dir(tmp_path / "old-img", **{"qemu-system-x86_64": shutil.which("qemu-system-x86_64") or "",
                                                "qemu-img": "qemu-img version 6.2.0"})  # fmt: skip
    result = cli(home, old_img, "capture")
    assert result.returncode == 1
    assert f"old-img/qemu-img is version 6.2.0, too old for stack-emulator. {INSTALL}" in result.stderr


def manifest_copy(image: Image, directory: Path, change: dict[str, object]) -> Path:
    """The compat image's manifest with ``change`` applied (None deletes a field), beside links
    to its files."""
    directory.mkdir()
    data = json.loads((image.directory / "manifest.json").read_text())
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    for name in ("stack-emulator-amd64.qcow2", "vmlinuz", "initrd.img"):
        (directory / name).symlink_to(image.directory / name)
    (directory / "manifest.json").write_text(json.dumps(data))
    return directory / "manifest.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ram_mb": None}, "field `ram_mb` is missing"),
        ({"vcpus": "two"}, 'field `vcpus` must be a whole number from 1 to 512, not "two"'),
        ({"boot": {"method": "pxe"}}, 'field `boot.method` must be "kernel" or "firmware", not "pxe"'),
        ({"services": [{"name": "db", "guest_port": 5432, "health_path": None}]},
         'field `services[0].name` must be one of dashboard, backend, minio, inbucket, mock_oauth, not "db"'),
        ({"ram": 1024}, "field `ram` is not a field this plugin knows (misspelt?)"),
        ({"digest": "0" * 64}, "is corrupt or was changed: its sha256 is"),
    ],
)  # fmt: skip
def test_a_bad_manifest_names_the_file_and_the_field(
    compat_image: Image, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """Case 7: a manifest .json given as the image, with a field missing, wrong or unknown."""
    manifest = manifest_copy(compat_image, tmp_path / "image", change)
    with pytest.raises(ImageError) as error:
        emulator.Home(tmp_path / "home").image_store().resolve(str(manifest))
    assert str(manifest.parent) in str(error.value)
    assert message in str(error.value)


def test_a_corrupt_or_unreadable_image_is_named(compat_image: Image, tmp_path: Path) -> None:
    """Case 7: a manifest that is not JSON, a disk that is not qcow2, a disk that is a directory,
    and what the plugin shows for one of them."""
    store = emulator.Home(tmp_path / "home").image_store()
    not_json = tmp_path / "bad.json"
    not_json.write_text('{"name": "compat",')
    with pytest.raises(
        ImageError, match=rf"image manifest {not_json} is not valid: it cannot be read as JSON"
    ):
        store.resolve(str(not_json))
    garbage = tmp_path / "garbage.qcow2"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(ImageError, match=rf"image {garbage} is not a qcow2 image \(it starts with b'\\x00"):
        store.resolve(str(garbage))
    directory = tmp_path / "dir.qcow2"
    directory.mkdir()
    with pytest.raises(ImageError, match=rf"image {directory} does not exist"):
        store.resolve(str(directory))
    (tmp_path / "test_uses.py").write_text(USES_FIXTURE)
    argv = session_argv(
        make_home(tmp_path / "home"), BASE, f"--stack-emulator-image={garbage}", "test_uses.py"
    )
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert f"preparing failed: image {garbage} is not a qcow2 image" in result.stdout


@pytest.fixture
def small_home(tmp_path: Path, captured_home: Path) -> Iterator[Path]:
    """A home on a tmpfs with room for the shared snapshot and 48 MB more; unmounted after."""
    mount = tmp_path / "fs"
    mount.mkdir()
    [snapshot] = [d for d in snapshot_dirs(captured_home) if not d.name.startswith(".")]
    allocated = sum(p.stat().st_blocks * 512 for p in snapshot.iterdir())
    size = allocated + 48 * 2**20
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield copy_home(captured_home, mount / "home")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def digests(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((home / "snapshots").rglob("*"))
        if p.is_file()
    }


def test_disk_full_during_a_capture(small_home: Path) -> None:
    """Case 9: the stream snapshot (another key) does not fit: a clear warning, no snapshot and no
    unfinished capture left, the mapped-ram snapshot already in the store untouched."""
    before = digests(small_home)
    warnings: list[str] = []
    settings = resolve(
        {"image": "compat", "home": small_home, "base_port": BASE, "restore": "stream"}, {}, {}
    )
    prepared = emulator.prepare(settings, warn=warnings.append)
    assert prepared.snapshot is None
    [warning] = warnings
    print(warning)
    assert warning.startswith("snapshot capture failed, every VM will boot cold: ")
    assert "No space left on device" in warning
    assert "a snapshot needs up to 1024 MB; " in warning
    assert f"MB free on the filesystem of {small_home}" in warning
    assert digests(small_home) == before
    assert [p.name for p in snapshot_dirs(small_home)] == [next(iter(before)).split("/")[1]]
    assert list((small_home / "run").iterdir()) == []
    assert qemu_pids(str(small_home)) == []


def test_disk_full_while_creating_an_overlay(small_home: Path) -> None:
    """Case 9: the disk fills up before a worker's overlay is written: a clear error, its run
    directory and port lease are gone, and once there is room again the same store resumes."""
    before = digests(small_home)
    settings = resolve({"image": "compat", "home": small_home, "base_port": BASE}, {}, {})
    prepared = emulator.prepare(settings)
    filler = small_home / "filler"
    # Fill the filesystem, then give back 96 KiB: room for a port lease, too little for an overlay.
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True, check=False)
    assert shutil.disk_usage(small_home).free < 2**20
    os.truncate(filler, filler.stat().st_size - 96 * 1024)
    with pytest.raises(DiskFull) as error:
        emulator.start(prepared, worker="full")
    message = str(error.value)
    print(message)
    assert "failed: no space left (" in message
    assert f"MB free on the filesystem of {small_home}" in message
    assert "Free some space there, or point --stack-emulator-home" in message
    assert list((small_home / "run").iterdir()) == []
    assert list((small_home / "ports").iterdir()) == []
    assert digests(small_home) == before
    filler.unlink()
    inst = emulator.start(prepared, worker="room")
    try:
        assert inst.handle.boot == "resume"
    finally:
        inst.stop()
