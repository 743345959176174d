"""new_project() and use_config_file() of the fixture's handle against stackd run on this host
(tests/guest/host_stackd.py); skipped without STACK_EMULATOR_TEST_DATABASE_URL.
tests/vm/test_projects.py runs the same scenario, and the fixture and options, on the compat image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_stack_emulator.emulator import StackEmulator
from tests.guest.host_stackd import host_stackd, skip_reason
from tests.projects_scenario import check_config_file, check_new_project

KEYS = {"publishable_client_key": "0" * 32 + "f" * 32, "secret_server_key": "0" * 32 + "e" * 32,
        "super_secret_admin_key": "0" * 32 + "d" * 32}  # fmt: skip


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackEmulator]:
    reason = skip_reason("tests/vm/test_projects.py")
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("stackd")
    with host_stackd(tmp, "backend:/health?db=1") as ports:
        yield StackEmulator(ports=ports, project_id="internal", vm_dir=tmp, **KEYS)


def test_new_project(handle: StackEmulator) -> None:
    check_new_project(handle)


def test_project_of_a_config_file(handle: StackEmulator, tmp_path: Path) -> None:
    check_config_file(handle, tmp_path)
