from pathlib import Path

import pytest

from pytest_stack_emulator import iso


def test_runtime_iso_round_trip_keeps_label_names_and_contents(tmp_path: Path) -> None:
    path = tmp_path / "runtime-config.iso"
    iso.write_runtime_iso(path, {"STACK_EMULATOR_BACKEND_HOST_PORT": "26711"}, {"A_B": "c=d"})
    data = path.read_bytes()
    assert len(data) == iso.RUNTIME_ISO_SIZE
    label, files = iso.read_iso(data)
    assert label == "STACKCFG"
    assert files == {
        "runtime.env": b"STACK_EMULATOR_BACKEND_HOST_PORT=26711\n",
        "base.env": b"A_B=c=d\n",
    }


def test_seed_iso_uses_cidata_label_and_dashed_names(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    iso.write_seed_iso(path, b"#cloud-config\n", b"instance-id: x\n")
    label, files = iso.read_iso(path.read_bytes())
    assert label == "cidata"
    assert files == {"user-data": b"#cloud-config\n", "meta-data": b"instance-id: x\n"}


def test_similar_names_get_distinct_iso9660_names() -> None:
    data = iso.build_iso({"runtime.env": b"1", "runtime.env2": b"2", "runtime-x.env": b"3"}, "T")
    assert iso.read_iso(data)[1] == {"runtime.env": b"1", "runtime.env2": b"2", "runtime-x.env": b"3"}


@pytest.mark.parametrize(("key", "value"), [("lower", "x"), ("A", "two\nlines")])
def test_env_rejects_bad_names_and_line_breaks(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key if key == "lower" else "line break"):
        iso.render_env({key: value})


def test_oversized_iso_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError, match="larger than its fixed size"):
        iso.build_iso({"big": b"x" * 100_000}, "T", pad_to=50_000)


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(iso.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        iso.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]
