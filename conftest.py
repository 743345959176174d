"""Shared fixtures of this project's own tests.

The compat image is cached outside the checkout, in ``$STACK_EMULATOR_HOME/images``
(default ``~/.stack/emulator/images``), so reruns reuse it. VM tests get homes of their own
whose ``images/`` points at that cache, so snapshots and run state never mix with a user's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.images import Image, ImageStore
from tests.helpers import CACHE_HOME, TEST_BASE_PORT, make_home


@pytest.fixture(scope="session")
def compat_image() -> Image:
    """The compat image: built now if the cache lacks it or its inputs changed."""
    return ImageStore(CACHE_HOME / "images", CACHE_HOME / "locks").compat()


@pytest.fixture(scope="session")
def compat_arm64_image() -> Image:
    """The arm64 compat image (scripts/test builds it before pytest, so this reuses it)."""
    return ImageStore(CACHE_HOME / "images", CACHE_HOME / "locks").compat(arch="arm64")


@pytest.fixture(scope="session")
def vm_home(tmp_path_factory: pytest.TempPathFactory, compat_image: Image) -> Path:
    """A stack-emulator home for this test session, sharing the image cache."""
    return make_home(tmp_path_factory.mktemp("stack-home"))


@pytest.fixture(scope="session")
def captured_home(vm_home: Path) -> Path:
    """``vm_home`` with the compat image's snapshot in it (captured now if it is not yet)."""
    emulator.prepare(resolve({"image": "compat", "home": vm_home, "base_port": TEST_BASE_PORT}, {}, {}))
    return vm_home
