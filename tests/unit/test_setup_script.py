"""scripts/setup takes the bookworm-backports mirror from the machine's own apt sources."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup"
MIRROR = "http://mirror.example/debian"
SECURITY = "http://mirror.example/debian-security"


def bookworm_mirror(apt_dir: Path) -> str:
    """Run the script's ``bookworm_mirror`` function, on its own, against ``apt_dir``."""
    match = re.search(r"^bookworm_mirror\(\) \{\n.*?^\}\n", SETUP.read_text(), re.M | re.S)
    assert match, "bookworm_mirror() not found in scripts/setup"
    script = f'set -euo pipefail\n{match.group(0)}\nbookworm_mirror "$1"\n'
    done = subprocess.run(
        ["bash", "-c", script, "setup", str(apt_dir)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def apt(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


DEB822 = f"""Types: deb
# {SECURITY} comes first here: it must be skipped
URIs: {SECURITY}
Suites: bookworm-security
Components: main

Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"sources.list.d/debian.sources": DEB822}, MIRROR, id="deb822"),
        pytest.param(
            {
                "sources.list": f"# deb http://old.example/debian bookworm main\n"
                f"deb {SECURITY} bookworm-security main\n"
                f"deb-src {SECURITY.replace('-security', '')} bookworm main\n"
                f"deb [arch=amd64 signed-by=/etc/apt/k.gpg] {MIRROR} bookworm main contrib\n"
            },
            MIRROR,
            id="one-line-with-options",
        ),
        pytest.param(
            {"sources.list.d/mirror.list": f"deb {MIRROR}/ bookworm main\n"}, f"{MIRROR}/", id="list-file"
        ),
        pytest.param(
            {
                "sources.list.d/a.sources": f"Enabled: no\nTypes: deb\nURIs: http://off.example/\nSuites: bookworm\n\n"
                f"Types: deb-src\nURIs: http://src.example/\nSuites: bookworm\n\n"
                f"types: deb\nuris: cdrom:/media/cdrom/ {MIRROR}\nsuites: bookworm\n"
            },
            MIRROR,
            id="disabled-source-only-and-cdrom-skipped",
        ),
        pytest.param(
            {"sources.list.d/debian.sources": "Types: deb\nURIs:\n " + MIRROR + "\nSuites:\n bookworm\n"},
            MIRROR,
            id="deb822-continuation-lines",
        ),
        pytest.param(
            {"sources.list": f"deb {SECURITY} bookworm-security main\n", "sources.list.d/x.list": ""},
            "",
            id="only-security",
        ),
        pytest.param({}, "", id="no-sources"),
    ],
)
def test_bookworm_mirror(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert bookworm_mirror(apt(tmp_path, files)) == expected
