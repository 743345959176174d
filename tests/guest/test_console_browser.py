"""The console in a real browser, against stackd run on this host (tests/guest/host_stackd.py).

Skipped without STACK_EMULATOR_TEST_DATABASE_URL, the guest's packages or chromium;
tests/vm/test_console.py runs the same scenario against the compat image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium_binary
from tests.console_scenario import Stack, run_console_scenario
from tests.guest.host_stackd import host_stackd, skip_reason

PUBLISHABLE, SERVER = "0" * 32 + "f" * 32, "0" * 32 + "e" * 32


@pytest.fixture
def stackd(tmp_path: Path) -> Iterator[Stack]:
    reason = skip_reason("tests/vm/test_console.py")
    if reason is None and chromium_binary() is None:
        reason = "chromium is not installed: run `bash scripts/setup`"
    if reason:
        pytest.skip(reason)
    with host_stackd(tmp_path, "dashboard:/console/") as ports:
        yield Stack(
            f"http://127.0.0.1:{ports['dashboard']}",
            f"http://127.0.0.1:{ports['backend']}",
            PUBLISHABLE,
            SERVER,
        )


def test_console_lists_acts_and_shows_the_env(stackd: Stack) -> None:
    run_console_scenario(stackd)
