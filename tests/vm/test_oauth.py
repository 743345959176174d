"""OAuth sign-in through the mock provider on the compat image, resumed on a port block other
than the one it was captured with (tests/oauth_scenario.py; the SDK's flows: tests/sdk)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_stack_emulator import emulator
from tests.helpers import TEST_BASE_PORT, resumed_stack
from tests.oauth_scenario import check_oauth_sign_in

OAUTH_BASE_PORT = TEST_BASE_PORT + 500


@pytest.fixture(scope="module")
def stack(vm_home: Path) -> Iterator[emulator.StackEmulator]:
    with resumed_stack(vm_home, OAUTH_BASE_PORT, "oauth") as handle:
        yield handle


def test_oauth_sign_in_through_this_workers_mock_port(stack: emulator.StackEmulator) -> None:
    check_oauth_sign_in(stack)
