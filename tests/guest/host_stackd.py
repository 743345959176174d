"""stackd run on this host (outside a VM) for tests that want the whole service process.

It runs on Debian's /usr/bin/python3 (the guest's packages: werkzeug, psycopg2, aiosmtpd,
PyJWT, redis) with its own ports and data directory, on the PostgreSQL database named by
STACK_EMULATOR_TEST_DATABASE_URL (schema ``emulator``, created if missing; the internal
project keeps its placeholder keys there). Without that variable or those packages the tests
that use it are skipped; each has a counterpart in tests/vm that runs on the compat image.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.guest.conftest import STACKD_PARENT, free_port

DB_ENV = "STACK_EMULATOR_TEST_DATABASE_URL"
GUEST_PYTHON = "/usr/bin/python3"


def skip_reason(vm_counterpart: str) -> str | None:
    if not os.environ.get(DB_ENV):
        return f"set {DB_ENV} to a PostgreSQL database stackd may use ({vm_counterpart} needs none)"
    probe = [GUEST_PYTHON, "-c", "import werkzeug, psycopg2, aiosmtpd, jwt, redis"]
    if not Path(GUEST_PYTHON).exists() or subprocess.run(probe, capture_output=True).returncode:
        return f"{GUEST_PYTHON} lacks the guest's packages (python3-werkzeug python3-psycopg2 ...)"
    return None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def prefix_ports() -> tuple[int, int]:
    """A free <prefix>01/<prefix>02 pair (stackd derives the dashboard and backend ports so)."""
    for prefix in range(300, 640):
        ports = (int(f"{prefix}01"), int(f"{prefix}02"))
        if all(_free(p) for p in ports):
            return ports
    raise RuntimeError("no free <prefix>01/<prefix>02 port pair between 30001 and 63902")


@contextlib.contextmanager
def host_stackd(tmp: Path, ready_path: str) -> Iterator[dict[str, int]]:
    """Start stackd, wait until GET <service>``ready_path`` answers 200, yield its host ports.

    ``ready_path`` starts with the service whose port it is on: ``dashboard:/console/`` or
    ``backend:/health?db=1``."""
    dashboard, backend = prefix_ports()
    ports = {"dashboard": dashboard, "backend": backend, "inbucket": free_port()}
    env = {
        **os.environ,
        "PYTHONPATH": str(STACKD_PARENT),
        "STACK_EMULATOR_PORT_PREFIX": str(dashboard // 100),
        "STACK_EMULATOR_BIND": "127.0.0.1",
        "STACK_EMULATOR_DASHBOARD_HOST_PORT": str(dashboard),
        "STACK_EMULATOR_BACKEND_HOST_PORT": str(backend),
        "STACK_EMULATOR_INBUCKET_HOST_PORT": str(ports["inbucket"]),
        "STACK_EMULATOR_MAIL_WEB_PORT": str(ports["inbucket"]),
        "STACK_EMULATOR_S3_PORT": str(free_port()),
        "STACK_EMULATOR_SMTP_PORT": str(free_port()),
        "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": str(free_port()),
        "STACK_EMULATOR_DATA_DIR": str(tmp / "data"),
        "STACK_EMULATOR_RUN_DIR": str(tmp / "run"),
        "STACK_EMULATOR_DATABASE_URL": os.environ[DB_ENV],
    }
    service, path = ready_path.split(":", 1)
    url = f"http://127.0.0.1:{ports[service]}{path}"
    log = tmp / "stackd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([GUEST_PYTHON, "-m", "stackd"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"stackd did not answer 200 on {url} within 60 s; its log:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield ports
    finally:
        proc.terminate()
        proc.wait(timeout=10)
