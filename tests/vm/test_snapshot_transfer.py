"""A real snapshot of the compat image, exported, deleted and imported, resumes; a mismatched
key is refused (issue 11)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.errors import SnapshotError
from pytest_stack_emulator.images import Image
from pytest_stack_emulator.snapshot_transfer import export_snapshot, import_snapshot
from tests.helpers import TEST_BASE_PORT, make_home, resumed_stack

BASE_PORT = TEST_BASE_PORT + 500


def test_an_exported_snapshot_deleted_and_imported_resumes(tmp_path: Path, compat_image: Image) -> None:
    home_dir = make_home(tmp_path / "home")
    settings = resolve({"image": "compat", "home": home_dir, "base_port": BASE_PORT}, {}, {})
    prepared = emulator.prepare(settings)  # captures in this fresh home
    assert prepared.snapshot is not None, prepared.snapshot_state
    snap_dir = prepared.snapshot.directory
    before = {
        p.relative_to(snap_dir).as_posix(): p.stat().st_size for p in snap_dir.rglob("*") if p.is_file()
    }
    out = tmp_path / "snapshot.zst"
    header = export_snapshot(prepared.home, settings, out)
    assert header["key"] == asdict(prepared.key)
    allocated = sum(p.stat().st_blocks * 512 for p in snap_dir.rglob("*") if p.is_file())
    print(f"snapshot: {sum(before.values()) / 1e6:.0f} MB logical, {allocated / 1e6:.0f} MB allocated; "
          f"export {out.stat().st_size / 1e6:.0f} MB")  # fmt: skip

    shutil.rmtree(snap_dir)
    assert emulator.prepare(settings, capture=False).snapshot is None
    imported = import_snapshot(prepared.home, settings, out)
    assert imported == snap_dir
    after = {p.relative_to(snap_dir).as_posix(): p.stat().st_size for p in snap_dir.rglob("*") if p.is_file()}
    assert after == before
    assert sum(p.stat().st_blocks * 512 for p in snap_dir.rglob("*") if p.is_file()) <= allocated + (8 << 20)

    with resumed_stack(home_dir, BASE_PORT, "imported") as stack:
        assert stack.boot == "resume"
        r = httpx.get(f"{stack.backend_url}/health?db=1", timeout=10)
        assert r.json() == {"status": "ok"}
    assert "reused" in emulator.prepare(settings, capture=False).snapshot_state


def test_an_import_into_a_mismatched_key_is_refused(tmp_path: Path, compat_image: Image) -> None:
    home_dir = make_home(tmp_path / "home")
    settings = resolve({"image": "compat", "home": home_dir, "base_port": BASE_PORT}, {}, {})
    prepared = emulator.prepare(settings, capture=False)
    key = prepared.key
    snap = home_dir / "snapshots" / key.id
    snap.mkdir(parents=True)
    # A snapshot of another image on a host with another CPU model.
    foreign = {**asdict(key), "image_digest": "0" * 64, "cpu": "host"}
    (snap / "meta.json").write_text(json.dumps({"key": foreign, "guest_ports": {}, "ram_bytes": 0}))
    (snap / key.migration_file).write_bytes(b"")
    out = tmp_path / "foreign.zst"
    export_snapshot(prepared.home, settings, out, snapshot_id=key.id)
    shutil.rmtree(snap)
    with pytest.raises(SnapshotError) as err:
        import_snapshot(prepared.home, settings, out)
    text = str(err.value)
    assert f"image_digest: the file has '{'0' * 64}', this host '{key.image_digest}'" in text
    assert "cpu: the file has 'host', this host 'max'" in text
    assert not (home_dir / "snapshots" / key.id).exists()
