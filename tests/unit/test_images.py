"""The image store: paths, the store's own images, and where a GitHub token may go (pulls: test_pull.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator.errors import ImageError
from pytest_stack_emulator.images import ImageStore
from pytest_stack_emulator.pull import PullSpec
from pytest_stack_emulator.releases import GitHub


def test_the_token_goes_to_github_hosts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACK_EMULATOR_GITHUB_API", raising=False)
    monkeypatch.delenv("STACK_EMULATOR_GITHUB_RAW", raising=False)
    with httpx.Client() as client:
        gh = GitHub(client, token="secret-token")
        for url in (
            "https://api.github.com/repos/a/b",
            "https://raw.githubusercontent.com/a/b/t/f",
            "https://github.com/a/b",
        ):
            assert gh.headers(url)["Authorization"] == "Bearer secret-token"
        assert "Authorization" not in gh.headers("https://mirror.example/stack-emulator-amd64.qcow2")
        assert "Authorization" not in gh.headers("https://objects.githubusercontent.com.evil.example/x")


def test_unreachable_server_is_an_image_error(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    with pytest.raises(ImageError, match="Check the network"):
        store.pull(PullSpec(url="http://127.0.0.1:9/stack-emulator-amd64.qcow2"))


def test_bare_qcow2_path_gets_upstream_manifest_and_cached_digest(tmp_path: Path) -> None:
    disk = tmp_path / "stack-emulator-amd64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    image = store.resolve(str(disk))
    assert image.manifest.boot.method == "firmware"
    assert (tmp_path / "stack-emulator-amd64.qcow2.sha256").exists()
    assert store.resolve(str(disk)).digest == image.digest


def test_missing_path_says_what_to_give(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    with pytest.raises(ImageError, match=r"does not exist. Give a path to a .qcow2 file, a URL, or `compat`"):
        store.resolve(str(tmp_path / "missing.qcow2"))


def test_existing_prefers_an_image_already_in_the_store(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    store = ImageStore(images, tmp_path / "locks")
    assert store.existing() is None
    disk = images / "stack-emulator-amd64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    found = store.existing()
    assert found is not None
    assert found.disk == disk
