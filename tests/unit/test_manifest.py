from pathlib import Path

import pytest

from pytest_stack_emulator.errors import ImageError, SnapshotError
from pytest_stack_emulator.manifest import PLACEHOLDER_KEYS, Manifest, upstream_manifest
from pytest_stack_emulator.snapshot import MAPPED_RAM, STREAM, TEMPLATE, choose_restore_method


def test_upstream_manifest_restates_the_contract() -> None:
    m = upstream_manifest()
    assert (m.ram_mb, m.vcpus, m.machine, m.boot.method) == (4096, 4, "q35", "firmware")
    ports = {s.name: s.guest_port for s in m.services}
    assert ports == {"dashboard": 8101, "backend": 8102, "minio": 9090, "inbucket": 9001, "mock_oauth": None}
    assert m.service("backend").health_path == "/health?db=1"
    assert m.service("backend").health_body == {"status": "ok"}
    assert m.keys["publishable_client_key"] == "0" * 32 + "f" * 32
    assert PLACEHOLDER_KEYS["cron_secret"] == "0" * 32 + "c" * 32


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    m = upstream_manifest().with_digest("ab" * 32)
    (tmp_path / "manifest.json").write_text(m.to_json())
    assert Manifest.load(tmp_path / "manifest.json") == m


def test_bad_manifest_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"name": "x"}')
    with pytest.raises(ImageError, match=r"manifest.json is not valid.*build-image --force"):
        Manifest.load(path)


def test_restore_method_follows_capabilities() -> None:
    assert choose_restore_method("auto", {"mapped-ram", "multifd", "xbzrle"}) == MAPPED_RAM
    assert choose_restore_method("auto", {"xbzrle"}) == STREAM
    assert choose_restore_method("stream", {"mapped-ram", "multifd"}) == STREAM
    with pytest.raises(SnapshotError, match="no mapped-ram"):
        choose_restore_method("mapped-ram", {"multifd"})


def test_templating_is_the_default_where_qemu_can_map_a_read_only_ram_file() -> None:
    caps = {"mapped-ram", "multifd", "x-ignore-shared"}
    assert choose_restore_method("auto", caps, "10.0.2") == TEMPLATE
    assert choose_restore_method("auto", caps, "8.2.0") == TEMPLATE
    # Before 8.2 memory-backend-file has no ``rom`` property: mapped-ram, then a stream.
    assert choose_restore_method("auto", caps, "8.1.5") == MAPPED_RAM
    assert choose_restore_method("auto", {"x-ignore-shared"}, "7.2.0") == STREAM
    assert choose_restore_method("mapped-ram", caps, "10.0.2") == MAPPED_RAM
    with pytest.raises(
        SnapshotError, match=r"\(7\.2\.0\) cannot restore a template.*restore mapped-ram or stream"
    ):
        choose_restore_method("template", {"x-ignore-shared"}, "7.2.0")
