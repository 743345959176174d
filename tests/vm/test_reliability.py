"""Reliability (issue 12): sessions killed, interrupted, crowded or broken, on real QEMU and the
compat image. Each test is one case of the issue; nothing may be left running or half-written.

Inner sessions run as a user runs them (``python -m pytest --stack-emulator ...``) in their own
process group; homes that a test breaks are copies of the shared captured home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator.health import check_service
from pytest_stack_emulator.images import Image
from pytest_stack_emulator.snapshot import SnapshotKey
from tests.helpers import (
    TEST_BASE_PORT,
    copy_home,
    make_home,
    qemu_pids,
    resumed_stack,
    snapshot_dirs,
    start_session,
    wait_for,
)

BASE = TEST_BASE_PORT + 700

RECORDING_SUITE = """
import json, os

def test_stack(stack_emulator):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with stack_emulator.client("server") as server:
        assert server.get("/api/v1/users").status_code == 200
    with open(os.path.join(os.environ["RECORD_DIR"], worker + ".json"), "w") as f:
        json.dump({"worker": worker, "ports": stack_emulator.ports, "boot": stack_emulator.boot,
                   "vm_dir": str(stack_emulator.vm_dir)}, f)
"""

SLOW_SUITE = """
import os, time

def test_slow(stack_emulator):
    open(os.path.join(os.environ["RECORD_DIR"], os.environ["PYTEST_XDIST_WORKER"]), "w").close()
    time.sleep(600)
"""


def suite(directory: Path, text: str, name: str = "test_record.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    (directory / "records").mkdir(exist_ok=True)
    return directory / "records"


def run(directory: Path, home: Path, *args: str) -> tuple[int, str, list[dict]]:
    """Run a session in ``directory`` to its end: exit code, output, what its tests recorded."""
    records = directory / "records"
    proc = start_session(directory, home, BASE, *args, env={"RECORD_DIR": str(records)})
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out, [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]


def test_kill_9_of_a_session_is_cleaned_up_by_the_next_one(
    captured_home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Case 1: `kill -9` of a `-n 2` session (all its processes), mid-test. Its VMs die with it;
    the next session frees their ports and run directories and says so (a VM that outlived its
    owner is stopped too: test_fixture.py)."""
    home = copy_home(captured_home, tmp_path / "home")
    request.addfinalizer(lambda: [os.kill(pid, signal.SIGKILL) for pid in qemu_pids(str(home))])
    records = suite(tmp_path, SLOW_SUITE, "test_slow.py")
    proc = start_session(tmp_path, home, BASE, "-n", "2", "--dist", "each", "test_slow.py",
                         env={"RECORD_DIR": str(records)})  # fmt: skip
    wait_for(lambda: len(list(records.iterdir())) == 2, 300, "both workers started their test", proc)
    run_dirs = sorted((home / "run").iterdir())
    leases = sorted((home / "ports").iterdir())
    assert len(run_dirs) == len(leases) == 2
    # The whole session at once (controller and workers): nothing of it can clean up. Its VMs
    # die with their workers (parent-death signal, also for the early-start thread's).
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not qemu_pids(str(home)), 10, "the killed session's VMs to die with it")
    assert all(d.exists() for d in run_dirs + leases), "kill -9 leaves run directories and leases"

    suite(tmp_path, RECORDING_SUITE)
    code, out, recs = run(tmp_path, home, "-n", "2", "--dist", "each", "test_record.py")
    assert code == 0, out
    print("\n".join(line for line in out.splitlines() if "reap:" in line))
    for run_dir in run_dirs:
        assert f"stack-emulator: reap: removed {run_dir}" in out, out
        assert not run_dir.exists()
    for lease in leases:
        assert f"stack-emulator: reap: freed ports {lease.stem}-{int(lease.stem) + 4}" in out
    # The freed blocks are used again.
    assert sorted(r["ports"]["dashboard"] for r in recs) == sorted(int(lease.stem) for lease in leases)
    assert qemu_pids(str(home)) == []
    assert list((home / "run").iterdir()) == list((home / "ports").iterdir()) == []


def test_ctrl_c_during_the_capture_leaves_nothing_and_the_next_run_captures(
    tmp_path: Path, compat_image: object
) -> None:
    """Case 2: SIGINT to the session's process group (a terminal's Ctrl-C) while it captures."""
    home = make_home(tmp_path / "home")
    records = suite(tmp_path, RECORDING_SUITE)
    proc = start_session(tmp_path, home, BASE, "test_record.py", env={"RECORD_DIR": str(records)})
    wait_for(lambda: qemu_pids(f"{home}/run/capture-"), 300, "the capture VM to start", proc)
    time.sleep(3)  # the capture VM is booting
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert qemu_pids(str(home)) == []
    # No snapshot, no unfinished capture, no run directory, no port lease.
    assert snapshot_dirs(home) == []
    assert list((home / "run").iterdir()) == list((home / "ports").iterdir()) == []

    code, out, recs = run(tmp_path, home, "test_record.py")
    assert code == 0, out
    assert "stack-emulator snapshot: captured" in out
    assert [r["boot"] for r in recs] == ["resume"]
    assert len(snapshot_dirs(home)) == 1


def test_a_truncated_snapshot_is_dropped_and_captured_again_once(captured_home: Path, tmp_path: Path) -> None:
    """Case 3: a truncated migration file. The controller drops it and captures once, under the lock;
    both workers resume the new snapshot (a corrupt one that QEMU refuses: test_fixture.py)."""
    home = copy_home(captured_home, tmp_path / "home")
    [snapshot] = snapshot_dirs(home)
    key = SnapshotKey(**json.loads((snapshot / "meta.json").read_text())["key"])
    ram = snapshot / key.migration_file  # the device state (template), or RAM and devices
    size = ram.stat().st_size
    os.truncate(ram, size // 2)
    suite(tmp_path, RECORDING_SUITE)
    code, out, recs = run(tmp_path, home, "-n", "2", "--dist", "each", "test_record.py")
    assert code == 0, out
    warning = (
        f"stack-emulator: snapshot {snapshot.name} is unusable: {ram} has {size // 2} bytes, {size} were "
        "written (truncated or replaced). Dropped; capturing it again."
    )
    assert out.count(warning) == 1, out
    print(warning)
    assert out.count("stack-emulator snapshot: captured") == 1
    assert [r["boot"] for r in recs] == ["resume", "resume"]
    assert snapshot_dirs(home) == [snapshot]
    assert ram.stat().st_size == size


def test_a_missing_disk_layer_is_named_and_the_worker_boots_cold(captured_home: Path, tmp_path: Path) -> None:
    """Case 3, on an xdist worker (which never captures): the warning names the missing file."""
    from pytest_stack_emulator import emulator
    from pytest_stack_emulator.config import resolve

    home = copy_home(captured_home, tmp_path / "home")
    [snapshot] = snapshot_dirs(home)
    (snapshot / "disk.qcow2").unlink()
    warnings: list[str] = []
    settings = resolve({"image": "compat", "home": home, "base_port": BASE}, {}, {})
    prepared = emulator.prepare(settings, capture=False, warn=warnings.append)
    assert prepared.snapshot is None  # start() boots cold
    assert warnings == [
        f"snapshot {snapshot.name} is unusable: {snapshot / 'disk.qcow2'} is missing. This process boots "
        "cold; the next session captures it again."
    ]


def test_a_busy_port_moves_the_session_to_another_block(captured_home: Path, tmp_path: Path) -> None:
    """Case 4: something listens on the block's backend port."""
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past connections may linger
        busy.bind(("127.0.0.1", BASE + 1))
        busy.listen()
        suite(tmp_path, RECORDING_SUITE)
        code, out, [record] = run(tmp_path, captured_home, "test_record.py")
    assert code == 0, out
    assert record["ports"]["dashboard"] >= BASE + 10
    assert BASE + 1 not in record["ports"].values()


def test_two_sessions_of_two_workers_at_once_share_one_capture(tmp_path: Path, compat_image: object) -> None:
    """Case 5: two `-n 2` sessions started together on a home without a snapshot."""
    home = make_home(tmp_path / "home")
    procs = []
    for name in ("a", "b"):
        records = suite(tmp_path / name, RECORDING_SUITE)
        procs.append(start_session(tmp_path / name, home, BASE, "-n", "2", "--dist", "each", "test_record.py",
                                   env={"RECORD_DIR": str(records)}))  # fmt: skip
    outs = [proc.communicate(timeout=900)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(outs)
    recs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("[ab]/records/*.json"))]
    assert len(recs) == 4
    ports = [set(r["ports"].values()) for r in recs]
    assert len(set().union(*ports)) == 4 * 5, ports  # four blocks, no port shared
    assert [r["boot"] for r in recs] == ["resume"] * 4
    joined = "\n".join(outs)
    assert joined.count("stack-emulator snapshot: captured") == 1, joined
    assert joined.count("(captured by another process)") == 1, joined
    assert len(snapshot_dirs(home)) == 1
    assert qemu_pids(str(home)) == []


# gw1 gets an image whose minio health check can never pass; gw0 keeps the compat image.
NEVER_HEALTHY_CONFTEST = """
import dataclasses, os, pytest
from pytest_stack_emulator.plugin import state_of

@pytest.fixture(scope="session")
def stack_emulator_settings(pytestconfig):
    settings = state_of(pytestconfig).settings
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
        settings = dataclasses.replace(settings, image=os.environ["BROKEN_MANIFEST"], resume_timeout=5.0,
                                       boot_timeout=45.0)
    return settings
"""


def never_healthy_manifest(image: Image, directory: Path) -> Path:
    """The compat image under a manifest whose minio health check can never pass (HTTP 404)."""
    directory.mkdir()
    data = json.loads((image.directory / "manifest.json").read_text())
    for service in data["services"]:
        if service["name"] == "minio":
            service["health_path"] = "/never-healthy"
    for name in (data["disk"], data["boot"]["kernel"], data["boot"]["initrd"]):
        (directory / name).symlink_to(image.directory / name)
    (directory / "manifest.json").write_text(json.dumps(data))
    return directory / "manifest.json"


def test_a_service_that_never_gets_healthy_fails_only_its_worker(
    captured_home: Path, compat_image: Image, tmp_path: Path
) -> None:
    """Case 8: the resume times out, the cold boot too; the error names the service, its URL and
    shows the serial log; the other worker passes."""
    manifest = never_healthy_manifest(compat_image, tmp_path / "image")
    records = suite(tmp_path, RECORDING_SUITE)
    (tmp_path / "conftest.py").write_text(NEVER_HEALTHY_CONFTEST)
    proc = start_session(tmp_path, captured_home, BASE, "-n", "2", "--dist", "each", "test_record.py",
                         env={"RECORD_DIR": str(records), "BROKEN_MANIFEST": str(manifest)})  # fmt: skip
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert re.search(r"=+ 1 passed, (\d+ warnings?, )?1 error in", out), out
    assert [r["worker"] for r in (json.loads(p.read_text()) for p in records.glob("*.json"))] == ["gw0"]
    unhealthy = r"minio \(GET http://127\.0\.0\.1:\d+/never-healthy: HTTP 404\)"
    assert re.search(rf"snapshot resume failed in \S+-gw1, cold boot instead: .*not healthy after 5 s\. "
                     rf"Still failing: {unhealthy}\.", out), out  # fmt: skip
    timeout = re.search(rf"HealthTimeout: services of the VM in (\S+)-gw1 not healthy after 45 s\. Still "
                        rf"failing: (\w+ \(.*\); )*{unhealthy}", out)  # fmt: skip
    assert timeout, out
    assert re.search(r"serial log tail \(\S+-gw1/serial\.log\):\n.*\S", out), out  # lines, or "(empty)"
    print(timeout.group(0))
    assert qemu_pids(f"{timeout.group(1)}-") == []  # this session's VMs


DYING_SUITE = """
import os, signal, time

def test_1_kills_its_vm_on_gw1(stack_emulator):
    if os.environ["PYTEST_XDIST_WORKER"] == "gw1":
        os.kill(int((stack_emulator.vm_dir / "qemu.pid").read_text()), signal.SIGKILL)
        time.sleep(1)
    with stack_emulator.client("server") as server:
        assert server.get("/api/v1/users").status_code == 200

def test_2_uses_it_again(stack_emulator):
    with stack_emulator.client("server") as server:
        assert server.get("/api/v1/users").status_code == 200
"""


def test_a_guest_that_dies_mid_test_fails_its_worker_clearly(captured_home: Path, tmp_path: Path) -> None:
    """Case 11: a worker's QEMU is killed during a test. That test and the next one on the worker
    fail with an error naming the worker and its serial log; the session ends; gw0 passes."""
    suite(tmp_path, DYING_SUITE, "test_dying.py")
    code, out, _ = run(tmp_path, captured_home, "-n", "2", "--dist", "each", "test_dying.py")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert re.search(r"=+ 1 failed, 2 passed, (\d+ warnings?, )?1 error in", out), out
    gone = re.findall(r"VMGone: the VM of worker gw1 is gone: its QEMU \(pid \d+\) exited \(killed by signal 9\)"
                      r" while tests were using it\. Serial log: (\S+/serial\.log);", out)  # fmt: skip
    assert len(gone) >= 2, out  # in test 1 (its next request) and test 2 (its setup)
    print(next(line for line in out.splitlines() if "VMGone: the VM" in line))
    kept = Path(gone[0]).parent
    assert kept.name.endswith("-gw1")
    assert (kept / "serial.log").exists()
    assert (kept / "qemu.log").exists()
    session = kept.name.removesuffix("-gw1")
    assert sorted((captured_home / "run").glob(f"{session}-*")) == [kept]  # gw0's run directory is gone
    assert qemu_pids(f"{captured_home}/run/{session}-") == []
    shutil.rmtree(kept)


def test_200_concurrent_requests_all_succeed(captured_home: Path, compat_image: Image) -> None:
    """Case 10: sign-ups, sign-ins, refreshes and user listings, 24 at a time, on one backend."""
    with resumed_stack(captured_home, BASE + 50, "load") as stack:
        client = {"x-stack-access-type": "client", "x-stack-project-id": stack.project_id,
                  "x-stack-publishable-client-key": stack.publishable_client_key}  # fmt: skip
        api = f"{stack.backend_url}/api/v1"
        password = "load-test-password-1"
        known = []  # users made before the burst: they sign in and refresh during it
        for i in range(8):
            r = httpx.post(f"{api}/auth/password/sign-up", headers=client,
                           json={"email": f"known-{i}@example.com", "password": password})  # fmt: skip
            assert r.status_code == 200, r.text
            known.append((f"known-{i}@example.com", r.json()))

        def sign_up(n: int) -> tuple[str, str]:
            r = http.post(f"{api}/auth/password/sign-up", headers=client,
                          json={"email": f"new-{n}@example.com", "password": password})  # fmt: skip
            assert r.status_code == 200, r.text
            return "sign-up", r.json()["user_id"]

        def sign_in(n: int) -> tuple[str, str]:
            email, user = known[n % len(known)]
            r = http.post(
                f"{api}/auth/password/sign-in", headers=client, json={"email": email, "password": password}
            )
            assert r.status_code == 200, r.text
            assert r.json()["user_id"] == user["user_id"]
            return "sign-in", r.json()["user_id"]

        def refresh(n: int) -> tuple[str, str]:
            _, user = known[n % len(known)]
            r = http.post(f"{api}/auth/sessions/current/refresh",
                          headers={**client, "x-stack-refresh-token": user["refresh_token"]})  # fmt: skip
            assert r.status_code == 200, r.text
            me = http.get(
                f"{api}/users/me", headers={**client, "x-stack-access-token": r.json()["access_token"]}
            )
            assert me.status_code == 200, me.text
            assert me.json()["id"] == user["user_id"]
            return "refresh", me.json()["id"]

        def listing(n: int) -> tuple[str, str]:
            r = http.get(f"{api}/users", headers=stack.headers("server"))
            assert r.status_code == 200, r.text
            assert {u["user_id"] for _, u in known} <= {u["id"] for u in r.json()["items"]}
            return "list", ""

        kinds = [sign_up] * 80 + [sign_in] * 50 + [refresh] * 40 + [listing] * 30
        started = time.monotonic()
        with (
            httpx.Client(timeout=60, limits=httpx.Limits(max_connections=24)) as http,
            ThreadPoolExecutor(24) as pool,
        ):
            done = list(pool.map(lambda job: job[1](job[0]), enumerate(kinds)))
        took = time.monotonic() - started
        print(f"200 concurrent requests in {took:.1f} s")
        assert took < 240
        new_ids = [user_id for kind, user_id in done if kind == "sign-up"]
        assert len(set(new_ids)) == 80
        assert not set(new_ids) & {u["user_id"] for _, u in known}
        with stack.client("server") as server:
            listed = {u["id"] for u in server.get("/api/v1/users", params={"limit": 200}).json()["items"]}
        assert set(new_ids) <= listed
        with httpx.Client() as http:
            for service in compat_image.manifest.services:
                assert check_service(http, service, stack.ports[service.name]).ok
