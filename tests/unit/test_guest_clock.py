"""Setting the guest's wall clock after a resume, against a fake guest agent on a UNIX socket."""

from __future__ import annotations

import base64
import json
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_stack_emulator import qga
from pytest_stack_emulator.errors import MachineError
from pytest_stack_emulator.qga import QGAClient, clock_step_args


class FakeAgent:
    """Speaks enough of qemu-guest-agent's protocol: guest-sync-delimited, guest-get-time,
    guest-exec, guest-exec-status. Its clock is the host's plus ``offset`` seconds; a
    successful ``date -s '<delta> seconds'`` moves it by delta."""

    def __init__(self, path: Path, offset: float) -> None:
        self.path = path
        self.offset = offset
        self.exitcode = 0
        self.stderr = b""
        self.date_works = True
        self.get_time_error: dict[str, str] | None = None
        self.commands: list[dict[str, Any]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()

    def executed(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.commands if c["execute"] == name]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        message = json.loads(line.lstrip(b"\xff"))
                        conn.sendall(self._answer(message))

    def _answer(self, message: dict[str, Any]) -> bytes:
        self.commands.append(message)
        command, args = message["execute"], message.get("arguments", {})
        reply: dict[str, Any]
        if command == "guest-sync-delimited":
            return b"\xff" + json.dumps({"return": args["id"]}).encode() + b"\n"
        if command == "guest-get-time":
            if self.get_time_error is not None:
                reply = {"error": self.get_time_error}
            else:
                reply = {"return": time.time_ns() + int(self.offset * 1e9)}
        elif command == "guest-exec":
            if self.exitcode == 0 and self.date_works and args["path"] == qga.GUEST_DATE:
                self.offset += float(args["arg"][1].split()[0])
            reply = {"return": {"pid": 4242}}
        elif command == "guest-exec-status":
            status = {"exited": True, "exitcode": self.exitcode}
            if self.stderr:
                status["err-data"] = base64.b64encode(self.stderr).decode()
            reply = {"return": status}
        else:
            reply = {"error": {"class": "CommandNotFound", "desc": f"unknown {command}"}}
        return json.dumps(reply).encode() + b"\n"


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    # AF_UNIX paths are limited to about 100 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="qga-") as tmp:
        fake = FakeAgent(Path(tmp) / "qga.sock", offset=-3600.25)
        yield fake
        fake.close()


def test_step_arguments_are_a_signed_relative_date() -> None:
    assert clock_step_args(12.5) == ["-s", "+12.500000 seconds"]
    assert clock_step_args(-0.25) == ["-s", "-0.250000 seconds"]
    assert clock_step_args(86400 * 400 + 0.000001) == ["-s", "+34560000.000001 seconds"]


def test_clock_offset_is_guest_minus_host(agent: FakeAgent) -> None:
    assert QGAClient(agent.path).clock_offset() == pytest.approx(-3600.25, abs=0.01)


def test_a_guest_behind_the_host_is_stepped_forward_with_one_date_call(agent: FakeAgent) -> None:
    step = QGAClient(agent.path).set_clock_to_host()
    (exec_,) = agent.executed("guest-exec")
    args = exec_["arguments"]
    assert args["path"] == "/bin/date"
    assert args["capture-output"] is True
    assert "input-data" not in args
    flag, value = args["arg"]
    assert flag == "-s"
    number, unit = value.split()
    assert unit == "seconds"
    assert number.startswith("+")
    assert float(number) == pytest.approx(3600.25, abs=0.01)
    assert step.stepped
    assert step.before == pytest.approx(-3600.25, abs=0.01)
    assert abs(step.after) < 0.01
    # Read, step, read again: guest-get-time twice, no guest-set-time (it needs hwclock).
    assert [c["execute"] for c in agent.commands if c["execute"] != "guest-sync-delimited"] == [
        "guest-get-time",
        "guest-exec",
        "guest-exec-status",
        "guest-get-time",
    ]


def test_a_kept_connection_syncs_once_for_the_whole_clock_step(agent: FakeAgent) -> None:
    client = QGAClient(agent.path)
    with client.connected(timeout=5) as waited:
        step = client.set_clock_to_host()
    assert waited >= 0
    assert step.stepped
    assert abs(step.after) <= qga.CLOCK_MAX_ERROR
    # get-time, exec, exec-status, get-time: four commands after a single sync.
    assert len(agent.executed("guest-sync-delimited")) == 1
    assert len(agent.commands) == 5
    # Outside connected(), each command syncs a connection of its own.
    client.clock_offset()
    assert len(agent.executed("guest-sync-delimited")) == 2


def test_a_guest_ahead_of_the_host_is_stepped_back(agent: FakeAgent) -> None:
    agent.offset = 42.0
    step = QGAClient(agent.path).set_clock_to_host()
    (exec_,) = agent.executed("guest-exec")
    assert float(exec_["arguments"]["arg"][1].split()[0]) == pytest.approx(-42.0, abs=0.01)
    assert abs(step.after) < 0.01


def test_a_clock_already_right_starts_no_guest_process(agent: FakeAgent) -> None:
    agent.offset = 0.01
    step = QGAClient(agent.path).set_clock_to_host()
    assert not step.stepped
    assert agent.executed("guest-exec") == []


def test_a_failing_date_is_an_error_naming_the_command_and_the_fix(agent: FakeAgent) -> None:
    agent.exitcode = 1
    agent.stderr = b"date: cannot set date: Operation not permitted\n"
    with pytest.raises(MachineError) as info:
        QGAClient(agent.path).set_clock_to_host()
    message = str(info.value)
    assert "setting the guest's clock to the host's failed" in message
    assert re.search(r"/bin/date -s '\+3600\.2\d* seconds'", message), message
    assert "exited with 1: date: cannot set date: Operation not permitted" in message
    assert re.search(r"clock is -3600\.[23] s off the host's", message)
    assert "coreutils" in message


def test_a_clock_that_does_not_move_is_an_error(agent: FakeAgent) -> None:
    agent.date_works = False
    with pytest.raises(MachineError, match=r"the clock is still -3600\.\d+ s off"):
        QGAClient(agent.path).set_clock_to_host()


def test_an_agent_refusing_guest_get_time_is_an_error_naming_it(agent: FakeAgent) -> None:
    agent.get_time_error = {"class": "GenericError", "desc": "Command guest-get-time has been disabled"}
    with pytest.raises(
        MachineError, match=r"reading the guest's clock failed: guest-get-time on .* disabled"
    ):
        QGAClient(agent.path).set_clock_to_host()
    assert agent.executed("guest-exec") == []
