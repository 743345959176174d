"""reset() and stack_emulator_fresh: a worker's stack back in its captured state, on real QEMU."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.builder import file_digest
from pytest_stack_emulator.config import resolve
from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

BASE_PORT = TEST_BASE_PORT + 600


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, compat_image: object) -> Path:
    return make_home(tmp_path_factory.mktemp("reset-home"))


def emails(stack: emulator.StackEmulator) -> list[str]:
    with stack.client("server") as server:
        r = server.get("/api/v1/users")
        assert r.status_code == 200, r.text
        return [u["primary_email"] for u in r.json()["items"]]


def test_reset_discards_what_was_made_and_keeps_the_handle_ports_and_clock(home: Path) -> None:
    settings = resolve({"image": "compat", "home": home, "base_port": BASE_PORT}, {}, {})
    prepared = emulator.prepare(settings)
    inst = emulator.start(prepared, worker="reset")
    memory = prepared.snapshot.memory if prepared.snapshot is not None else None
    assert memory is not None, "templating is the default with QEMU 10"
    ram_before = file_digest(memory)
    try:
        handle, ports, old_pid = inst.handle, dict(inst.handle.ports), inst.machine.pid
        with handle.client("server") as server:
            r = server.post("/api/v1/users", json={"primary_email": "before-reset@example.com"})
            assert r.status_code == 201, r.text
        assert "before-reset@example.com" in emails(handle)

        seconds = handle.reset()

        assert handle is inst.handle
        assert handle.ports == ports
        assert handle.boot == "resume"
        assert inst.machine.pid != old_pid
        assert old_pid is not None
        assert not Path(f"/proc/{old_pid}").exists(), "the discarded VM's QEMU still runs"
        assert len(qemu_pids(str(inst.vm_dir))) == 1
        assert "before-reset@example.com" not in emails(handle)
        with handle.client("client") as client:
            r = client.post("/api/v1/auth/password/sign-up",
                            json={"email": "after-reset@example.com", "password": "pw-123456789"})  # fmt: skip
            assert r.status_code == 200, r.text
        before = time.time()
        guest = float(inst.machine.qga().exec("/bin/date", ["+%s.%N"]).stdout)
        assert before - 1.0 <= guest <= time.time() + 1.0, (before, guest)
        assert 0 < seconds < settings.resume_timeout
    finally:
        inst.stop()
    # The clones wrote to their RAM (copy on write): the template's RAM file is unchanged.
    assert file_digest(memory) == ram_before
    assert qemu_pids(str(inst.vm_dir)) == []
    assert not inst.vm_dir.exists()


FRESH_SUITE = """
def emails(stack):
    with stack.client("server") as server:
        return [u["primary_email"] for u in server.get("/api/v1/users").json()["items"]]

def test_1_fresh_makes_a_user(stack_emulator_fresh):
    stack_emulator_fresh.client("server").post("/api/v1/users", json={"primary_email": "one@example.com"})
    assert "one@example.com" in emails(stack_emulator_fresh)

def test_2_fresh_does_not_see_it(stack_emulator_fresh):
    assert "one@example.com" not in emails(stack_emulator_fresh)
    stack_emulator_fresh.client("server").post("/api/v1/users", json={"primary_email": "two@example.com"})

def test_3_the_session_fixture_keeps_state(stack_emulator):
    assert "two@example.com" in emails(stack_emulator)
"""


def test_stack_emulator_fresh_resets_before_each_test(pytester: pytest.Pytester, home: Path) -> None:
    pytester.makepyfile(test_fresh=textwrap.dedent(FRESH_SUITE))
    result = pytester.runpytest_subprocess(
        "--stack-emulator", "--stack-emulator-image=compat", f"--stack-emulator-home={home}",
        f"--stack-emulator-base-port={BASE_PORT}", "-p", "no:cacheprovider", timeout=600,
    )  # fmt: skip
    result.assert_outcomes(passed=3)
    assert not list((home / "run").glob("*")), "a run directory was left behind"
