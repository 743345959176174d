"""GitHub releases: the image asset of a release tag, and files of the repository at that tag.

``GET <api>/repos/<owner>/<name>/releases/tags/<tag>`` lists a release's assets. Redirects
are followed, so a renamed repository still resolves. ``GITHUB_TOKEN`` goes as a bearer token
to the API and raw hosts only (httpx drops it on a redirect to another host, such as the
asset storage). ``STACK_EMULATOR_GITHUB_API`` and ``STACK_EMULATOR_GITHUB_RAW`` replace the
two base URLs, so that tests can use a local server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from .errors import ImageError

DEFAULT_REPO = "stack-auth/stack-auth"
DEFAULT_BRANCH = "dev"
API_ENV = "STACK_EMULATOR_GITHUB_API"
RAW_ENV = "STACK_EMULATOR_GITHUB_RAW"


def default_tag(branch: str | None = None) -> str:
    return f"emulator-{branch or os.environ.get('STACK_EMULATOR_BRANCH') or DEFAULT_BRANCH}-latest"


def image_asset(arch: str) -> str:
    return f"stack-emulator-{arch}.qcow2"


@dataclass(frozen=True)
class Asset:
    name: str
    api_url: str
    download_url: str
    size: int | None
    sha256: str | None  # GitHub's own digest of the asset, where it gives one
    updated: str


@dataclass(frozen=True)
class Release:
    repo: str
    tag: str
    assets: dict[str, Asset]


def _asset(data: dict[str, Any]) -> Asset:
    digest = str(data.get("digest") or "")
    return Asset(
        name=str(data["name"]),
        api_url=str(data.get("url") or data["browser_download_url"]),
        download_url=str(data.get("browser_download_url") or data["url"]),
        size=int(data["size"]) if data.get("size") is not None else None,
        sha256=digest.removeprefix("sha256:").lower() if digest.startswith("sha256:") else None,
        updated=str(data.get("updated_at") or ""),
    )


class GitHub:
    def __init__(self, client: httpx.Client, token: str | None = None) -> None:
        self.client = client
        self.token = token if token is not None else os.environ.get("GITHUB_TOKEN") or None
        self.api = os.environ.get(API_ENV, "https://api.github.com").rstrip("/")
        self.raw_base = os.environ.get(RAW_ENV, "https://raw.githubusercontent.com").rstrip("/")

    def headers(self, url: str, accept: str | None = None) -> dict[str, str]:
        """``Accept``, and the token for the API and raw hosts and GitHub's own."""
        headers = {"Accept": accept} if accept else {}
        host = urlparse(url).hostname or ""
        ours = {urlparse(self.api).hostname, urlparse(self.raw_base).hostname}
        if self.token and (host in ours or host == "github.com" or host.endswith(".github.com")):
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def release(self, repo: str, tag: str, wanted: str) -> Release:
        """The release ``tag`` of ``repo``; errors name both and the asset ``wanted``."""
        url = f"{self.api}/repos/{repo}/releases/tags/{quote(tag, safe='')}"
        headers = {**self.headers(url, "application/vnd.github+json"), "X-GitHub-Api-Version": "2022-11-28"}
        try:
            r = self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ImageError(
                f"asking GitHub for release {tag} of {repo} (for {wanted}) failed: "
                f"{type(exc).__name__}: {exc}. Check the network, or pass --url."
            ) from None
        what = f"release {tag} of {repo} (GET {url}: HTTP {r.status_code}), so {wanted} cannot be pulled"
        if r.status_code == 401:
            raise ImageError(
                f"GitHub refused the credentials for {what}. GITHUB_TOKEN is "
                f"{'set but not accepted: renew it' if self.token else 'not set: set it to a token'} "
                f"that can read {repo}, or unset it for a public repository."
            )
        if r.status_code == 403:
            raise ImageError(
                f"GitHub denied {what}: {r.text[:200]}. If the rate limit is hit, set GITHUB_TOKEN "
                "(anonymous requests get 60 an hour) or wait."
            )
        if r.status_code == 404:
            hint = "" if self.token else " A private repository also answers 404 without GITHUB_TOKEN."
            raise ImageError(
                f"GitHub has no {what}. Check --repo and --tag (or --branch); the releases are "
                f"listed at https://github.com/{repo}/releases.{hint}"
            )
        if r.status_code != 200:
            raise ImageError(f"GitHub answered {what}. Try again later, or pass --url.")
        try:
            data = r.json()
            assets = {a.name: a for a in map(_asset, data.get("assets") or [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageError(f"{url} did not return a release ({exc}); is {API_ENV} right?") from None
        return Release(repo, tag, assets)

    def download_headers(self, asset: Asset) -> tuple[str, dict[str, str]]:
        """The URL and headers to download ``asset``: through the API with a token (private
        repositories), else the public download URL."""
        if self.token:
            return asset.api_url, self.headers(asset.api_url, "application/octet-stream")
        return asset.download_url, self.headers(asset.download_url)

    def raw_url(self, repo: str, ref: str, path: str) -> str:
        return f"{self.raw_base}/{repo}/{quote(ref, safe='')}/{path}"
