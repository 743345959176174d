"""The owner of a stack of the stack-emulator command, and what other processes ask of it.

The owner is the process that started the stack's VM (``start`` itself, the background process
of ``start --detach``, or ``run``). :func:`hosted` starts the stack through the same core as
the plugin (``prepare`` + ``start``) and writes its description (``stack.json``); the owner
then serves :class:`Events` until it is told to stop, and stops the VM when it leaves, also on
an error or Ctrl-C. Other processes talk to it by signal: SIGTERM stops it
(:func:`stop_stack`), SIGUSR1 with a request file resets it (:func:`request_reset`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

from .config import Settings
from .errors import StackEmulatorError
from .home import Home
from .iso import write_atomic
from .lifecycle import Instance, new_session_id, start
from .log import get_logger
from .ports import PortAllocator
from .prepare import prepare
from .procs import ProcessId
from .reap import remove_vm
from .stacks import StackRecord, read_owner
from .wait import poll

log = get_logger(__name__)

WORKER = "cli"  # the run directory of a stack is <home>/run/<session>-cli
RESET_SIGNAL = signal.SIGUSR1
# What the owner's loop reacts to.
STOP, INTERRUPT, RESET, CHILD, QEMU_EXITED = "stop", "interrupt", "reset", "child", "qemu exited"
_SIGNAL_EVENTS = {signal.SIGTERM: STOP, signal.SIGINT: INTERRUPT, RESET_SIGNAL: RESET}


class Events:
    """Signals (stop, Ctrl-C, reset) and other happenings, queued for the owner's loop.

    A context manager: installs its signal handlers on entry (main thread) and puts the old
    ones back on exit. ``queue.SimpleQueue.put`` is safe in a signal handler."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._queue.put(_SIGNAL_EVENTS[signal.Signals(signum)])

    def __enter__(self) -> Events:
        for sig in _SIGNAL_EVENTS:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def put(self, event: str) -> None:
        self._queue.put(event)

    def get(self, timeout: float) -> str | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass
class Hosted:
    """A stack this process owns: the instance and its description."""

    inst: Instance
    record: StackRecord

    def serve(self, events: Events, tick: float = 0.25) -> str:
        """Serve reset requests until stop, Ctrl-C, ``events.put(CHILD)`` or QEMU's exit;
        return which of them ended it."""
        while True:
            event = events.get(tick)
            if event == RESET:
                self.handle_resets()
            elif event is not None:
                return event
            elif not self.inst.machine.running():
                log.error("QEMU of stack %s exited on its own; see %s", self.record.id,
                          self.inst.vm_dir / "qemu.log")  # fmt: skip
                return QEMU_EXITED

    def handle_resets(self) -> None:
        """Answer every pending reset request (``reset-<token>.request``) with a ``.done`` file."""
        for request in sorted(self.inst.vm_dir.glob("reset-*.request")):
            request.unlink(missing_ok=True)
            answer: dict[str, Any] = {"seconds": None, "error": None}
            try:
                answer["seconds"] = self.inst.reset()
                fresh = StackRecord.of(self.inst, self.record.mode)
                self.record = replace(fresh, started=self.record.started)
                self.record.write()
                log.info("stack %s reset to its captured state in %.2f s", self.record.id, answer["seconds"])
            except StackEmulatorError as exc:
                answer["error"] = str(exc)
                log.error("resetting stack %s failed: %s", self.record.id, exc)
            with contextlib.suppress(OSError):  # a failed reset may have taken the directory
                write_atomic(request.with_suffix(".done"), json.dumps(answer).encode())


@contextlib.contextmanager
def hosted(settings: Settings, mode: str, session: str | None = None) -> Iterator[Hosted]:
    """Start a stack in this process, write its ``stack.json``, and stop it on the way out.

    SIGTERM raises KeyboardInterrupt while the stack starts, so that a stop during start-up
    also cleans up; Ctrl-C cannot interrupt the final stop."""
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        inst = start(prepare(settings), worker=WORKER, session=session or new_session_id())
    finally:
        signal.signal(signal.SIGTERM, old_term)
    try:
        if settings.project_config is not None:
            inst.handle.use_config_file(settings.project_config)
        record = StackRecord.of(inst, mode)
        record.write()
        yield Hosted(inst, record)
    finally:
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            seconds = inst.stop()
            log.info("stack %s stopped in %.1f s", inst.vm_dir.name, seconds)
        finally:
            signal.signal(signal.SIGINT, old_int)


def _gone(process: ProcessId, timeout: float) -> bool:
    with contextlib.suppress(StackEmulatorError):
        poll(lambda: True if not process.alive() else None, timeout, what=f"pid {process.pid} to exit",
             interval=0.05)  # fmt: skip
        return True
    return False


def stop_stack(home: Home, record: StackRecord, timeout: float = 60.0) -> list[str]:
    """Tell the owner to stop (SIGTERM) and wait; if it is gone or does not end in ``timeout``
    seconds, stop the VM here (kill QEMU, remove the run directory). Returns what was done."""
    done: list[str] = []
    owner = record.owner
    if owner.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner.pid, signal.SIGTERM)
        if _gone(owner, timeout):
            done.append(f"stopped stack {record.id} (owner pid {owner.pid})")
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(owner.pid, signal.SIGKILL)
            _gone(owner, 5)
            done.append(f"owner pid {owner.pid} of {record.id} did not stop in {timeout:.0f} s: killed")
    if record.vm_dir.exists():
        leftover = read_owner(record.vm_dir)
        if leftover is not None:
            done += remove_vm(record.vm_dir, leftover)
        else:
            shutil.rmtree(record.vm_dir, ignore_errors=True)
            done.append(f"removed {record.vm_dir}")
    PortAllocator(home.root).release_stale()
    return done


def request_reset(record: StackRecord, timeout: float) -> float:
    """Ask the owner to put its stack back into the captured state; wait for its answer.
    Returns the seconds the reset took."""
    owner = record.owner
    if not owner.alive():
        raise StackEmulatorError(
            f"stack {record.id} is not running: its owner pid {owner.pid} is gone. "
            "`stack-emulator reap` cleans up; `stack-emulator start --detach` starts a new one"
        )
    token = uuid.uuid4().hex[:12]
    request = record.vm_dir / f"reset-{token}.request"
    answer_file = request.with_suffix(".done")
    request.write_text(f"{os.getpid()}\n")
    os.kill(owner.pid, RESET_SIGNAL)

    def answered() -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(answer_file.read_text())
        except (FileNotFoundError, ValueError):
            if not owner.alive():
                raise StackEmulatorError(
                    f"the owner (pid {owner.pid}) of stack {record.id} exited before it answered "
                    f"the reset; see {record.vm_dir / 'owner.log'} if it is still there"
                ) from None
            return None
        return data

    try:
        answer = poll(answered, timeout, what=f"the reset of stack {record.id}", interval=0.05,
                      on_timeout=lambda: StackEmulatorError(
                          f"stack {record.id} did not answer the reset within {timeout:.0f} s; "
                          f"see {record.vm_dir / 'owner.log'} or {record.vm_dir / 'serial.log'}"))  # fmt: skip
    finally:
        request.unlink(missing_ok=True)
        answer_file.unlink(missing_ok=True)
    if answer["error"]:
        raise StackEmulatorError(f"resetting stack {record.id} failed: {answer['error']}")
    return float(answer["seconds"])


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(settings: Settings, command: Sequence[str], on_ready: Callable[[StackRecord], None]) -> int:
    """Start a stack, run ``command`` with the stack's env added, stop the stack. Returns the
    command's exit status; after Ctrl-C 130 (143 after SIGTERM), the command ended first."""
    with hosted(settings, "run") as stack, Events() as events:
        on_ready(stack.record)
        try:
            child = subprocess.Popen(list(command), env={**os.environ, **stack.record.env})
        except OSError as exc:
            log.error("cannot run %r: %s; check the command and PATH", command[0], exc.strerror)
            return 127 if isinstance(exc, FileNotFoundError) else 126

        def watch() -> None:
            child.wait()
            events.put(CHILD)

        threading.Thread(target=watch, name="run-child", daemon=True).start()
        event = stack.serve(events)
        if event == CHILD:
            return exit_status(child.returncode)
        _end(child, signal.SIGINT if event == INTERRUPT else signal.SIGTERM)
        log.info("%s: `%s` ended with status %s", event, " ".join(command), exit_status(child.returncode))
        return {INTERRUPT: 130, STOP: 143}.get(event, 1)


def _end(child: subprocess.Popen[bytes], first: signal.Signals) -> None:
    """End ``child``: it may already have the terminal's signal; else ``first``, then SIGTERM,
    then SIGKILL, a few seconds apart."""
    for sig, grace in ((None, 1.0), (first, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        if sig is not None:
            child.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(grace)
