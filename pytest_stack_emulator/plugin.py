"""pytest hooks. The work is done by :mod:`pytest_stack_emulator.emulator`."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from . import emulator
from .config import SPECS, Settings, resolve
from .errors import ConfigError, HostSetupError, StackEmulatorError
from .log import LineSink, logger
from .machine import lasting_thread

pytest_plugins = ["pytest_stack_emulator.fixtures"]

SESSION_KEY = "stack_emulator_session"
PREPARED_KEY = "stack_emulator_prepared"
ERROR_KEY = "stack_emulator_prepare_error"


@dataclass
class PluginState:
    settings: Settings
    session_id: str
    prepared: emulator.Prepared | None = None
    prepare_error: BaseException | None = None
    instance: emulator.Instance | None = None
    # On an xdist worker: this worker's VM, started at session start (see _starts_early).
    early: Future[tuple[emulator.Instance, list[str]]] | None = None
    failed: bool = False
    # On an xdist worker: what the controller's prepare() came to.
    controller_prepared: bool = False
    controller_error: str | None = None

    def prepared_for(self, settings: Settings, warn: emulator.Warn | None = None) -> emulator.Prepared:
        """What the session prepared, or a prepare() for these settings: on an xdist worker,
        or when conftest.py overrides the settings. A worker never captures when its
        controller already tried: it resumes what is there or boots cold. Raises what
        preparing raised, here or in the xdist controller."""
        if self.prepare_error is not None:
            raise self.prepare_error
        if self.controller_error is not None:
            raise StackEmulatorError(f"preparing failed in the xdist controller: {self.controller_error}")
        if self.prepared is not None and self.prepared.settings == settings:
            return self.prepared
        return emulator.prepare(settings, capture=not self.controller_prepared, warn=warn)


class StackEmulatorWarning(UserWarning):
    """Something went wrong but the run goes on (a resume fell back to a cold boot, ...)."""


STATE = pytest.StashKey[PluginState]()


def state_of(config: pytest.Config) -> PluginState:
    return config.stash[STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stack-emulator", "Stack Auth emulator VM")
    for spec in SPECS:
        if spec.flag:
            group.addoption(spec.option, action="store_true", default=None, dest=spec.dest, help=spec.help)
        else:
            group.addoption(spec.option, default=None, dest=spec.dest, metavar=spec.metavar, help=spec.help)
        parser.addini(spec.ini, help=spec.help, default=None)


def _workerinput(config: pytest.Config) -> dict[str, Any] | None:
    return getattr(config, "workerinput", None)


def pytest_configure(config: pytest.Config) -> None:
    options = {s.name: config.getoption(s.dest) for s in SPECS}
    ini = {s.name: config.getini(s.ini) for s in SPECS}
    try:
        settings = resolve(options, ini)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = _workerinput(config)
    workerinput = workerinput or {}
    session_id = workerinput.get(SESSION_KEY) or emulator.new_session_id()
    config.stash[STATE] = PluginState(
        settings,
        session_id,
        controller_prepared=bool(workerinput.get(PREPARED_KEY)),
        controller_error=workerinput.get(ERROR_KEY),
    )
    config.addinivalue_line("markers", "stack_emulator: the test uses the stack_emulator VM")
    config.pluginmanager.register(_Interrupt(config), "stack-emulator-interrupt")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker joins this session's id (for run dirs and leases) and
    learns how preparing went, so that it neither captures again nor retries a failure."""
    state = state_of(node.config)
    node.workerinput[SESSION_KEY] = state.session_id
    node.workerinput[PREPARED_KEY] = state.prepared is not None
    if state.prepare_error is not None:
        node.workerinput[ERROR_KEY] = str(state.prepare_error)


class _TerminalHandler(LineSink):
    """Progress on pytest's terminal; a download's bar redraws one line on a terminal."""

    def __init__(self, config: pytest.Config) -> None:
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        tty = self.reporter is not None and getattr(self.reporter, "isatty", False)
        super().__init__(self.write, self._rewrite if tty else None, prefix="stack-emulator: ")

    def write(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.write_line(line)

    def _rewrite(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.rewrite(line, erase=True)


def _prepare(config: pytest.Config, show: bool) -> None:
    """Get the image and capture the snapshot with progress on the terminal. A host that lacks
    QEMU (or has one too old) stops the session with a usage error: no VM can start there."""
    state = state_of(config)
    handler = _TerminalHandler(config)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        state.prepared = emulator.prepare(state.settings, warn=logger.warning)
        if show:
            for line in state.prepared.describe():
                handler.write(f"stack-emulator {line}")
    except HostSetupError as exc:
        raise pytest.UsageError(f"stack-emulator: {exc}") from None
    except Exception as exc:
        state.prepare_error = exc
        if show:
            handler.write(f"stack-emulator: preparing failed: {exc}")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _controller(config: pytest.Config) -> bool:
    state = state_of(config)
    return (
        state.settings.enabled
        and _workerinput(config) is None
        and not config.option.collectonly
        and not getattr(config.option, "help", False)
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under xdist the controller does not collect, so it prepares now, before the workers
    start: they then find the image and the snapshot ready. Each worker starts its VM now,
    in the background: it resumes while the worker collects and waits for the others, and
    the first test finds it running."""
    config = session.config
    if _controller(config) and config.pluginmanager.has_plugin("dsession"):
        _prepare(config, show=False)
    elif _starts_early(config):
        state = state_of(config)
        state.early = _early_starts.submit(_start_early, config, state.settings)


# One VM per worker process, started while the worker collects.
_early_starts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-emulator-start")


def _starts_early(config: pytest.Config) -> bool:
    """An xdist worker of a session whose controller prepared the image and snapshot."""
    state = state_of(config)
    return (
        state.settings.enabled
        and _workerinput(config) is not None
        and state.controller_prepared
        and not config.option.collectonly
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without xdist: prepare only if a collected test uses the fixture."""
    config = session.config
    state = state_of(config)
    if not _controller(config) or state.prepared is not None or state.prepare_error is not None:
        return
    if any("stack_emulator" in getattr(item, "fixturenames", ()) for item in session.items):
        _prepare(config, show=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = state_of(config)
    s = state.settings
    if not s.enabled:
        return ["stack-emulator: off (enable with --stack-emulator)"]
    lines = []
    if state.prepared is not None:
        lines += [f"stack-emulator {line}" for line in state.prepared.describe()]
    elif state.prepare_error is not None:
        lines.append(f"stack-emulator: preparing failed: {state.prepare_error}")
    else:
        lines.append("stack-emulator: image and snapshot are prepared after collection, if a test needs them")
    keys = "fresh per VM (rotated)" if s.rotate else "placeholder (not rotated): do not expose these VMs"
    lines.append(f"stack-emulator keys: {keys}")
    given = [f"{name}={getattr(s, name)} (from {src})" for name, src in s.sources.items() if src != "default"]
    if given:
        lines.append("stack-emulator settings: " + ", ".join(given))
    return lines


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that uses a VM which has exited (killed, crashed) errors at once, saying so."""
    if "stack_emulator" in getattr(item, "fixturenames", ()):
        instance = state_of(item.config).instance
        if instance is not None:
            instance.handle.ensure_running()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and "stack_emulator" in getattr(item, "fixturenames", ()):
        state = state_of(item.config)
        state.failed = True
        if state.instance is not None:
            report.sections.append(
                (
                    f"stack-emulator serial log ({state.instance.handle.serial_log})",
                    state.instance.serial_tail(),
                )
            )
    return report


class _Interrupt:
    """Registered per config, so that the Ctrl-C hook (which gets no config) finds its state."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: stop every VM of this process now, in parallel. A worker whose test failed
        keeps its run directory, as in a normal teardown."""
        state = self.config.stash.get(STATE, None)
        emulator.stop_all(keep=state is not None and state.failed)


def _warn(message: str) -> None:
    warnings.warn(StackEmulatorWarning(message), stacklevel=1)


def _start_early(config: pytest.Config, settings: Settings) -> tuple[emulator.Instance, list[str]]:
    """_start in the early-start thread, which lives as long as the worker: its QEMU dies with
    the worker, as one started from the main thread does."""
    lasting_thread()
    return _start(config, settings)


def _start(config: pytest.Config, settings: Settings) -> tuple[emulator.Instance, list[str]]:
    """This worker's VM, and what went wrong on the way but was recovered from."""
    state = state_of(config)
    workerid = (_workerinput(config) or {}).get("workerid", "main")
    messages: list[str] = []
    try:
        prepared = state.prepared_for(settings, warn=messages.append)
        instance = emulator.start(prepared, worker=workerid, session=state.session_id, warn=messages.append)
    except StackEmulatorError as exc:
        for message in messages:  # what failed first: a resume, before the cold boot that failed too
            exc.add_note(f"before that: {message}")
        raise
    return instance, messages


def start_instance(config: pytest.Config, settings: Settings) -> emulator.Instance:
    """This worker's VM for the ``stack_emulator`` fixture (the one started early, if its
    settings are the fixture's); what went wrong but was recovered from (a resume that fell
    back to a cold boot) becomes a StackEmulatorWarning."""
    state = state_of(config)
    early, state.early = state.early, None
    if early is not None:
        instance, messages = early.result()
        if settings != state.settings:  # conftest.py overrides stack_emulator_settings
            instance.stop()
            instance, messages = _start(config, settings)
    else:
        instance, messages = _start(config, settings)
    for message in messages:
        _warn(message)
    state.instance = instance
    if settings.project_config is not None:
        try:
            instance.handle.use_config_file(settings.project_config)
        except BaseException:
            stop_instance(config, instance)
            raise
    return instance


def stop_instance(config: pytest.Config, instance: emulator.Instance) -> None:
    """Stop the fixture's VM, keeping its run directory if a test failed. Never raises: a
    teardown failure must not fail a test that passed, so it becomes a warning."""
    state = state_of(config)
    state.instance = None
    try:
        instance.stop(keep=state.failed)
    except Exception as exc:
        _warn(f"stopping the VM in {instance.vm_dir} failed: {exc}")
    if state.failed:
        _warn(f"a test failed: kept {instance.vm_dir} (serial.log, qemu.log) for debugging")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)  # None when configure stopped on a usage error
    if state is not None and state.early is not None:
        # Started early, never used (no test here needs it): wait for it, then stop it below.
        with contextlib.suppress(Exception):
            state.early.result()
    emulator.stop_all(keep=state is not None and state.failed)
