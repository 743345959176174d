"""Streaming one file over HTTP into place: progress, resume, sha256, zstd.

The bytes as served go to ``<name>.part`` beside the target, so an interrupted download
resumes with a ``Range`` request (``If-Range`` guards against a file changed meanwhile; a
server that ignores ``Range`` gets a fresh start). A ``.zst`` asset is decompressed while
it streams into ``<target>.unpack``; on resume the kept ``.part`` is first replayed through
the decompressor. The sha256 of the served bytes is checked before anything is renamed into
place, so a mismatch leaves no file at the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import zstandard

from .errors import ImageError
from .log import Progress, Transfer, get_logger

log = get_logger(__name__)

CHUNK = 1 << 20
ATTEMPTS = 3
SHA256_RE = re.compile(r"\b[0-9a-fA-F]{64}\b")


@dataclass
class Fetch:
    """What to download: ``url``, with ``headers`` (a bearer token, ``Accept``); ``size``
    when known beforehand; ``sha256`` of the served bytes when known; ``zstd`` to decompress."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    sha256: str | None = None
    zstd: bool = False
    label: str = ""


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str  # of the served bytes
    content_sha256: str  # of the file written (the same unless decompressed)
    size: int  # bytes served
    resumed_at: int
    requests: int


def parse_sha256(text: str) -> str | None:
    """The first 64-hex-digit word of a ``.sha256`` file (``sha256sum`` output or a bare digest)."""
    m = SHA256_RE.search(text)
    return m.group(0).lower() if m else None


class _Corrupt(ImageError):
    """The served bytes are not valid zstd: what was kept cannot be resumed."""


class _Zstd:
    """A zstd decompressor across frames; ``complete`` when the last frame has ended."""

    def __init__(self) -> None:
        self.obj = zstandard.ZstdDecompressor().decompressobj()
        self.fed = False

    def feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            self.fed = True
            try:
                out.append(self.obj.decompress(chunk))
            except zstandard.ZstdError as exc:
                raise _Corrupt(f"not valid zstd data ({exc})") from None
            chunk = self.obj.unused_data if self.obj.eof else b""
            if chunk:
                self.obj = zstandard.ZstdDecompressor().decompressobj()
        return b"".join(out)

    @property
    def complete(self) -> bool:
        return self.fed and bool(self.obj.eof)


class _Sink:
    """Where the served bytes go: the ``.part``, the hashes, and the decompressor if any."""

    def __init__(self, part: Path, unpack: Path | None) -> None:
        self.part, self.unpack = part, unpack
        self._open()

    def _open(self) -> None:
        self.hash = hashlib.sha256()
        self.content = hashlib.sha256()
        self.done = 0
        self.f: IO[bytes] = self.part.open("ab")
        self.out: IO[bytes] | None = self.unpack.open("wb") if self.unpack is not None else None
        self.zstd = _Zstd() if self.unpack is not None else None

    def replay(self) -> None:
        """Feed what ``.part`` already holds to the hashes and the decompressor."""
        with self.part.open("rb") as f:
            while chunk := f.read(CHUNK):
                self._digest(chunk)

    def _digest(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.done += len(chunk)
        if self.zstd is not None and self.out is not None:
            data = self.zstd.feed(chunk)
            self.out.write(data)
            self.content.update(data)
        else:
            self.content.update(chunk)

    def write(self, chunk: bytes) -> None:
        self.f.write(chunk)
        self._digest(chunk)

    def close(self) -> None:
        self.f.close()
        if self.out is not None:
            self.out.close()

    def restart(self) -> None:
        """Throw away what arrived and start from byte 0."""
        self.discard()
        self._open()

    def discard(self) -> None:
        self.close()
        self.part.unlink(missing_ok=True)
        _state_path(self.part).unlink(missing_ok=True)


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _load_state(part: Path, url: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(_state_path(part).read_text())
        if isinstance(state, dict) and state.get("url") == url and part.exists():
            return state
    part.unlink(missing_ok=True)
    _state_path(part).unlink(missing_ok=True)
    return {}


def _total(response: httpx.Response, offset: int) -> int | None:
    if response.status_code == 206:
        m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
        if m is None or int(m.group(1)) != offset:
            return None
        return int(m.group(2)) if m.group(2) != "*" else None
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


@contextlib.contextmanager
def _request(
    client: httpx.Client, f: Fetch, offset: int, state: Mapping[str, Any]
) -> Iterator[httpx.Response]:
    headers = {"Accept-Encoding": "identity", **f.headers}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = state.get("etag") or state.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    with client.stream("GET", f.url, headers=headers) as r:
        yield r


def _http_error(f: Fetch, r: httpx.Response) -> ImageError:
    hint = {
        401: " The server wants credentials: set GITHUB_TOKEN to a token that can read it.",
        403: " Access denied or rate-limited: set GITHUB_TOKEN, or wait and try again.",
        404: " Check the URL (or the release tag and asset name).",
    }.get(r.status_code, " Try again later.")
    return ImageError(f"download of {f.url} failed: HTTP {r.status_code}.{hint}")


def fetch(
    f: Fetch,
    target: Path,
    progress: Progress,
    client: httpx.Client | None = None,
    content_sha256: str | None = None,
) -> Fetched:
    """Download ``f`` to ``target``, renamed into place only when complete and verified:
    ``f.sha256`` against the bytes served, ``content_sha256`` against the file written."""
    part = target.with_name(target.name + (".zst" if f.zstd else "") + ".part")
    unpack = target.with_name(target.name + ".unpack") if f.zstd else None
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60, connect=15))
    state = _load_state(part, f.url)
    sink = _Sink(part, unpack)
    try:
        try:
            sink.replay()
        except _Corrupt:
            progress.step(f"{part} holds no valid zstd data; starting over")
            sink.discard()
            sink = _Sink(part, unpack)
        resumed_at = sink.done
        if sink.done:
            progress.step(f"resuming {part.name} at byte {sink.done}")
        total, requests = _stream(client, f, sink, state, progress, target.name)
        if total is not None and sink.done != total:
            sink.discard()
            raise ImageError(
                f"download of {f.url} has {sink.done} bytes, the server announced {total}; it was "
                "removed. Pull again; if it happens again, the server is at fault."
            )
        digest = sink.hash.hexdigest()
        if f.sha256 and digest != f.sha256.lower():
            sink.discard()
            raise ImageError(
                f"sha256 of {f.url} is {digest}, expected {f.sha256.lower()}: the download is "
                "corrupt or the digest is wrong. Nothing was installed; check the digest and pull again."
            )
        content = sink.content.hexdigest()
        if content_sha256 and content != content_sha256.lower():
            sink.discard()
            raise ImageError(
                f"sha256 of the disk from {f.url} is {content}, its manifest says {content_sha256.lower()}: "
                "the image does not match its manifest. Nothing was installed; tell the publisher."
            )
        if sink.zstd is not None and not sink.zstd.complete:
            sink.discard()
            raise ImageError(f"{f.url} ends inside a zstd frame: the file on the server is truncated")
        sink.close()
        os.replace(unpack or part, target)
        sink.discard()
        return Fetched(target, digest, content, sink.done, resumed_at, requests)
    except _Corrupt as exc:
        sink.discard()
        raise ImageError(f"{f.url}: {exc}. What arrived was removed; check the URL and pull again.") from None
    except httpx.HTTPError as exc:
        raise ImageError(
            f"download of {f.url} failed: {type(exc).__name__}: {exc}. Check the network and try "
            f"again" + (f"; the {sink.done} bytes that arrived are kept in {part}." if sink.done else ".")
        ) from None
    finally:
        sink.close()
        if sink.done == 0:
            sink.discard()
        if unpack is not None:
            unpack.unlink(missing_ok=True)
        if own:
            client.close()


def _stream(
    client: httpx.Client, f: Fetch, sink: _Sink, state: dict[str, Any], progress: Progress, name: str
) -> tuple[int | None, int]:
    """Request until every byte arrived, resuming after an interruption; (total, requests)."""
    total: int | None = None
    requests = 0
    for attempt in range(1, ATTEMPTS + 1):
        total = state.get("total") or f.size
        if total is not None and sink.done == total:
            break
        requests += 1
        try:
            with _request(client, f, sink.done, state) as r:
                if sink.done and (
                    r.status_code == 416 or (r.status_code == 206 and _total(r, sink.done) is None)
                ):
                    reason = f"HTTP {r.status_code} to a range request; starting over"
                    sink.restart()
                else:
                    reason = _receive(r, f, sink, state, progress, name)
                    total = state.get("total")
                    if not reason:
                        break
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise
        except (httpx.TransportError, httpx.StreamError) as exc:
            sink.f.flush()
            reason = f"{type(exc).__name__}: {exc}"
        if attempt == ATTEMPTS:
            raise ImageError(
                f"download of {f.url} was interrupted ({reason}), {ATTEMPTS} times. {sink.done} bytes "
                f"are kept in {sink.part}: run the same pull again to resume from there."
            )
        progress.step(f"interrupted ({reason}); resuming at byte {sink.done}")
    return total, requests


def _receive(
    r: httpx.Response, f: Fetch, sink: _Sink, state: dict[str, Any], progress: Progress, name: str
) -> str:
    """Write one response's body; what is still missing ("" when nothing)."""
    if r.status_code not in (200, 206):
        raise _http_error(f, r)
    if sink.done and r.status_code == 200:
        progress.step(f"{f.url} ignored the range request; starting over")
        sink.restart()
    total = _total(r, sink.done) or state.get("total") or f.size
    state.clear()
    state.update(
        url=f.url, total=total, etag=r.headers.get("etag"), last_modified=r.headers.get("last-modified")
    )
    _state_path(sink.part).write_text(json.dumps(state))
    bar = Transfer(progress, f.label or name, total, start=sink.done)
    for chunk in r.iter_bytes():
        sink.write(chunk)
        bar.update(sink.done)
    sink.f.flush()
    bar.finish()
    if total is None or sink.done >= total:
        return ""
    return f"the connection closed after {sink.done} of {total} bytes"


def fetch_small(
    url: str, headers: Mapping[str, str] | None = None, client: httpx.Client | None = None
) -> bytes | None:
    """A small file (a ``.sha256``, a manifest, an env file): its bytes, None on 404."""
    own = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60, connect=15))
    try:
        r = client.get(url, headers=dict(headers or {}))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise ImageError(
                f"GET {url} failed: HTTP {r.status_code}. Check the URL, or GITHUB_TOKEN for GitHub."
            )
        return r.content
    except httpx.HTTPError as exc:
        raise ImageError(f"GET {url} failed: {type(exc).__name__}: {exc}. Check the network.") from None
    finally:
        if own:
            client.close()
