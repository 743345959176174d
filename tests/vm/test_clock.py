"""The guest's wall clock after a resume (CONTRACT §7).

A snapshot's guest wakes up with the clock it had at capture time. Unless the host sets it,
the backend issues tokens whose ``iat`` lies in the past, which the official SDK rejects
after 75 s.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from pytest_stack_emulator import emulator, qga
from pytest_stack_emulator.config import resolve
from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

# How old the snapshot is at least when it is resumed: a guest whose clock is not set lags
# the host by this much.
SNAPSHOT_AGE = 8.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, compat_image: object) -> emulator.Prepared:
    home = make_home(tmp_path_factory.mktemp("clock-home"))
    settings = resolve({"image": "compat", "home": home, "base_port": TEST_BASE_PORT}, {}, {})
    prepared = emulator.prepare(settings)
    assert prepared.snapshot is not None, prepared.snapshot_state
    return prepared


def jwt_claims(token: str) -> dict[str, object]:
    """The payload of a JWT, not verified."""
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def guest_date(inst: emulator.Instance) -> tuple[float, float, float]:
    """(host time before, the guest's `date +%s.%N`, host time after)."""
    before = time.time()
    result = inst.machine.qga().exec("/bin/date", ["+%s.%N"])
    after = time.time()
    assert result.exitcode == 0, result.stderr
    return before, float(result.stdout), after


def test_a_resumed_guest_has_the_hosts_clock_and_issues_fresh_tokens(prepared: emulator.Prepared) -> None:
    assert prepared.snapshot is not None
    age = time.time() - prepared.snapshot.migration.stat().st_mtime
    if age < SNAPSHOT_AGE:
        time.sleep(SNAPSHOT_AGE - age)
    inst = emulator.start(prepared, worker="clock")
    try:
        assert inst.handle.boot == "resume", inst.warnings
        print(f"clock step: {1000 * (inst.timings['clock'] - inst.timings['qga']):.0f} ms")
        # (a) The guest's wall clock, read two ways, is the host's within a second.
        assert abs(inst.machine.qga().clock_offset()) < 1.0
        before, guest, after = guest_date(inst)
        assert before - 1.0 <= guest <= after + 1.0, (before, guest, after)
        # (b) A token issued now says it was issued now.
        with inst.handle.client("client") as client:
            r = client.post(
                "/api/v1/auth/password/sign-up",
                json={"email": f"clock-{uuid.uuid4().hex[:10]}@example.com", "password": "correct-horse-1"},
            )
        host_now = time.time()
        assert r.status_code == 200, r.text
        iat = jwt_claims(r.json()["access_token"])["iat"]
        assert isinstance(iat, int | float)
        assert abs(iat - host_now) <= 2.0, f"iat {iat} is {host_now - iat:.1f} s before the host's time"
    finally:
        inst.stop()
    assert qemu_pids(str(inst.vm_dir)) == []


def test_a_clock_that_cannot_be_set_falls_back_to_a_cold_boot_that_only_warns(
    prepared: emulator.Prepared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /bin/false instead of date: the clock step fails as it would on an image without date.
    monkeypatch.setattr(qga, "GUEST_DATE", "/bin/false")
    # Always step, even when a cold boot's RTC happens to land within the tolerance (it can).
    monkeypatch.setattr(qga, "CLOCK_TOLERANCE", -1.0)
    warnings: list[str] = []
    inst = emulator.start(prepared, worker="clock-cold", warn=warnings.append)
    try:
        assert inst.handle.boot == "cold"
        resume, cold = warnings
        assert "snapshot resume failed" in resume
        assert "setting the guest's clock to the host's failed: guest command /bin/false -s '+" in resume
        assert "exited with 1" in resume
        assert "discarded" not in resume
        assert prepared.snapshot is not None
        assert prepared.snapshot.migration.exists()
        # After a cold boot the same failure only warns: the RTC set the clock, about right.
        assert "the guest's clock stays as the RTC set it" in cold
        assert "/bin/false -s" in cold
        assert inst.warnings == warnings
        assert abs(inst.machine.qga().clock_offset()) < 5.0
        with inst.handle.client("server") as server:
            assert server.get("/api/v1/users").status_code == 200
    finally:
        inst.stop()
