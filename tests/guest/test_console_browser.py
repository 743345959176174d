"""The console in a real browser, against stackd run on this host (outside a VM).

stackd runs on Debian's /usr/bin/python3 (the guest's packages: werkzeug, psycopg2, aiosmtpd,
PyJWT, redis) with its own ports and data directory, on the PostgreSQL database named by
STACK_EMULATOR_TEST_DATABASE_URL (schema ``emulator``, created if missing; the internal
project keeps its placeholder keys there). Without that variable, those packages or chromium
the test is skipped; tests/vm/test_console.py runs the same scenario against the compat image.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import chromium_binary
from tests.console_scenario import Stack, run_console_scenario
from tests.guest.conftest import STACKD_PARENT, free_port

DB_ENV = "STACK_EMULATOR_TEST_DATABASE_URL"
GUEST_PYTHON = "/usr/bin/python3"
PUBLISHABLE, SERVER = "0" * 32 + "f" * 32, "0" * 32 + "e" * 32


def skip_reason() -> str | None:
    if not os.environ.get(DB_ENV):
        return f"set {DB_ENV} to a PostgreSQL database stackd may use (tests/vm/test_console.py needs none)"
    if chromium_binary() is None:
        return "chromium is not installed: run `bash scripts/setup`"
    probe = [GUEST_PYTHON, "-c", "import werkzeug, psycopg2, aiosmtpd, jwt, redis"]
    if not Path(GUEST_PYTHON).exists() or subprocess.run(probe, capture_output=True).returncode:
        return f"{GUEST_PYTHON} lacks the guest's packages (python3-werkzeug python3-psycopg2 ...)"
    return None


@pytest.fixture
def stackd(tmp_path: Path) -> Iterator[Stack]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ports = {"dashboard": 0, "backend": 0, "inbucket": free_port()}
    # The backend and the dashboard are <prefix>02 and <prefix>01: find a free prefix.
    for prefix in range(300, 640):
        if all(_free(int(f"{prefix}{n}")) for n in ("01", "02")):
            ports["dashboard"], ports["backend"] = int(f"{prefix}01"), int(f"{prefix}02")
            break
    env = {
        **os.environ,
        "PYTHONPATH": str(STACKD_PARENT),
        "STACK_EMULATOR_PORT_PREFIX": str(ports["dashboard"] // 100),
        "STACK_EMULATOR_BIND": "127.0.0.1",
        "STACK_EMULATOR_DASHBOARD_HOST_PORT": str(ports["dashboard"]),
        "STACK_EMULATOR_BACKEND_HOST_PORT": str(ports["backend"]),
        "STACK_EMULATOR_INBUCKET_HOST_PORT": str(ports["inbucket"]),
        "STACK_EMULATOR_MAIL_WEB_PORT": str(ports["inbucket"]),
        "STACK_EMULATOR_S3_PORT": str(free_port()),
        "STACK_EMULATOR_SMTP_PORT": str(free_port()),
        "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": str(free_port()),
        "STACK_EMULATOR_DATA_DIR": str(tmp_path / "data"),
        "STACK_EMULATOR_RUN_DIR": str(tmp_path / "run"),
        "STACK_EMULATOR_DATABASE_URL": os.environ[DB_ENV],
    }
    log = tmp_path / "stackd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([GUEST_PYTHON, "-m", "stackd"], env=env, stdout=out, stderr=out)
    dashboard = f"http://127.0.0.1:{ports['dashboard']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(dashboard + "/console/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"stackd did not serve the console within 60 s; its log:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield Stack(dashboard, f"http://127.0.0.1:{ports['backend']}", PUBLISHABLE, SERVER)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_console_lists_acts_and_shows_the_env(stackd: Stack) -> None:
    run_console_scenario(stackd)
