"""`pull` over a local stand-in for GitHub: releases API, Range resume, sha256, zstd, base.env."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from pytest_stack_emulator.cli import main
from pytest_stack_emulator.errors import ImageError
from pytest_stack_emulator.images import ImageStore
from pytest_stack_emulator.log import BAR, LineSink, Progress, Transfer
from pytest_stack_emulator.pull import PullSpec
from pytest_stack_emulator.runtime import image_base_env
from tests.release_server import Fake, serve

REPO, TAG, ASSET = "stack-auth/stack-auth", "emulator-dev-latest", "stack-emulator-amd64.qcow2"
GENERATOR = b"""const entries = [
  comment("# written by the generator"),
  literal("NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR", "true"),
  blank(),
  fromSource("apps/backend/.env.development", backendEnv, "STACK_SERVER_SECRET"),
];
"""
EXPECTED_ENV = (
    b"# written by the generator\nNEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR=true\n\nSTACK_SERVER_SECRET=s3cret=x\n"
)


def disk_bytes(size: int = 3 << 20) -> bytes:
    """A qcow2-looking blob with varied content (so that a wrong offset shows)."""
    return b"QFI\xfb" + b"".join(i.to_bytes(4, "little") for i in range(size // 4))[4:]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    with serve() as fake:
        monkeypatch.setenv("STACK_EMULATOR_GITHUB_API", f"{fake.base}/api")
        monkeypatch.setenv("STACK_EMULATOR_GITHUB_RAW", f"{fake.base}/raw")
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        monkeypatch.delenv("STACK_EMULATOR_BRANCH", raising=False)
        gen = "docker/local-emulator/generate-env-development.mjs"
        fake.raw[(REPO, TAG, gen)] = GENERATOR
        fake.raw[(REPO, TAG, "apps/backend/.env.development")] = b"# c\nSTACK_SERVER_SECRET=s3cret=x\n"
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images", tmp_path / "locks")


def test_release_pull_verifies_and_keeps_base_env_beside_the_image(
    fake: Fake, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = disk_bytes()
    sha = hashlib.sha256(data).hexdigest()
    fake.release(REPO, TAG, {ASSET: data, ASSET + ".sha256": f"{sha}  {ASSET}\n".encode(), "other.txt": b"x"})
    monkeypatch.setenv("GITHUB_TOKEN", "tok")
    image = store.pull(PullSpec())
    assert image.disk == store.root / ASSET
    assert image.disk.read_bytes() == data
    assert image.digest == sha
    assert image.manifest.name == "upstream"
    assert (store.root / f"{ASSET}.base.env").read_bytes() == EXPECTED_ENV
    assert image_base_env("upstream", image.disk) == EXPECTED_ENV
    source = json.loads((store.root / f"{ASSET}.source.json").read_text())
    assert (source["repo"], source["tag"], source["asset"]) == (REPO, TAG, ASSET)
    assert source["sha256_from"] == f"{ASSET}.sha256"
    assert source["base_env"].startswith("docker/local-emulator/generate-env-development.mjs at")
    api = [r for r in fake.requests if r["path"].startswith("/api/")]
    assert api[0]["path"] == f"/api/repos/{REPO}/releases/tags/{TAG}"
    assert api[0]["auth"] == "Bearer tok"
    assert not list(store.root.glob("*.part*"))
    # The same asset again: nothing is downloaded.
    before = len(fake.downloads())
    store.pull(PullSpec())
    assert len(fake.downloads()) == before + 1  # only the .sha256 sibling


def test_a_cut_off_download_resumes_where_it_stopped(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes()
    fake.release(REPO, TAG, {ASSET: data})
    fake.cut_after = [len(data) // 3]
    image = store.pull(PullSpec())
    assert image.disk.read_bytes() == data
    ranges = [r["range"] for r in fake.downloads()]
    assert ranges == [None, f"bytes={len(data) // 3}-"]
    assert fake.served == len(data)  # not one byte twice


@pytest.mark.parametrize("zst", [False, True])
def test_an_interrupted_pull_keeps_its_part_and_the_next_pull_resumes(
    fake: Fake, store: ImageStore, zst: bool
) -> None:
    data = disk_bytes()
    served = zstandard.ZstdCompressor(level=1).compress(data) if zst else data
    name = ASSET + (".zst" if zst else "")
    fake.release(REPO, TAG, {name: served})
    step = len(served) // 8
    fake.cut_after = [step, step, step]
    with pytest.raises(ImageError, match=r"interrupted .*3 times.*kept in .*\.part: run the same pull again"):
        store.pull(PullSpec())
    part = store.root / f"{name}.part"
    assert part.stat().st_size == 3 * step
    assert not (store.root / ASSET).exists()
    fake.served = 0
    image = store.pull(PullSpec())  # a new call: the kept part is replayed, then the rest asked for
    assert image.disk.read_bytes() == data
    assert fake.downloads()[-1]["range"] == f"bytes={3 * step}-"
    assert fake.served == len(served) - 3 * step
    assert not part.exists()


def test_a_server_that_ignores_range_gets_a_fresh_start(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes()
    fake.release(REPO, TAG, {ASSET: data})
    fake.cut_after = [1000, 1000, 1000]
    with pytest.raises(ImageError):
        store.pull(PullSpec())
    fake.ignore_range = True
    image = store.pull(PullSpec())
    assert image.disk.read_bytes() == data


def test_a_wrong_sha256_is_a_clear_error_and_leaves_no_image(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes()
    fake.release(REPO, TAG, {ASSET: data})
    wrong = "ab" * 32
    with pytest.raises(
        ImageError, match=rf"sha256 of .*{ASSET} is {hashlib.sha256(data).hexdigest()}, expected {wrong}"
    ):
        store.pull(PullSpec(sha256=wrong))
    assert sorted(p.name for p in store.root.iterdir()) == []
    # A wrong .sha256 sibling is refused the same way.
    fake.release(REPO, TAG, {ASSET: data, ASSET + ".sha256": wrong.encode()})
    with pytest.raises(ImageError, match="Nothing was installed"):
        store.pull(PullSpec())
    assert not (store.root / ASSET).exists()


@pytest.mark.parametrize("token", [None, "expired"])
def test_release_api_401_names_repo_tag_asset_and_github_token(
    fake: Fake, store: ImageStore, monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    fake.token = "the-right-one"
    if token:
        monkeypatch.setenv("GITHUB_TOKEN", token)
    with pytest.raises(ImageError) as err:
        store.pull(PullSpec(tag="emulator-dev-20261120-abc"))
    text = str(err.value)
    for part in ("HTTP 401", REPO, "emulator-dev-20261120-abc", ASSET, "GITHUB_TOKEN"):
        assert part in text
    assert ("renew it" if token else "not set") in text


def test_release_api_404_names_repo_tag_and_asset(fake: Fake, store: ImageStore) -> None:
    with pytest.raises(ImageError) as err:
        store.pull(PullSpec(repo="someone/fork", branch="main", arch="arm64"))
    text = str(err.value)
    for part in ("HTTP 404", "someone/fork", "emulator-main-latest", "stack-emulator-arm64.qcow2", "--tag"):
        assert part in text


def test_a_release_without_the_asset_lists_what_it_has(fake: Fake, store: ImageStore) -> None:
    fake.release(REPO, TAG, {"stack-emulator-arm64.qcow2": b"x"})
    with pytest.raises(
        ImageError, match=rf"release {TAG} of {REPO} has no asset {ASSET} .*stack-emulator-arm64"
    ):
        store.pull(PullSpec())


def test_a_renamed_repository_is_followed(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes(1 << 16)
    fake.release("hexclave/hexclave", TAG, {ASSET: data})
    fake.renamed["old/name"] = "hexclave/hexclave"
    fake.raw[("old/name", TAG, "docker/local-emulator/.env.development")] = b"A=1\n"
    image = store.pull(PullSpec(repo="old/name"))
    assert image.disk.read_bytes() == data
    assert (store.root / f"{ASSET}.base.env").read_bytes() == b"A=1\n"


def test_a_zst_asset_is_decompressed_while_it_streams(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes()
    # Two frames, as a parallel compressor writes them.
    packed = zstandard.ZstdCompressor().compress(data[:1000]) + zstandard.ZstdCompressor().compress(
        data[1000:]
    )
    sha = hashlib.sha256(packed).hexdigest()
    fake.release(REPO, TAG, {ASSET + ".zst": packed, ASSET + ".zst.sha256": sha.encode()})
    fake.cut_after = [len(packed) // 2]
    image = store.pull(PullSpec())
    assert [r["range"] for r in fake.downloads() if r["path"].endswith(".zst")] == [
        None,
        f"bytes={len(packed) // 2}-",
    ]
    assert image.disk.name == ASSET
    assert image.disk.read_bytes() == data
    assert image.digest == hashlib.sha256(data).hexdigest()
    assert fake.served == len(packed) + len(sha)  # the asset once, and its .sha256
    assert not list(store.root.glob("*.unpack"))
    assert not list(store.root.glob("*.part"))


def test_a_truncated_zst_asset_is_refused(fake: Fake, store: ImageStore) -> None:
    packed = zstandard.ZstdCompressor().compress(disk_bytes(1 << 16))
    fake.release(REPO, TAG, {ASSET + ".zst": packed[:-10]})
    with pytest.raises(ImageError, match="ends inside a zstd frame"):
        store.pull(PullSpec())
    assert not (store.root / ASSET).exists()


def test_url_pull_takes_the_sha256_sibling_and_a_tag_for_base_env(fake: Fake, store: ImageStore) -> None:
    data = disk_bytes(1 << 16)
    fake.files["/mirror/stack-emulator-amd64.qcow2"] = data
    fake.files["/mirror/stack-emulator-amd64.qcow2.sha256"] = hashlib.sha256(data).hexdigest().encode()
    image = store.pull(PullSpec(url=f"{fake.base}/mirror/stack-emulator-amd64.qcow2", tag=TAG))
    assert image.disk.read_bytes() == data
    assert (store.root / f"{ASSET}.base.env").read_bytes() == EXPECTED_ENV
    source = json.loads((store.root / f"{ASSET}.source.json").read_text())
    assert source["sha256_from"].endswith(".qcow2.sha256")
    fake.files["/mirror/stack-emulator-amd64.qcow2.sha256"] = b"00" * 32
    with pytest.raises(ImageError, match="expected 0000"):
        store.pull(PullSpec(url=f"{fake.base}/mirror/stack-emulator-amd64.qcow2", tag=TAG), force=True)


def test_an_upstream_image_without_its_base_env_does_not_boot_on_a_stand_in(tmp_path: Path) -> None:
    disk = tmp_path / ASSET
    disk.write_bytes(b"QFI\xfb")
    with pytest.raises(ImageError, match=r"base.env is missing.*stack-emulator pull --tag"):
        image_base_env("upstream", disk)
    assert isinstance(image_base_env("compat", disk), dict)


def test_cli_pull_prints_the_disk_and_what_it_moved(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    data = disk_bytes(8 << 20)
    fake.release(REPO, TAG, {ASSET: data})
    caplog.set_level(logging.INFO, logger="pytest_stack_emulator")
    assert main(["pull", "--home", str(tmp_path / "home"), "--tag", TAG]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "home" / "images" / ASSET)
    done = [r.getMessage() for r in caplog.records if f"{ASSET}: 8.4 MB in" in r.getMessage()]
    assert done
    assert "MB/s" in done[0]
    assert main(["pull", "--home", str(tmp_path / "home"), "--tag", "no-such-tag"]) == 1
    assert "GitHub has no release no-such-tag" in capsys.readouterr().err


def test_a_transfer_bar_shows_bytes_percent_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pytest_stack_emulator")
    progress = Progress("pull", logging.getLogger("pytest_stack_emulator.test"))
    bar = Transfer(progress, ASSET, 100_000_000, start=10_000_000, every=0)
    bar.started -= 2.0  # as if 2 s had passed
    bar.update(50_000_000)
    (record,) = [r for r in caplog.records if getattr(r, BAR, False)]
    line = record.getMessage()
    for part in (ASSET, "50.0 MB / 100.0 MB", " 50%", "[##########..........]", "20.0 MB/s", "ETA 0:02"):
        assert part in line, line


def test_a_bar_redraws_one_line_on_a_terminal_and_is_thinned_elsewhere() -> None:
    lines: list[str] = []
    redrawn: list[str] = []
    log = logging.getLogger("pytest_stack_emulator.test.sink")
    log.propagate = False
    log.setLevel(logging.INFO)
    for sink in (LineSink(lines.append, redrawn.append), LineSink(lines.append, None, every=3600)):
        log.addHandler(sink)
        for n in range(3):
            log.info("bar %d", n, extra={BAR: True})
        log.info("done")
        log.removeHandler(sink)
    # Terminal: every bar redrawn, then a newline before the next line. Elsewhere: the first bar only.
    assert redrawn == ["bar 0", "bar 1", "bar 2"]
    assert lines == ["", "done", "bar 0", "done"]
