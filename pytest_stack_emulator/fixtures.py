"""Fixtures. Each is a few lines over :mod:`pytest_stack_emulator.emulator`.

Override ``stack_emulator_settings`` in a ``conftest.py`` to change settings in code.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from . import emulator
from .config import Settings
from .errors import StackEmulatorError
from .plugin import state_of
from .projects import Project


class StackEmulatorWarning(UserWarning):
    """Something went wrong but the run goes on (a resume fell back to a cold boot, ...)."""


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
    state = state_of(pytestconfig)
    if state.prepare_error is not None:
        raise state.prepare_error
    if state.controller_error is not None:
        raise StackEmulatorError(f"preparing failed in the xdist controller: {state.controller_error}")
    workerinput: dict[str, Any] = getattr(pytestconfig, "workerinput", {})
    prepared = state.prepared
    if prepared is None or prepared.settings != stack_emulator_settings:
        # An xdist worker, or settings overridden in conftest.py. A worker never captures
        # when its controller already tried: it resumes what is there or boots cold.
        capture = not state.controller_prepared
        prepared = emulator.prepare(stack_emulator_settings, capture=capture)
    messages: list[str] = []
    instance = emulator.start(
        prepared,
        worker=workerinput.get("workerid", "main"),
        session=state.session_id,
        warn=messages.append,
    )
    state.instance = instance
    for message in messages:
        warnings.warn(StackEmulatorWarning(message), stacklevel=1)
    try:
        if stack_emulator_settings.project_config is not None:
            instance.handle.use_config_file(stack_emulator_settings.project_config)
        yield instance.handle
    finally:
        state.instance = None
        try:
            instance.stop(keep=state.failed)
        except Exception as exc:  # a teardown failure must not fail a test that passed
            warnings.warn(
                StackEmulatorWarning(f"stopping the VM in {instance.vm_dir} failed: {exc}"),
                stacklevel=1,
            )
        if state.failed:
            warnings.warn(
                StackEmulatorWarning(
                    f"a test failed: kept {instance.vm_dir} (serial.log, qemu.log) for debugging"
                ),
                stacklevel=1,
            )


@pytest.fixture
def stack_project(stack_emulator: emulator.StackEmulator, request: pytest.FixtureRequest) -> Project:
    """A fresh project for one test, with its own keys, users and teams.

    Give it a config in Stack Auth's format with indirect parametrization:
    ``@pytest.mark.parametrize("stack_project", [{"auth.allowSignUp": False}], indirect=True)``.
    """
    config = getattr(request, "param", None)
    return stack_emulator.new_project(config, display_name=request.node.name[:200])
