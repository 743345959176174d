"""The stack_emulator fixture end to end: pytester inner runs on real QEMU and the compat image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

INNER_SUITE = """
import json, os
import httpx
import pytest

@pytest.mark.parametrize("n", range(2))
def test_stack(stack_emulator, n):
    h = stack_emulator
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with h.client("server") as server:
        r = server.post("/api/v1/users", json={"primary_email": f"{worker}-{n}@example.com"})
        assert r.status_code == 201, r.text
        emails = sorted(u["primary_email"] for u in server.get("/api/v1/users").json()["items"])
    assert httpx.get(h.backend_url + "/health?db=1").json() == {"status": "ok"}
    record = {"worker": worker, "n": n, "ports": h.ports, "emails": emails, "vm_dir": str(h.vm_dir),
              "boot": h.boot, "pck": h.publishable_client_key, "env": h.env()}
    with open(os.path.join(os.environ["RECORD_DIR"], f"{worker}-{n}.json"), "w") as f:
        json.dump(record, f)
"""


def run_inner(pytester: pytest.Pytester, home: Path, *args: str) -> tuple[pytest.RunResult, list[dict]]:
    records = pytester.path / "records"
    shutil.rmtree(records, ignore_errors=True)
    records.mkdir()
    os.environ["RECORD_DIR"] = str(records)
    result = pytester.runpytest_subprocess(
        "--stack-emulator", "--stack-emulator-image=compat", f"--stack-emulator-home={home}",
        f"--stack-emulator-base-port={TEST_BASE_PORT}", "-p", "no:cacheprovider", "-rA", "-W", "always", *args,
        timeout=900,
    )  # fmt: skip
    return result, [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, compat_image: object) -> Path:
    return make_home(tmp_path_factory.mktemp("fixture-home"))


def captures(home: Path) -> list[Path]:
    return [p for p in (home / "snapshots").iterdir() if not p.name.startswith(".")]


def test_two_workers_one_capture_own_ports_isolated_data_nothing_left(
    pytester: pytest.Pytester, home: Path
) -> None:
    pytester.makepyfile(test_inner=INNER_SUITE)
    # --dist each: every worker runs every test, so both workers surely start a VM.
    result, records = run_inner(pytester, home, "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["stack-emulator snapshot: captured *", "stack-emulator restore: template"])
    result.stdout.fnmatch_lines(["stack-emulator accelerator: *"])
    assert len(captures(home)) == 1
    assert sorted((r["worker"], r["n"]) for r in records) == [("gw0", 0), ("gw0", 1), ("gw1", 0), ("gw1", 1)]
    last = {r["worker"]: r for r in records if r["n"] == 1}
    assert set(last["gw0"]["ports"].values()).isdisjoint(last["gw1"]["ports"].values())
    for worker, record in last.items():
        assert record["boot"] == "resume"
        # Each worker sees only the users it created: two separate stacks.
        assert record["emails"] == [f"{worker}-0@example.com", f"{worker}-1@example.com"]
        assert not Path(record["vm_dir"]).exists()
        assert record["env"]["VITE_STACK_PUBLISHABLE_CLIENT_KEY"] == record["pck"]
    assert qemu_pids(str(home)) == []
    # The placeholder keys were used; the report header says so once.
    assert result.stdout.str().count("placeholder (not rotated)") == 1


def test_second_session_resumes_without_capturing(pytester: pytest.Pytester, home: Path) -> None:
    before = captures(home)
    pytester.makepyfile(test_inner=INNER_SUITE)
    result, records = run_inner(pytester, home)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["stack-emulator snapshot: reused *"])
    assert captures(home) == before
    assert [r["boot"] for r in records] == ["resume", "resume"]
    assert qemu_pids(str(home)) == []


def test_a_worker_vm_no_test_used_is_stopped_at_the_end(pytester: pytest.Pytester, home: Path) -> None:
    """Workers start their VM at session start, before they know whether a test needs it."""
    pytester.makepyfile(test_plain="def test_no_stack():\n    assert True\n")
    result, _ = run_inner(pytester, home, "-n", "2")
    result.assert_outcomes(passed=1)
    assert qemu_pids(str(home)) == []
    assert list((home / "run").iterdir()) == []


def test_rotation_replaces_the_placeholder_keys(pytester: pytest.Pytester, home: Path) -> None:
    pytester.makepyfile(
        test_rot="""
import httpx
PLACEHOLDER = "0" * 32 + "e" * 32

def test_keys(stack_emulator):
    h = stack_emulator
    assert h.secret_server_key != PLACEHOLDER
    old = {**h.headers("server"), "x-stack-secret-server-key": PLACEHOLDER}
    assert httpx.get(h.backend_url + "/api/v1/users", headers=old).status_code == 401
    with h.client("server") as c:
        assert c.get("/api/v1/users").status_code == 200
    assert (h.vm_dir / "internal-pck").read_text() == h.publishable_client_key
"""
    )
    result, _ = run_inner(pytester, home, "--stack-emulator-rotate")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["stack-emulator keys: fresh per VM (rotated)"])


def test_failing_test_keeps_the_run_dir_and_shows_the_serial_log(
    pytester: pytest.Pytester, home: Path
) -> None:
    pytester.makepyfile(
        test_fail="""
def test_fails(stack_emulator):
    print("VMDIR", stack_emulator.vm_dir)
    assert False, "on purpose"
"""
    )
    result, _ = run_inner(pytester, home)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stack-emulator serial log (*serial.log)*", "*kept * for debugging*"])
    vm_dir = Path(next(line.split()[1] for line in result.stdout.lines if line.startswith("VMDIR")))
    assert (vm_dir / "serial.log").exists()
    assert (vm_dir / "kept").exists()
    assert qemu_pids(str(home)) == []
    shutil.rmtree(vm_dir)


def test_corrupt_ram_file_falls_back_to_cold_boot_with_a_warning(
    pytester: pytest.Pytester, home: Path, tmp_path: Path
) -> None:
    # A copy of the home, so that the shared snapshot stays good.
    copy = make_home(tmp_path / "home-copy")
    shutil.copytree(home / "snapshots", copy / "snapshots")
    snapshots = copy / "snapshots"
    for ram in [*snapshots.glob("*/ram.*"), *snapshots.glob("*/state.bin")]:
        os.chmod(ram, 0o644)
        with ram.open("r+b") as f:
            f.seek(0)
            f.write(b"\xde\xad\xbe\xef" * 4096)
    pytester.makepyfile(test_inner=INNER_SUITE)
    result, records = run_inner(pytester, copy)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*StackEmulatorWarning: snapshot resume failed in *, cold boot instead: *"])
    result.stdout.fnmatch_lines(["*discarded; the next session captures it again*"])
    assert [r["boot"] for r in records] == ["cold", "cold"]
    assert captures(copy) == []
    assert qemu_pids(str(copy)) == []


LEFTOVER = """
import sys, threading, time
from pathlib import Path
from pytest_stack_emulator import config, emulator

home = Path(sys.argv[1])
prepared = emulator.prepare(config.resolve({"image": "compat", "home": home, "base_port": int(sys.argv[2])}, {}, {}))
box = {}
# Started from a thread, QEMU does not die with this process: a crash leaves it running.
t = threading.Thread(target=lambda: box.update(inst=emulator.start(prepared, worker="leftover")))
t.start(); t.join()
print(box["inst"].machine.pid, flush=True)
time.sleep(600)
"""


def test_a_vm_whose_owner_died_is_stopped_by_the_next_session(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "leftover.py"
    script.write_text(textwrap.dedent(LEFTOVER))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(home), str(TEST_BASE_PORT)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    qemu_pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    assert qemu_pid in qemu_pids(str(home))
    run_dirs = list((home / "run").glob("*-leftover"))
    assert len(run_dirs) == 1

    from pytest_stack_emulator.emulator import Home, reap

    done = reap(Home(home))
    assert any(f"stopped leftover QEMU pid {qemu_pid}" in line for line in done)
    assert qemu_pids(str(home)) == []
    assert not run_dirs[0].exists()


def test_shared_directory_is_hot_plugged_and_mounted_after_resume(home: Path, tmp_path: Path) -> None:
    from pytest_stack_emulator import config, emulator

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("from the host\n")
    settings = config.resolve(
        {"image": "compat", "home": home, "share": str(shared), "base_port": TEST_BASE_PORT}, {}, {}
    )
    inst = emulator.start(emulator.prepare(settings), worker="share")
    try:
        assert inst.handle.boot == "resume"
        result = inst.machine.qga().exec("/bin/cat", ["/host/hello.txt"])
        assert (result.exitcode, result.stdout) == (0, "from the host\n")
        # Only the named directory is shared: its parent is not reachable.
        listing = inst.machine.qga().exec("/bin/ls", ["-a", "/host"]).stdout.split()
        assert sorted(listing) == [".", "..", "hello.txt"]
    finally:
        inst.stop()
    assert qemu_pids(str(home)) == []


def test_ctrl_c_stops_every_vm_of_the_session(home: Path, tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "test_slow.py").write_text(
        "import os, time\n"
        "def test_slow(stack_emulator):\n"
        "    open(os.path.join(os.environ['RECORD_DIR'], os.environ['PYTEST_XDIST_WORKER']), 'w').close()\n"
        "    time.sleep(300)\n"
    )
    records = tmp_path / "records"
    records.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "each", "--stack-emulator",
         "--stack-emulator-image=compat", f"--stack-emulator-home={home}", f"--stack-emulator-base-port={TEST_BASE_PORT}",
         "test_slow.py"],
        cwd=tmp_path, env={**os.environ, "RECORD_DIR": str(records)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        # Ctrl-C reaches the whole foreground process group; SIGINT must not be inherited as ignored.
        preexec_fn=lambda: (os.setsid(), signal.signal(signal.SIGINT, signal.SIG_DFL)),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(list(records.iterdir())) < 2:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "the two workers never started their tests"
        time.sleep(0.2)
    assert len(qemu_pids(str(home))) == 2
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert qemu_pids(str(home)) == []
    assert not [p for p in (home / "run").iterdir() if "-gw" in p.name]
