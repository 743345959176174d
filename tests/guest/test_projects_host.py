"""new_project() and use_config_file() of the fixture's handle against stackd run on this host.

The handle is a StackEmulator whose ports point at a stackd started here with Debian's
/usr/bin/python3 (the guest's packages) on the PostgreSQL database named by
STACK_EMULATOR_TEST_DATABASE_URL; without it the test is skipped. tests/vm/test_projects.py
runs the same scenario, and the fixture and options, on the compat image.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator.emulator import StackEmulator
from tests.guest.conftest import STACKD_PARENT, free_port
from tests.projects_scenario import check_config_file, check_new_project

DB_ENV = "STACK_EMULATOR_TEST_DATABASE_URL"
GUEST_PYTHON = "/usr/bin/python3"
KEYS = {"publishable_client_key": "0" * 32 + "f" * 32, "secret_server_key": "0" * 32 + "e" * 32,
        "super_secret_admin_key": "0" * 32 + "d" * 32}  # fmt: skip


def skip_reason() -> str | None:
    if not os.environ.get(DB_ENV):
        return f"set {DB_ENV} to a PostgreSQL database stackd may use (tests/vm/test_projects.py needs none)"
    probe = [GUEST_PYTHON, "-c", "import werkzeug, psycopg2, aiosmtpd, jwt, redis"]
    if not Path(GUEST_PYTHON).exists() or subprocess.run(probe, capture_output=True).returncode:
        return f"{GUEST_PYTHON} lacks the guest's packages (python3-werkzeug python3-psycopg2 ...)"
    return None


def _prefix_ports() -> tuple[int, int]:
    """A free <prefix>01/<prefix>02 pair (stackd derives the dashboard and backend ports so)."""
    for prefix in range(300, 640):
        ports = (int(f"{prefix}01"), int(f"{prefix}02"))
        if all(_free(p) for p in ports):
            return ports
    raise RuntimeError("no free <prefix>01/<prefix>02 port pair between 30001 and 63902")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEmulator]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("stackd")
    dashboard, backend = _prefix_ports()
    inbucket = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(STACKD_PARENT),
        "STACK_EMULATOR_PORT_PREFIX": str(dashboard // 100),
        "STACK_EMULATOR_BIND": "127.0.0.1",
        "STACK_EMULATOR_DASHBOARD_HOST_PORT": str(dashboard),
        "STACK_EMULATOR_BACKEND_HOST_PORT": str(backend),
        "STACK_EMULATOR_INBUCKET_HOST_PORT": str(inbucket),
        "STACK_EMULATOR_MAIL_WEB_PORT": str(inbucket),
        "STACK_EMULATOR_S3_PORT": str(free_port()),
        "STACK_EMULATOR_SMTP_PORT": str(free_port()),
        "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": str(free_port()),
        "STACK_EMULATOR_DATA_DIR": str(tmp / "data"),
        "STACK_EMULATOR_RUN_DIR": str(tmp / "run"),
        "STACK_EMULATOR_DATABASE_URL": os.environ[DB_ENV],
    }
    log = tmp / "stackd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([GUEST_PYTHON, "-m", "stackd"], env=env, stdout=out, stderr=out)
    ports = {"dashboard": dashboard, "backend": backend, "inbucket": inbucket}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{backend}/health?db=1", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"stackd did not become healthy within 60 s; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield StackEmulator(ports=ports, project_id="internal", vm_dir=tmp, **KEYS)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_new_project(handle: StackEmulator) -> None:
    check_new_project(handle)


def test_project_of_a_config_file(handle: StackEmulator, tmp_path: Path) -> None:
    check_config_file(handle, tmp_path)
