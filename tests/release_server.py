"""A local stand-in for GitHub: the releases API, release downloads and raw files.

The only fake in these tests: GitHub is outside this machine. Downloads honour ``Range``
(unless told not to) and can be cut off midway; every request and every byte served is
counted, so a test can tell a resumed download from one that started over.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fake:
    base: str = ""
    releases: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    raw: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # any path -> bytes
    renamed: dict[str, str] = field(default_factory=dict)  # old repo -> new repo
    token: str | None = None  # when set, the API answers 401 without this bearer token
    ignore_range: bool = False
    cut_after: list[int] = field(default_factory=list)  # per longer download: bytes before closing
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: int = 0  # download bytes written

    def release(self, repo: str, tag: str, assets: dict[str, bytes]) -> None:
        self.releases[(repo, tag)] = assets

    def downloads(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith("/download/")]


def _handler(fake: Fake) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            fake.requests.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "range": self.headers.get("Range"),
                }
            )
            m = re.fullmatch(r"/api/repos/([^/]+/[^/]+)/releases/tags/([^/]+)", self.path)
            if m:
                return self._api(m.group(1), m.group(2))
            m = re.fullmatch(r"/download/([^/]+/[^/]+)/([^/]+)/([^/]+)", self.path)
            if m:
                data = fake.releases.get((m.group(1), m.group(2)), {}).get(m.group(3))
                return self._download(data)
            m = re.fullmatch(r"/raw/([^/]+/[^/]+)/([^/]+)/(.+)", self.path)
            if m:
                raw = fake.raw.get((m.group(1), m.group(2), m.group(3)))
                return self._send(200, raw) if raw is not None else self._send(404, b"404: Not Found")
            if self.path in fake.files:
                return self._download(fake.files[self.path])
            self._send(404, b"not found")

        def _api(self, repo: str, tag: str) -> None:
            if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                return self._send(401, b'{"message": "Bad credentials"}')
            if repo in fake.renamed:
                new = f"{fake.base}/api/repos/{fake.renamed[repo]}/releases/tags/{tag}"
                return self._send(301, b"{}", {"Location": new})
            assets = fake.releases.get((repo, tag))
            if assets is None:
                return self._send(404, b'{"message": "Not Found"}')
            body = {
                "tag_name": tag,
                "assets": [
                    {"name": name, "size": len(data), "updated_at": "2026-11-20T00:00:00Z",
                     "url": f"{fake.base}/download/{repo}/{tag}/{name}",
                     "browser_download_url": f"{fake.base}/download/{repo}/{tag}/{name}"}
                    for name, data in assets.items()
                ],
            }  # fmt: skip
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _download(self, data: bytes | None) -> None:
            if data is None:
                return self._send(404, b"Not Found")
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            status, headers = 200, {"ETag": '"v1"'}
            if rng and not fake.ignore_range:
                start = int(rng.group(1))
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fake.cut_after and len(body) > fake.cut_after[0]:  # small files (.sha256) pass
                body = body[: fake.cut_after.pop(0)]
                self.close_connection = True
            self.wfile.write(body)
            self.wfile.flush()
            fake.served += len(body)

    return Handler


@contextmanager
def serve() -> Iterator[Fake]:
    fake = Fake()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
