"""Fixtures. Each is a few lines over :mod:`pytest_stack_emulator.emulator`.

Override ``stack_emulator_settings`` in a ``conftest.py`` to change settings in code.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import emulator
from .config import Settings
from .plugin import StackEmulatorWarning as StackEmulatorWarning  # its home until now
from .plugin import start_instance, state_of, stop_instance
from .projects import Project


@pytest.fixture(scope="session")
def stack_emulator_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings (option > environment > ini > default)."""
    return state_of(pytestconfig).settings


@pytest.fixture(scope="session")
def stack_emulator(
    pytestconfig: pytest.Config, stack_emulator_settings: Settings
) -> Iterator[emulator.StackEmulator]:
    """A whole Stack Auth backend stack in a VM, one per xdist worker."""
    if not stack_emulator_settings.enabled:
        pytest.skip(
            "stack_emulator needs --stack-emulator (or ini stack_emulator = true, or STACK_EMULATOR=1)"
        )
    instance = start_instance(pytestconfig, stack_emulator_settings)
    try:
        yield instance.handle
    finally:
        stop_instance(pytestconfig, instance)


@pytest.fixture
def stack_project(stack_emulator: emulator.StackEmulator, request: pytest.FixtureRequest) -> Project:
    """A fresh project for one test, with its own keys, users and teams.

    Give it a config in Stack Auth's format with indirect parametrization:
    ``@pytest.mark.parametrize("stack_project", [{"auth.allowSignUp": False}], indirect=True)``.
    """
    config = getattr(request, "param", None)
    return stack_emulator.new_project(config, display_name=request.node.name[:200])


@pytest.fixture
def stack_emulator_fresh(stack_emulator: emulator.StackEmulator) -> emulator.StackEmulator:
    """The worker's stack, put back into its captured state before this test (under a second
    with a snapshot): nothing an earlier test made is left. Use it for tests that need an
    empty stack; ``stack_emulator`` alone is faster where tests keep to their own data."""
    stack_emulator.reset()
    return stack_emulator
