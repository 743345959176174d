"""The compat image's place in the store: new builds never overwrite one in use."""

from __future__ import annotations

from pathlib import Path

from pytest_stack_emulator.builder import CompatImageBuilder, inputs_hash, read_packages
from pytest_stack_emulator.log import Progress
from pytest_stack_emulator.manifest import Boot, Manifest, stack_services


def fake_build(store: Path, digest: str) -> tuple[Path, Manifest]:
    work = store / f".build-{digest}"
    work.mkdir(parents=True)
    (work / "disk.qcow2").write_text(digest)
    boot = Boot("kernel", "vmlinuz", "initrd.img")
    manifest = Manifest("compat", "amd64", "disk.qcow2", 1024, 2, boot, stack_services(), digest=digest * 32)
    (work / "manifest.json").write_text(manifest.to_json())
    return work, manifest


def test_each_build_gets_its_own_directory_and_the_pointer_moves(tmp_path: Path) -> None:
    builder = CompatImageBuilder(tmp_path)
    finals = []
    for digest in ("aa", "bb", "cc", "dd"):
        work, manifest = fake_build(tmp_path, digest)
        finals.append(builder._install(work, manifest, Progress("t")))
        assert builder.target.is_symlink()
        assert builder.directory == finals[-1]
        assert (builder.target / "disk.qcow2").read_text() == digest
    # The newest three stay (a running session may use the previous one, another branch the
    # one before); older go.
    assert not finals[0].exists()
    assert all(final.exists() for final in finals[1:])


def test_a_kept_build_of_the_same_inputs_is_reused_and_pointed_to(tmp_path: Path) -> None:
    source = tmp_path / "cloud_init"
    source.mkdir()
    (source / "packages").write_text("a\n")
    builder = CompatImageBuilder(tmp_path / "store", source=source)
    finals = []
    for digest, text in (("aa", "a\n"), ("bb", "b\n")):
        (source / "packages").write_text(text)
        work, manifest = fake_build(builder.store_dir, digest)
        manifest = Manifest(**{**manifest.__dict__, "inputs_hash": inputs_hash(source)})
        (work / "manifest.json").write_text(manifest.to_json())
        finals.append(builder._install(work, manifest, Progress("t")))
    # Back on the first branch's inputs: its build is found although the pointer names the other.
    (source / "packages").write_text("a\n")
    cached = builder.cached()
    assert cached is not None
    assert cached.directory == finals[0]
    assert builder.directory == finals[0]
    (source / "packages").write_text("c\n")
    assert builder.cached() is None


def test_a_legacy_directory_is_kept_under_a_new_name(tmp_path: Path) -> None:
    builder = CompatImageBuilder(tmp_path)
    builder.target.mkdir()
    (builder.target / "disk.qcow2").write_text("legacy")
    work, manifest = fake_build(tmp_path, "dd")
    builder._install(work, manifest, Progress("t"))
    legacy = [p for p in tmp_path.glob("compat-amd64-legacy-*")]
    assert len(legacy) == 1
    assert (legacy[0] / "disk.qcow2").read_text() == "legacy"


def test_inputs_hash_follows_cloud_init_contents_and_modes(tmp_path: Path) -> None:
    src = tmp_path / "cloud_init"
    (src / "rootfs").mkdir(parents=True)
    script = src / "rootfs" / "run"
    script.write_text("echo hi\n")
    first = inputs_hash(src)
    script.chmod(0o755)
    second = inputs_hash(src)
    script.write_text("echo bye\n")
    assert len({first, second, inputs_hash(src)}) == 3


def test_inputs_hash_ignores_tool_caches_in_the_checkout(tmp_path: Path) -> None:
    """A linter run inside cloud_init/ must not make the image stale (a fresh clone has no cache)."""
    src = tmp_path / "cloud_init"
    pkg = src / "rootfs" / "stackd"
    pkg.mkdir(parents=True)
    (pkg / "app.py").write_text("x = 1\n")
    clean = inputs_hash(src)
    for cache in (".ruff_cache/0.17.6/123", "__pycache__/app.cpython-311.pyc", ".mypy_cache/3.11/app.json"):
        (pkg / cache).parent.mkdir(parents=True, exist_ok=True)
        (pkg / cache).write_text("cache")
    assert inputs_hash(src) == clean
    (pkg / "app.py").write_text("x = 2\n")
    assert inputs_hash(src) != clean


def test_package_list_ignores_comments(tmp_path: Path) -> None:
    (tmp_path / "packages").write_text("# comment\na b # trailing\n\nc\n")
    assert read_packages(tmp_path) == ["a", "b", "c"]
