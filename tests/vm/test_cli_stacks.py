"""The stack commands of `stack-emulator` on real QEMU: start --detach, ps, status, env, reset,
stop, start in the foreground, and run (exit status, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator.procs import ProcessId
from pytest_stack_emulator.qmp import QMPConnection
from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

BASE_PORT = TEST_BASE_PORT + 700


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, compat_image: object) -> Path:
    return make_home(tmp_path_factory.mktemp("cli-home"))


def cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`stack-emulator ARGS --home HOME` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_stack_emulator.cli", *args, "--home", str(home)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def start_options(home: Path) -> list[str]:
    return ["--image", "compat", "--home", str(home), "--base-port", str(BASE_PORT)]


def run_dir_entries(home: Path) -> list[str]:
    run = home / "run"
    return sorted(p.name for p in run.iterdir()) if run.is_dir() else []


def wait_gone(pid: int, timeout: float = 30) -> bool:
    process = ProcessId.of(pid)
    deadline = time.monotonic() + timeout
    while process.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture(scope="module")
def detached(home: Path) -> Iterator[dict]:
    """One stack started with `start --detach --json`; stopped at the end whatever happened."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest_stack_emulator.cli", "start", "--detach", "--json", *start_options(home)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    record["stderr"] = result.stderr
    try:
        yield record
    finally:
        cli(home, "stop", "--all")


def test_start_detach_returns_with_the_stack_running_in_the_background(home: Path, detached: dict) -> None:
    # URLs, all three keys and the app's env are printed.
    assert detached["urls"]["backend"] == f"http://127.0.0.1:{detached['ports']['backend']}"
    assert set(detached["keys"]) == {"publishable_client_key", "secret_server_key", "super_secret_admin_key"}
    assert detached["env"]["STACK_SECRET_SERVER_KEY"] == detached["keys"]["secret_server_key"]
    assert detached["env"]["VITE_STACK_API_URL"] == detached["urls"]["backend"]
    assert detached["mode"] == "detached"
    assert detached["restore"] in ("template", "mapped-ram", "stream")  # resumed, not cold booted
    # The owner outlives the command that started it, in a session of its own.
    assert ProcessId(detached["owner_pid"], detached["owner_start"]).alive()
    assert os.getsid(detached["owner_pid"]) == detached["owner_pid"]
    vm_dir = Path(detached["vm_dir"])
    assert (vm_dir / "stack.json").stat().st_mode & 0o077 == 0  # it holds the keys
    assert "ready" in (vm_dir / "owner.log").read_text()
    assert run_dir_entries(home) == [vm_dir.name]  # the start-up log moved into the run dir
    assert qemu_pids(str(vm_dir))
    # The owner's progress reached the terminal, and its warning names the CLI's option.
    assert "Use --rotate for fresh keys" in detached["stderr"]
    assert "--stack-emulator-rotate" not in detached["stderr"]
    with httpx.Client() as client:
        assert client.get(detached["urls"]["backend"] + "/health?db=1").json() == {"status": "ok"}


def test_ps_and_its_list_alias_show_the_stack(home: Path, detached: dict) -> None:
    for command in ("ps", "list"):
        result = cli(home, command)
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()
        assert header.split() == ["ID", "OWNER", "PORTS", "IMAGE", "RESTORE", "AGE", "STATE"]
        first = detached["ports"]["dashboard"]
        assert row.startswith(detached["id"])
        for cell in (
            f"pid {detached['owner_pid']} (detached)",
            f"{first}-{first + 4}",
            "compat",
            detached["restore"],
        ):
            assert cell in row
        assert row.endswith("running")


def test_env_in_each_format(home: Path, detached: dict, tmp_path: Path) -> None:
    env = detached["env"]
    # Without an ID: the only running stack; with an ID prefix: the same one.
    dotenv = cli(home, "env")
    assert dotenv.returncode == 0, dotenv.stderr
    assert dict(line.split("=", 1) for line in dotenv.stdout.splitlines()) == env
    as_json = cli(home, "env", "--format", "json", detached["id"][:8])
    assert json.loads(as_json.stdout) == env
    shell = cli(home, "env", "--format", "shell")
    script = tmp_path / "env.sh"
    script.write_text(shell.stdout + '\nprintf %s "$NEXT_PUBLIC_STACK_PUBLISHABLE_CLIENT_KEY"\n')
    sourced = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True)
    assert sourced.stdout == detached["keys"]["publishable_client_key"]
    missing = cli(home, "env", "no-such-stack")
    assert missing.returncode == 1
    assert "no stack 'no-such-stack'" in missing.stderr


def test_status_exits_1_while_the_services_do_not_answer(home: Path, detached: dict) -> None:
    up = cli(home, "status", detached["id"])
    assert up.returncode == 0, up.stdout + up.stderr
    assert "all 5 services up" in up.stdout
    assert f"backend     {detached['urls']['backend']}" in up.stdout
    owner = json.loads((Path(detached["vm_dir"]) / "owner.json").read_text())
    monitor = Path(owner["sockets"]) / "monitor.sock"
    with QMPConnection(monitor, timeout=10) as qmp:
        qmp.execute("stop")  # the guest is paused: its services stop answering
    try:
        down = cli(home, "status")
        assert down.returncode == 1, down.stdout
        assert "DOWN" in down.stdout
        assert "5 of 5 services down" in down.stdout
    finally:
        with QMPConnection(monitor, timeout=10) as qmp:
            qmp.execute("cont")
    assert cli(home, "status").returncode == 0


def test_reset_brings_back_the_captured_state(home: Path, detached: dict) -> None:
    headers = {
        "x-stack-project-id": detached["project_id"],
        "x-stack-access-type": "server",
        "x-stack-publishable-client-key": detached["keys"]["publishable_client_key"],
        "x-stack-secret-server-key": detached["keys"]["secret_server_key"],
    }

    def emails() -> list[str]:
        with httpx.Client(base_url=detached["urls"]["backend"], headers=headers, timeout=30) as client:
            r = client.get("/api/v1/users")
            assert r.status_code == 200, r.text
            return [u["primary_email"] for u in r.json()["items"]]

    with httpx.Client(base_url=detached["urls"]["backend"], headers=headers, timeout=30) as client:
        r = client.post("/api/v1/users", json={"primary_email": "before-reset@example.com"})
        assert r.status_code == 201, r.text
    assert "before-reset@example.com" in emails()
    result = cli(home, "reset", detached["id"])
    assert result.returncode == 0, result.stderr
    assert f"stack {detached['id']} reset to its captured state in " in result.stdout
    assert "before-reset@example.com" not in emails()  # same ports, fresh state
    assert cli(home, "status").returncode == 0


def test_stop_leaves_nothing_behind(home: Path, detached: dict) -> None:
    result = cli(home, "stop", detached["id"][:10])
    assert result.returncode == 0, result.stderr
    assert f"stopped stack {detached['id']}" in result.stdout
    assert not ProcessId(detached["owner_pid"], detached["owner_start"]).alive()
    assert qemu_pids(str(home)) == []
    assert run_dir_entries(home) == []
    assert not list((home / "ports").glob("*.json"))  # the port lease is gone
    status = cli(home, "status", detached["id"])
    assert status.returncode == 1
    assert "no stack" in status.stderr
    assert cli(home, "status").returncode == 1  # none running: a clear message, exit 1
    assert "no VMs under" in cli(home, "ps").stdout


def test_start_detach_reports_the_owners_error_and_leaves_nothing(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.qcow2"
    result = cli(home, "start", "--detach", "--image", str(missing), "--base-port", str(BASE_PORT))
    assert result.returncode == 1
    assert f"stack-emulator: image {missing} does not exist" in result.stderr
    assert run_dir_entries(home) == []


def test_foreground_start_is_stopped_by_stop(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_stack_emulator.cli", "start", "--json", *start_options(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            line = proc.stdout.readline()
            assert line, f"start exited: {proc.wait()}"
            lines.append(line)
        record = json.loads("".join(lines))
        assert record["mode"] == "foreground"
        assert record["owner_pid"] == proc.pid
        assert cli(home, "status").returncode == 0
        stop = cli(home, "stop")  # the only running stack
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert qemu_pids(str(home)) == []
    assert run_dir_entries(home) == []


@pytest.mark.parametrize("status", [0, 3])
def test_run_passes_the_commands_exit_status_through(home: Path, status: int) -> None:
    # The command sees the stack's env and reaches the backend with it.
    check = (
        "import os, sys, httpx; "
        "r = httpx.get(os.environ['STACK_API_URL'] + '/health?db=1'); "
        "assert r.json() == {'status': 'ok'}, r.text; "
        "assert os.environ['STACK_PROJECT_ID'] == 'internal'; "
        f"sys.exit({status})"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest_stack_emulator.cli", "run", *start_options(home), "--", sys.executable,
         "-c", check],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    assert "STACK_API_URL=http://127.0.0.1:" in result.stderr  # the stack is described on stderr
    assert result.stdout == ""
    assert qemu_pids(str(home)) == []
    assert run_dir_entries(home) == []


def test_run_interrupted_by_sigint_stops_the_stack_and_the_command(home: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_stack_emulator.cli", "run", *start_options(home), "--",
         "sh", "-c", f'echo $$ > {started}.tmp && mv {started}.tmp {started} && exec sleep 600'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        child = int(started.read_text())
        assert len(qemu_pids(str(home))) == 1
        proc.send_signal(signal.SIGINT)  # as Ctrl-C would, to the command only
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_gone(child)  # the command was ended too
    assert qemu_pids(str(home)) == []
    assert run_dir_entries(home) == []
