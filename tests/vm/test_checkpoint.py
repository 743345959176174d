"""User checkpoints on real QEMU: seeded once, reused by every worker and later runs, captured
again when the seeding code changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

BASE_PORT = TEST_BASE_PORT + 700

CONFTEST = """
import pytest

def seed(stack):
    with stack.client("server") as server:
        ids = []
        for email in SEED_EMAILS:
            r = server.post("/api/v1/users", json={"primary_email": email})
            r.raise_for_status()
            ids.append(r.json()["id"])
    return {"user_ids": ids}

@pytest.fixture(scope="session")
def seeded(stack_emulator):
    return stack_emulator, stack_emulator.checkpoint("seeded", seed)
"""

SUITE = """
def emails(stack):
    with stack.client("server") as server:
        return sorted(u["primary_email"] for u in server.get("/api/v1/users").json()["items"])

def test_the_seeded_users_are_there(seeded):
    stack, value = seeded
    assert emails(stack) == sorted(EMAILS)
    with stack.client("server") as server:
        assert [server.get(f"/api/v1/users/{i}").status_code for i in value["user_ids"]] == [200] * len(EMAILS)

def test_reset_comes_back_to_the_checkpoint(seeded):
    stack, _ = seeded
    stack.client("server").post("/api/v1/users", json={"primary_email": "extra@example.com"})
    assert "extra@example.com" in emails(stack)
    stack.reset()
    assert emails(stack) == sorted(EMAILS)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, compat_image: object) -> Path:
    return make_home(tmp_path_factory.mktemp("checkpoint-home"))


def checkpoints(home: Path) -> dict[str, dict]:
    """Checkpoint id -> meta.json."""
    return {p.parent.name: json.loads(p.read_text()) for p in (home / "checkpoints").glob("[!.]*/meta.json")}


def run(pytester: pytest.Pytester, home: Path, emails: list[str], *args: str) -> pytest.RunResult:
    # The emails are written into the seeding function itself: its source is the key.
    header = f"EMAILS = {emails!r}\n"
    pytester.makeconftest(CONFTEST.replace("SEED_EMAILS", repr(emails)))
    pytester.makepyfile(test_seeded=header + SUITE)
    return pytester.runpytest_subprocess(
        "--stack-emulator", "--stack-emulator-image=compat", f"--stack-emulator-home={home}",
        f"--stack-emulator-base-port={BASE_PORT}", "-p", "no:cacheprovider", *args, timeout=900,
    )  # fmt: skip


def test_a_checkpoint_is_captured_once_reused_and_captured_again_when_the_seed_changes(
    pytester: pytest.Pytester, home: Path
) -> None:
    first = ["ada@example.com", "grace@example.com"]
    result = run(pytester, home, first, "-n", "2")
    result.assert_outcomes(passed=2)
    captured = checkpoints(home)
    assert len(captured) == 1, captured
    ((ckpt_id, meta),) = captured.items()
    assert meta["extra"]["name"] == "seeded"
    assert len(meta["extra"]["value"]["user_ids"]) == 2

    # Nothing changed: the next run resumes the same checkpoint, it does not capture it again.
    result = run(pytester, home, first)
    result.assert_outcomes(passed=2)
    assert checkpoints(home) == captured

    # The seeding code changed: captured again, and the old one is dropped.
    second = ["ada@example.com", "grace@example.com", "alan@example.com"]
    result = run(pytester, home, second)
    result.assert_outcomes(passed=2)
    again = checkpoints(home)
    assert list(again) != [ckpt_id]
    assert len(again) == 1
    assert len(next(iter(again.values()))["extra"]["value"]["user_ids"]) == 3
    assert qemu_pids(str(home)) == []
