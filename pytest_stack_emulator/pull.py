"""Pulling an image: from a GitHub release tag or any URL, verified, with what it needs beside it.

The files a pull leaves in the image store, beside ``<disk>`` (``stack-emulator-<arch>.qcow2``):

- ``<disk>.base.env``: upstream's base environment from the same tag (upstream_env.py);
- ``<disk>.manifest.json``: the release's manifest asset, if it has one;
- ``<disk>.source.json``: where it came from (repo, tag, asset, URL, digests), which also tells
  a later ``pull`` whether the release's asset changed.

A digest is checked when one is known: ``--sha256`` or a ``.sha256`` sibling (or GitHub's own
asset digest) for the bytes served, the manifest's ``digest`` for the disk. Callers hold the
image lock (images.py): this module writes into the store.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from .arch import ARCHES
from .download import Fetch, fetch, fetch_small, parse_sha256
from .errors import ImageError
from .iso import write_atomic
from .log import Progress, get_logger
from .manifest import Manifest
from .releases import DEFAULT_REPO, GitHub, default_tag, image_asset
from .runtime import base_env_file
from .upstream_env import base_env_at

log = get_logger(__name__)

# https://github.com/<owner>/<name>/releases/download/<tag>/<asset>
RELEASE_URL = re.compile(r"https://github\.com/(?P<repo>[^/]+/[^/]+)/releases/download/(?P<tag>[^/]+)/")


@dataclass(frozen=True)
class PullSpec:
    """What to pull. Without ``url``: asset ``stack-emulator-<arch>.qcow2`` (or ``.qcow2.zst``)
    of release ``tag`` (default ``emulator-<branch>-latest``) of ``repo``. With ``url``: that
    file; ``tag`` then names the tag whose base.env goes with it."""

    repo: str = DEFAULT_REPO
    tag: str | None = None
    branch: str | None = None
    url: str | None = None
    sha256: str | None = None
    arch: str = "amd64"

    def disk_name(self) -> str:
        if self.url is None:
            return image_asset(self.arch)
        name = Path(urlparse(self.url).path).name.removesuffix(".zst")
        if not name.endswith(".qcow2"):
            raise ImageError(f"{self.url} does not name a .qcow2 or .qcow2.zst file")
        return name


@dataclass(frozen=True)
class Plan:
    """One download, resolved: what to fetch and what goes beside it."""

    fetch: Fetch
    source: dict[str, Any]
    disk_sha256: str | None  # from a manifest
    manifest: bytes | None
    repo_tag: tuple[str, str] | None


def sidecar(disk: Path, suffix: str) -> Path:
    return disk.with_name(disk.name + suffix)


def _sibling(client: httpx.Client, gh: GitHub, url: str) -> bytes | None:
    """A small file beside ``url``, or None: a server may answer 403 for what it lacks."""
    try:
        return fetch_small(url, gh.headers(url), client)
    except ImageError as exc:
        log.debug("no %s: %s", url, exc)
        return None


def plan_release(client: httpx.Client, gh: GitHub, spec: PullSpec) -> Plan:
    tag = spec.tag or default_tag(spec.branch)
    name = image_asset(spec.arch)
    release = gh.release(spec.repo, tag, f"{name} (or {name}.zst)")
    asset = release.assets.get(name) or release.assets.get(name + ".zst")
    if asset is None:
        raise ImageError(
            f"release {tag} of {spec.repo} has no asset {name} (nor {name}.zst); it has: "
            f"{', '.join(sorted(release.assets)) or 'no assets'}. Pick another --tag or --arch."
        )
    sha = spec.sha256
    how = "--sha256" if sha else ""
    if sha is None and (side := release.assets.get(asset.name + ".sha256")) is not None:
        url, headers = gh.download_headers(side)
        sha, how = (
            parse_sha256((fetch_small(url, headers, client) or b"").decode(errors="replace")),
            side.name,
        )
    if sha is None and asset.sha256:
        sha, how = asset.sha256, "GitHub's asset digest"
    manifest = None
    if (m := release.assets.get(name + ".manifest.json")) is not None:
        url, headers = gh.download_headers(m)
        manifest = fetch_small(url, headers, client)
    url, headers = gh.download_headers(asset)
    source = {"repo": spec.repo, "tag": tag, "asset": asset.name, "url": asset.download_url,
              "size": asset.size, "updated": asset.updated, "sha256_from": how or None}  # fmt: skip
    f = Fetch(url, headers, asset.size, sha, asset.name.endswith(".zst"), label=asset.name)
    return Plan(f, source, _manifest_digest(manifest, asset.name), manifest, (spec.repo, tag))


def plan_url(client: httpx.Client, gh: GitHub, spec: PullSpec) -> Plan:
    assert spec.url is not None
    url = spec.url
    sha, how = spec.sha256, "--sha256" if spec.sha256 else None
    if sha is None and (text := _sibling(client, gh, url + ".sha256")) is not None:
        sha, how = parse_sha256(text.decode(errors="replace")), f"{url}.sha256"
    disk_url = url.removesuffix(".zst")
    manifest = _sibling(client, gh, disk_url + ".manifest.json")
    m = RELEASE_URL.match(url)
    repo_tag = (spec.repo, spec.tag) if spec.tag else (m.group("repo"), m.group("tag")) if m else None
    source = {"url": url, "repo": repo_tag[0] if repo_tag else None, "tag": repo_tag[1] if repo_tag else None,
              "sha256_from": how}  # fmt: skip
    f = Fetch(url, gh.headers(url), None, sha, url.endswith(".zst"), label=Path(urlparse(url).path).name)
    return Plan(f, source, _manifest_digest(manifest, url), manifest, repo_tag)


def _manifest_digest(data: bytes | None, where: str) -> str | None:
    if data is None:
        return None
    try:
        return Manifest.from_dict(json.loads(data)).digest
    except (ValueError, TypeError, KeyError) as exc:
        raise ImageError(f"the manifest beside {where} is not valid ({exc}); fix or remove it") from None


def up_to_date(disk: Path, plan: Plan) -> bool:
    """The store has this very asset already (same URL, size and update time)."""
    try:
        had = json.loads(sidecar(disk, ".source.json").read_text())
    except (OSError, ValueError):
        return False
    keys = ("url", "size", "updated", "tag", "repo")
    return disk.exists() and all(had.get(k) == plan.source.get(k) for k in keys)


def pull_into(root: Path, spec: PullSpec, force: bool, progress: Progress) -> Path:
    """Pull ``spec`` into the store ``root``; the disk's path. Up-to-date assets are kept."""
    if spec.arch not in ARCHES:
        raise ImageError(f"--arch {spec.arch!r} is not one of {', '.join(ARCHES)}")
    if spec.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", spec.sha256):
        raise ImageError(f"--sha256 {spec.sha256!r} is not 64 hex digits")
    disk = root / spec.disk_name()
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60, connect=15)) as client:
        gh = GitHub(client)
        plan = plan_url(client, gh, spec) if spec.url else plan_release(client, gh, spec)
        if not force and up_to_date(disk, plan):
            progress.step(f"{disk} is up to date ({plan.source.get('tag') or plan.source['url']})")
            return disk
        base_env = None
        if plan.repo_tag is not None:
            repo, tag = plan.repo_tag
            base_env, how = base_env_at(
                lambda path: fetch_small(
                    gh.raw_url(repo, tag, path), gh.headers(gh.raw_url(repo, tag, path)), client
                ),
                f"{repo}@{tag}",
            )
            plan.source["base_env"] = how
            progress.step(f"base.env from {how}")
        if plan.fetch.sha256 is None and plan.disk_sha256 is None:
            log.warning(
                "no sha256 is known for %s: it is not verified (pass --sha256 to check it)", plan.fetch.url
            )
        root.mkdir(parents=True, exist_ok=True)
        progress.step(f"{plan.fetch.url} -> {disk}")
        got = fetch(plan.fetch, disk, progress, client, content_sha256=plan.disk_sha256)
    _install_sidecars(disk, plan, base_env, got.sha256, got.content_sha256)
    checked = " and ".join(
        what
        for what, known in (("the asset's sha256", plan.fetch.sha256), ("the disk's", plan.disk_sha256))
        if known
    )
    progress.step(
        f"{disk}: {got.size} bytes in {got.requests} request(s)"
        + (f", {checked} verified" if checked else "")
    )
    return disk


def _install_sidecars(disk: Path, plan: Plan, base_env: bytes | None, sha: str, disk_sha: str) -> None:
    env_path = sidecar(disk, ".base.env")
    assert env_path == base_env_file(disk)
    if base_env is not None:
        write_atomic(env_path, base_env)
    elif env_path.exists():
        log.warning("kept %s from an earlier pull; this pull named no tag to take it from", env_path)
    else:
        log.warning(
            "%s has no base.env: upstream images need their tag's (pass --tag, or write it to %s)",
            disk,
            env_path,
        )
    if plan.manifest is not None:
        write_atomic(sidecar(disk, ".manifest.json"), plan.manifest)
    else:
        sidecar(disk, ".manifest.json").unlink(missing_ok=True)
    st = disk.stat()
    # The digest cache images.py reads, so the new disk is not hashed again.
    write_atomic(
        sidecar(disk, ".sha256"),
        json.dumps({"stamp": f"{st.st_size}:{st.st_mtime_ns}", "sha256": disk_sha}).encode(),
    )
    source = {**plan.source, "asset_sha256": sha, "sha256": disk_sha, "pulled": time.time()}
    write_atomic(sidecar(disk, ".source.json"), (json.dumps(source, indent=2) + "\n").encode())
