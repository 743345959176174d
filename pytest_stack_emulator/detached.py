"""``start --detach``: a background owner process for one stack, and the wait for it to be ready.

:func:`spawn` starts ``python -m pytest_stack_emulator.detached`` in a new session with stdin
closed and its output in a log (``<home>/run/<ID>.log`` while it starts, ``<ID>/owner.log``
once its VM is up: the open file moves with it). The owner starts the stack with
:func:`.stack_owner.hosted` (the same core as the plugin), reports ``{"ready": record}`` or
``{"error": message}`` as one JSON line on a pipe, and serves its stack until SIGTERM.
The parent shows the owner's progress lines while it waits; Ctrl-C there stops the owner.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from .config import SPECS, Settings, resolve
from .errors import StackEmulatorError
from .home import Home
from .lifecycle import new_session_id
from .log import get_logger
from .stack_owner import QEMU_EXITED, WORKER, Events, hosted
from .stacks import StackRecord

log = get_logger(__name__)

OWNER_LOG = "owner.log"


def settings_options(settings: Settings) -> dict[str, Any]:
    """``settings`` as options ``config.resolve`` takes back (paths as strings)."""
    options = {}
    for spec in SPECS:
        value = getattr(settings, spec.name)
        if value is not None:
            options[spec.name] = str(value) if isinstance(value, Path) else value
    return options


def spawn(settings: Settings, on_output: Callable[[str], None] | None = None) -> StackRecord:
    """Start a background owner for one stack; return its description once it is ready.

    ``on_output`` gets the owner's log lines (progress) while it starts. Raises
    :class:`StackEmulatorError` with the owner's own error if it fails."""
    on_output = on_output or log.info
    home = Home(settings.home)
    home.run.mkdir(parents=True, exist_ok=True)
    session = new_session_id()
    log_path = home.run / f"{session}-{WORKER}.log"
    log_file = _locked_log(log_path)
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", __name__, "--session", session, "--log", str(log_path),
            "--ready-fd", str(write_end), "--settings", json.dumps(settings_options(settings))]  # fmt: skip
    try:
        with open(log_path, "rb") as tail:  # stays readable when the owner moves the log
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(write_end,),
            )  # fmt: skip
            os.close(write_end)
            log_file.close()
            try:
                message = _wait_ready(read_end, tail, on_output)
            except BaseException:  # Ctrl-C while it starts: the owner stops and cleans up
                _stop_owner(proc, grace=0)
                raise
            if message is not None and "ready" in message:
                return StackRecord.from_dict(message["ready"])
            _stop_owner(proc, grace=30)  # it exits by itself once it has cleaned up
            raise StackEmulatorError(message["error"] if message else _died(proc, tail))
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            os.close(write_end)
        log_file.close()
        log_path.unlink(missing_ok=True)  # moved into the run directory by a ready owner


def _locked_log(path: Path) -> IO[bytes]:
    """The owner's log, created under an flock that the owner inherits: ``reap`` removes a
    ``<ID>.log`` nobody holds (an owner that died before its VM was up)."""
    tmp = path.with_name(f".{path.name}.tmp")
    f = tmp.open("wb")
    fcntl.flock(f, fcntl.LOCK_EX)
    tmp.rename(path)
    return f


def _wait_ready(fd: int, tail: IO[bytes], on_output: Callable[[str], None]) -> dict[str, Any] | None:
    """Read the owner's one-line report; pass its log lines on meanwhile. None: no report
    (the owner exited)."""
    data = b""
    pending = b""
    while True:
        readable, _, _ = select.select([fd], [], [], 0.2)
        pending += tail.read()
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_output(line.decode(errors="replace"))
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    for line in (pending + tail.read()).splitlines():
        on_output(line.decode(errors="replace"))
    try:
        report: dict[str, Any] = json.loads(data)
    except ValueError:
        return None
    return report


def _died(proc: subprocess.Popen[bytes], tail: IO[bytes]) -> str:
    code = proc.wait()  # _stop_owner ended it
    tail.seek(0)
    last = tail.read().decode(errors="replace").strip().splitlines()[-20:]
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return (
        f"the owner process (pid {proc.pid}) {how} before its stack was ready. Its last output:\n"
        + "\n".join(last or ["(nothing)"])
    )


def _stop_owner(proc: subprocess.Popen[bytes], grace: float) -> None:
    """A wait of ``grace`` seconds, SIGTERM, a wait, then SIGKILL: the owner's start-up or
    stop cleans up its VM."""
    for action, timeout in ((None, grace), (proc.terminate, 60.0), (proc.kill, None)):
        if proc.poll() is not None:
            return
        if action is not None:
            action()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def owner_main(argv: Sequence[str] | None = None) -> int:
    """The background owner: start the stack, report on the pipe, serve until SIGTERM."""
    p = argparse.ArgumentParser(prog="stack-emulator-owner")
    p.add_argument("--session", required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--settings", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)  # fmt: skip
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # no terminal: only SIGTERM stops it
    report = os.fdopen(args.ready_fd, "w")
    try:
        settings = resolve(json.loads(args.settings), {}, {}, cli=True)
        with hosted(settings, "detached", session=args.session) as stack, Events() as events:
            os.replace(args.log, stack.inst.vm_dir / OWNER_LOG)
            log.info("stack %s ready; owner pid %d; `stack-emulator stop %s` stops it",
                     stack.record.id, os.getpid(), stack.record.id)  # fmt: skip
            report.write(json.dumps({"ready": stack.record.to_dict()}) + "\n")
            report.close()
            event = stack.serve(events)
            log.info("%s: stopping stack %s", event, stack.record.id)
        return 1 if event == QEMU_EXITED else 0
    except BaseException as exc:
        if report.closed:
            raise
        if isinstance(exc, StackEmulatorError):
            message = "\n".join([str(exc), *getattr(exc, "__notes__", [])])
        elif isinstance(exc, KeyboardInterrupt):
            message = "stopped (SIGTERM) before the stack was ready"
        else:
            message = f"unexpected error in the owner process: {traceback.format_exc()}"
        log.error("%s", message)
        with contextlib.suppress(OSError):
            report.write(json.dumps({"error": message}) + "\n")
            report.close()
        return 1


if __name__ == "__main__":
    sys.exit(owner_main())
