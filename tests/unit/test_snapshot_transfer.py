"""snapshot export/import and `images` on small stand-in snapshots (real qemu-img, real QEMU probe).

A snapshot directory here holds what a capture writes (a qcow2 layer over the image, a sparse
RAM file, meta.json) plus a file no restore method writes today, to show that every file
travels. The resume of a real snapshot is in tests/vm/test_snapshot_transfer.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from pytest_stack_emulator.cli import main
from pytest_stack_emulator.config import Settings, resolve
from pytest_stack_emulator.errors import SnapshotError
from pytest_stack_emulator.home import Home
from pytest_stack_emulator.inventory import list_snapshots, prune
from pytest_stack_emulator.snapshot import SnapshotKey
from pytest_stack_emulator.snapshot_archive import read_header
from pytest_stack_emulator.snapshot_transfer import export_snapshot, import_snapshot, local_key

Homes = tuple[tuple[Home, Settings], tuple[Home, Settings]]
RAM_SIZE = 64 << 20
CHUNKS = {0: b"\x01" * 4096, 10 << 20: b"\x02" * 100_000, RAM_SIZE - 4096: b"\x03" * 4096}


def make_home(root: Path) -> tuple[Home, Settings]:
    """A home whose store holds a small qcow2 image, and settings that name it."""
    disk = root / "images" / "stack-emulator-amd64.qcow2"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    settings = resolve({"image": str(disk), "home": root}, {}, {})
    return Home(root), settings


def capture_like(home: Home, key: SnapshotKey, image_disk: Path) -> Path:
    """What a capture leaves: meta.json last, a read-only layer over the image, a sparse RAM file."""
    directory = home.snapshots / key.id
    directory.mkdir(parents=True)
    ram = directory / key.migration_file
    with ram.open("wb") as f:
        f.truncate(RAM_SIZE)
        for offset, data in CHUNKS.items():
            f.seek(offset)
            f.write(data)
    if key.memory_file is not None:  # a template's guest RAM: as large as the guest's, mostly holes
        with (directory / key.memory_file).open("wb") as f:
            f.truncate(key.ram_mb << 20)
            f.write(b"guest page" * 400)
    layer = directory / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image_disk), "-F", "qcow2", str(layer)],
        check=True,
    )
    layer.chmod(0o444)
    (directory / "extra" / "device.state").parent.mkdir()
    (directory / "extra" / "device.state").write_bytes(b"state" * 100)
    meta = {
        "key": asdict(key),
        "guest_ports": {"backend": 8102},
        "image_disk": str(image_disk),
        "ram_bytes": RAM_SIZE,
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture
def homes(tmp_path: Path) -> Homes:
    return make_home(tmp_path / "a"), make_home(tmp_path / "b")


def backing(path: Path) -> str:
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(path)], capture_output=True, text=True, check=True
    )
    return str(json.loads(info.stdout)["backing-filename"])


def test_export_then_import_on_another_home_restores_every_file_sparse(homes: Homes, tmp_path: Path) -> None:
    (a, sa), (b, sb) = homes
    image_a, key = local_key(a, sa)
    image_b, key_b = local_key(b, sb)
    assert key == key_b  # same image bytes, same host
    source = capture_like(a, key, image_a.disk)
    out = tmp_path / "snap.zst"
    header = export_snapshot(a, sa, out)
    assert header["id"] == key.id
    assert read_header(out)["key"] == asdict(key)
    assert sorted(f["path"] for f in header["files"]) == sorted(
        ["disk.qcow2", "extra/device.state", "meta.json", key.migration_file]
        + ([key.memory_file] if key.memory_file else [])
    )
    assert out.stat().st_size < 1 << 20  # holes are not packed

    target = import_snapshot(b, sb, out)
    assert target == b.snapshots / key.id
    assert b.snapshot_store().load(key) is not None
    ram = target / key.migration_file
    assert ram.stat().st_size == RAM_SIZE
    assert ram.stat().st_blocks * 512 < 2 << 20  # sparse again
    with ram.open("rb") as f:
        for offset, data in CHUNKS.items():
            f.seek(offset)
            assert f.read(len(data)) == data
    assert (target / "extra" / "device.state").read_bytes() == b"state" * 100
    assert backing(target / "disk.qcow2") == str(image_b.disk)  # rebased onto this store's image
    assert backing(source / "disk.qcow2") == str(image_a.disk)
    assert (target / "disk.qcow2").stat().st_mode & 0o777 == 0o444
    assert json.loads((target / "meta.json").read_text())["image_disk"] == str(image_b.disk)
    assert not [p for p in b.snapshots.iterdir() if p.name.startswith(".")]


def test_import_refuses_a_key_that_does_not_fit_this_host(homes: Homes, tmp_path: Path) -> None:
    (a, sa), (b, sb) = homes
    image_a, key = local_key(a, sa)
    other = replace(key, qemu_version="1.0.0")
    capture_like(a, other, image_a.disk)
    out = tmp_path / "old-qemu.zst"
    export_snapshot(a, sa, out, snapshot_id=other.id)
    with pytest.raises(SnapshotError) as err:
        import_snapshot(b, sb, out)
    text = str(err.value)
    assert f"qemu_version: the file has '1.0.0', this host '{key.qemu_version}'" in text
    assert "image_digest" not in text  # only what differs
    assert "stack-emulator capture" in text
    assert not b.snapshots.exists() or not list(b.snapshots.iterdir())


def test_a_truncated_or_foreign_file_is_a_clear_error(homes: Homes, tmp_path: Path) -> None:
    (a, sa), (b, sb) = homes
    image_a, key = local_key(a, sa)
    capture_like(a, key, image_a.disk)
    out = tmp_path / "snap.zst"
    export_snapshot(a, sa, out)
    cut = tmp_path / "cut.zst"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(SnapshotError, match=r"truncated|corrupt"):
        import_snapshot(b, sb, cut)
    foreign = tmp_path / "foreign.zst"
    foreign.write_bytes(b"not zstd at all")
    with pytest.raises(SnapshotError, match=r"corrupt|not a snapshot"):
        import_snapshot(b, sb, foreign)
    assert not (b.snapshots / key.id).exists()


def test_export_without_a_snapshot_says_how_to_capture(homes: Homes, tmp_path: Path) -> None:
    (a, sa), _ = homes
    with pytest.raises(SnapshotError, match=r"no captured snapshot .* `stack-emulator capture`"):
        export_snapshot(a, sa, tmp_path / "x.zst")
    assert not (tmp_path / "x.zst").exists()


def test_images_lists_sizes_and_prune_drops_what_nothing_can_use(
    homes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (a, sa), _ = homes
    image_a, key = local_key(a, sa)
    capture_like(a, key, image_a.disk)
    stale = replace(key, qemu_version="1.0.0")
    capture_like(a, stale, image_a.disk)
    orphan = replace(key, image_digest="f" * 64)
    capture_like(a, orphan, image_a.disk)
    leftover = a.snapshots / ".capture-999999999-1"
    leftover.mkdir()
    assert main(["images", "--home", str(a.root)]) == 0
    out = capsys.readouterr().out
    assert str(image_a.disk) in out
    assert f"sha256 {image_a.digest[:12]}" in out
    assert f"{key.id}: image {key.image_digest[:12]}, QEMU {key.qemu_version}" in out
    assert "usable" in out.split(key.id)[1].splitlines()[0]
    assert f"unusable: captured with QEMU 1.0.0, installed {key.qemu_version}" in out
    assert "unusable: no image in the store has digest ffffffffffff" in out
    assert re.search(r"\d B logical", out)
    assert "allocated" in out
    assert main(["images", "--home", str(a.root), "--prune", "--json"]) == 0
    out = capsys.readouterr().out
    listing = json.loads(out[: out.rindex("}") + 1])
    assert {s["id"]: s["usable"] for s in listing["snapshots"]} == {
        key.id: True, stale.id: False, orphan.id: False, leftover.name: False
    }  # fmt: skip
    assert sorted(p.name for p in a.snapshots.iterdir()) == [key.id]
    assert "pruned 3 snapshot(s)" in out


def test_cli_snapshot_export_and_import(
    homes: Homes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (a, sa), _ = homes
    image_a, key = local_key(a, sa)
    capture_like(a, key, image_a.disk)
    out = tmp_path / "s.zst"
    common = ["--image", str(image_a.disk)]
    assert main(["snapshot", "export", "--home", str(a.root), *common, str(out)]) == 0
    assert f"snapshot {key.id}" in capsys.readouterr().out
    shutil.rmtree(a.snapshots / key.id)
    assert main(["snapshot", "import", "--home", str(a.root), *common, str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(a.snapshots / key.id)
    assert a.snapshot_store().load(key) is not None


def test_a_snapshot_of_an_image_outside_the_store_is_kept_while_that_file_is(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    outside = tmp_path / "elsewhere" / "stack-emulator-amd64.qcow2"
    outside.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(outside), "8M"], check=True)
    image, key = local_key(home, resolve({"image": str(outside), "home": home.root}, {}, {}))
    capture_like(home, key, image.disk)
    (entry,) = list_snapshots(home)
    assert entry.usable, entry.problem
    outside.unlink()
    (entry,) = list_snapshots(home)
    assert entry.problem == f"no image in the store has digest {key.image_digest[:12]}"
    assert [p.name for p, _ in prune(home)] == [key.id]


def test_a_file_exported_before_arm64_guests_still_imports(homes: Homes, tmp_path: Path) -> None:
    """Keys written before the architecture was part of them have no ``arch``: all were amd64."""
    (a, sa), (b, sb) = homes
    image_a, key = local_key(a, sa)
    assert key.arch == "amd64"
    source = capture_like(a, key, image_a.disk)
    meta = json.loads((source / "meta.json").read_text())
    del meta["key"]["arch"]
    (source / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "old.zst"
    export_snapshot(a, sa, out, snapshot_id=key.id)
    assert "arch" not in read_header(out)["key"]
    target = import_snapshot(b, sb, out)
    assert json.loads((target / "meta.json").read_text())["key"]["arch"] == "amd64"
    assert b.snapshot_store().load(key) is not None


def test_an_arm64_snapshot_imports_as_arm64_on_this_host(tmp_path: Path) -> None:
    """``--arch auto`` on import follows the file's guest, not this (amd64) host."""
    homes = []
    for name in ("a", "b"):
        disk = tmp_path / name / "images" / "stack-emulator-arm64.qcow2"
        disk.parent.mkdir(parents=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
        homes.append((Home(tmp_path / name), resolve({"image": "auto", "home": tmp_path / name}, {}, {})))
    (a, sa), (b, sb) = homes
    arm64 = replace(sa, arch="arm64")
    image_a, key = local_key(a, arm64)
    assert (image_a.manifest.arch, key.arch) == ("arm64", "arm64")
    capture_like(a, key, image_a.disk)
    out = tmp_path / "arm64.zst"
    export_snapshot(a, arm64, out)
    assert sb.arch == "auto"
    target = import_snapshot(b, sb, out)
    assert json.loads((target / "meta.json").read_text())["key"]["arch"] == "arm64"
    with pytest.raises(SnapshotError, match=r"arch: the file has 'arm64', this host 'amd64'"):
        import_snapshot(b, replace(sb, arch="amd64", image=str(make_home(tmp_path / "c")[1].image)), out)
