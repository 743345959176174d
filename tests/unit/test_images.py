"""The image store: pulls from a local HTTP server standing in for GitHub releases."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from pytest_stack_emulator.errors import ImageError
from pytest_stack_emulator.images import ImageStore, upstream_url


class Handler(http.server.SimpleHTTPRequestHandler):
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        Handler.seen_auth.append(self.headers.get("Authorization"))
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def release(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A directory laid out like GitHub's release downloads, served on 127.0.0.1."""
    root = tmp_path / "www"
    asset = root / "emulator-dev-latest" / "stack-emulator-amd64.qcow2"
    asset.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(asset), "64M"], check=True)
    Handler.seen_auth = []

    def handler(*args: object) -> Handler:
        return Handler(*args, directory=str(root))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asset
    server.shutdown()
    server.server_close()


def test_upstream_pull_gets_the_asset_with_the_builtin_manifest(
    release: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, asset = release
    monkeypatch.setenv("STACK_EMULATOR_RELEASE_BASE", base)
    monkeypatch.setenv("GITHUB_TOKEN", "secret-token")
    assert upstream_url() == f"{base}/emulator-dev-latest/stack-emulator-amd64.qcow2"
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    image = store.resolve("upstream")
    assert image.disk.read_bytes() == asset.read_bytes()
    assert image.manifest.name == "upstream"
    assert (image.manifest.ram_mb, image.manifest.vcpus) == (4096, 4)
    assert len(image.digest) == 64
    assert not list((tmp_path / "images").glob("*.part"))
    # The token goes to GitHub only, never to another host.
    assert Handler.seen_auth == [None]
    # Present now: a second resolve does not download again.
    store.resolve("upstream")
    assert len(Handler.seen_auth) == 1


def test_missing_release_names_the_url_and_the_status(
    release: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = release
    monkeypatch.setenv("STACK_EMULATOR_RELEASE_BASE", base)
    monkeypatch.setenv("STACK_EMULATOR_BRANCH", "nope")
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    with pytest.raises(ImageError, match=r"emulator-nope-latest/stack-emulator-amd64.qcow2 failed: HTTP 404"):
        store.resolve("upstream")
    assert not (tmp_path / "images" / "stack-emulator-amd64.qcow2").exists()
    assert not list((tmp_path / "images").glob("*.part"))


def test_unreachable_server_is_an_image_error(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    with pytest.raises(ImageError, match="Check the network"):
        store.pull("http://127.0.0.1:9/stack-emulator-amd64.qcow2")


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
