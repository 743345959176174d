"""Snapshot directories: atomic commit, and a snapshot that does not match is never loaded."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from pytest_stack_emulator.snapshot import SnapshotKey, SnapshotStore, migration_uri

KEY = SnapshotKey("ab" * 32, "10.0.2", "tcg", "max", 1024, 2, 1, "mapped-ram")


def staged(store: SnapshotStore) -> Path:
    staging = store.staging()
    (staging / "disk.qcow2").write_bytes(b"disk")
    (staging / "ram.raw").write_bytes(b"r" * 4096)
    return staging


def test_commit_makes_a_loadable_read_only_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.load(KEY) is None
    snap = store.commit(staged(store), KEY, {"mock_oauth": 26704}, 1.5, 30.0)
    assert snap.directory == tmp_path / KEY.id
    assert (snap.guest_ports, snap.capture_seconds, snap.boot_seconds) == ({"mock_oauth": 26704}, 1.5, 30.0)
    assert snap.disk.stat().st_mode & 0o222 == 0
    assert store.load(KEY) == snap
    assert [p.name for p in tmp_path.iterdir()] == [KEY.id]


def test_unfinished_capture_is_not_a_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    staged(store)  # never committed: no meta.json, temporary name
    assert store.load(KEY) is None


def test_truncated_ram_file_is_not_loaded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    snap = store.commit(staged(store), KEY, {}, 1.0)
    snap.migration.write_bytes(b"short")
    assert store.load(KEY) is None


def test_every_key_field_changes_the_id() -> None:
    ids = {KEY.id}
    for field, value in [("image_digest", "cd" * 32), ("qemu_version", "9.2.0"), ("accel", "kvm"),
                         ("cpu", "host"), ("ram_mb", 2048), ("vcpus", 4), ("layout_version", 2),
                         ("restore_method", "stream")]:  # fmt: skip
        ids.add(dataclasses.replace(KEY, **{field: value}).id)
    assert len(ids) == 9


def test_prune_removes_other_snapshots_of_the_same_image_only(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    old = dataclasses.replace(KEY, qemu_version="9.2.0")
    other_image = dataclasses.replace(KEY, image_digest="ef" * 32)
    stream = dataclasses.replace(KEY, restore_method="stream")
    for key in (KEY, old, other_image, stream):
        staging = staged(store)
        if key is stream:
            (staging / "ram.raw").rename(staging / "ram.stream")
        store.commit(staging, key, {}, 1.0)
    removed = store.prune(KEY, tmp_path / "locks")
    assert removed == [tmp_path / old.id]
    assert store.load(KEY) is not None
    assert store.load(other_image) is not None
    assert store.load(stream) is not None


def test_prune_removes_snapshots_of_a_deleted_image_unless_locked(tmp_path: Path) -> None:
    from filelock import FileLock

    store = SnapshotStore(tmp_path / "snaps")
    gone, held = (dataclasses.replace(KEY, image_digest=d * 32) for d in ("11", "22"))
    for key in (gone, held):
        store.commit(staged(store), key, {}, 1.0, image_disk=tmp_path / "deleted.qcow2")
    locks = tmp_path / "locks"
    locks.mkdir()
    with FileLock(str(locks / f"snapshot-{held.id}.lock")):
        assert store.prune(KEY, locks) == [store.path(gone)]
    assert store.load(held) is not None


def test_prune_ignores_unfinished_captures(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    staging = staged(store)
    (staging / "meta.json").write_text(
        json.dumps({"key": dataclasses.asdict(dataclasses.replace(KEY, cpu="x"))})
    )
    assert store.prune(KEY, tmp_path / "locks") == []
    assert staging.exists()


def test_stream_uses_exec_cat_before_qemu_8_2() -> None:
    path = Path("/snap dir/ram.stream")
    assert (
        migration_uri(path, "mapped-ram", incoming=True, qemu_version="10.0.2") == "file:/snap dir/ram.stream"
    )
    assert migration_uri(path, "stream", incoming=True, qemu_version="9.2.0") == "file:/snap dir/ram.stream"
    assert (
        migration_uri(path, "stream", incoming=True, qemu_version="7.2.0")
        == "exec:cat '/snap dir/ram.stream'"
    )
    assert (
        migration_uri(path, "stream", incoming=False, qemu_version="8.1.5")
        == "exec:cat > '/snap dir/ram.stream'"
    )


TEMPLATE_KEY = dataclasses.replace(KEY, restore_method="template")


def staged_template(store: SnapshotStore, ram_bytes: int = 1024 << 20) -> Path:
    staging = store.staging()
    (staging / "disk.qcow2").write_bytes(b"disk")
    (staging / "state.bin").write_bytes(b"s" * 4096)
    with (staging / "memory.img").open("wb") as f:
        f.truncate(ram_bytes)  # sparse, as the capture VM leaves it
    return staging


def test_a_template_keeps_its_ram_file_read_only_beside_the_device_state(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    snap = store.commit(staged_template(store), TEMPLATE_KEY, {}, 0.05)
    assert snap.migration == snap.directory / "state.bin"
    assert snap.memory == snap.directory / "memory.img"
    assert snap.memory.stat().st_mode & 0o222 == 0
    assert store.load(TEMPLATE_KEY) == snap
    assert snap.sizes()["logical"] == (1024 << 20) + 4096 + 4


def test_a_template_whose_ram_file_is_missing_or_short_is_not_loaded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    snap = store.commit(staged_template(store), TEMPLATE_KEY, {}, 0.05)
    assert snap.memory is not None
    os.truncate(snap.memory, 512 << 20)
    assert store.load(TEMPLATE_KEY) is None
    snap.memory.unlink()
    assert store.load(TEMPLATE_KEY) is None
