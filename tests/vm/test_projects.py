"""Projects besides internal on the compat image: new_project(), the stack_project fixture, and
a project per app config file (--stack-emulator-project-config, `stack-emulator start --config-file`).

tests/guest/test_projects_host.py runs the same scenario against stackd on the host.
"""

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

from pytest_stack_emulator import emulator
from tests.helpers import TEST_BASE_PORT, read_json_block, resumed_stack
from tests.projects_scenario import check_config_file, check_new_project

PROJECTS_BASE_PORT = TEST_BASE_PORT + 400


@pytest.fixture(scope="module")
def stack(vm_home: Path) -> Iterator[emulator.StackEmulator]:
    with resumed_stack(vm_home, PROJECTS_BASE_PORT, "projects") as handle:
        yield handle


def test_new_project_on_the_image(stack: emulator.StackEmulator) -> None:
    started = time.monotonic()
    stack.new_project()
    assert time.monotonic() - started < 2.0, "making a project should take milliseconds, not seconds"
    check_new_project(stack)


def test_config_file_project_on_the_image(stack: emulator.StackEmulator, tmp_path: Path) -> None:
    check_config_file(stack, tmp_path)


INNER_SUITE = """
import json, os
import httpx
import pytest

PASSWORD = "correct-horse-battery-1"

def sign_up(project, email):
    with project.client("client") as c:
        return c.post("/api/v1/auth/password/sign-up", json={"email": email, "password": PASSWORD})

def test_fixture_project_is_the_files(stack_emulator):
    h = stack_emulator
    assert h.project_id != "internal"
    assert h.internal_project().project_id == "internal"
    r = sign_up(h, "file-user@example.com")
    assert r.status_code == 400 and r.json()["code"] == "SIGN_UP_NOT_ENABLED", r.text
    with h.client("server") as s:
        assert s.post("/api/v1/users", json={"primary_email": "made@example.com"}).status_code == 201
    record = {"project_id": h.project_id, "env": h.env()}
    with open(os.path.join(os.environ["RECORD_DIR"], "file.json"), "w") as f:
        json.dump(record, f)

def test_stack_project_is_fresh_per_test(stack_project, stack_emulator):
    assert stack_project.project_id not in ("internal", stack_emulator.project_id)
    assert sign_up(stack_project, "fresh@example.com").status_code == 200
    with stack_project.client("server") as s:
        emails = [u["primary_email"] for u in s.get("/api/v1/users").json()["items"]]
    assert emails == ["fresh@example.com"]

@pytest.mark.parametrize("stack_project", [{"auth.allowSignUp": False}], indirect=True)
def test_stack_project_with_a_config(stack_project):
    r = sign_up(stack_project, "refused@example.com")
    assert r.json()["code"] == "SIGN_UP_NOT_ENABLED"
"""

CONFIG = """export const config = {
  auth: { allowSignUp: false, password: { allowSignIn: true } },
};
"""


def test_the_fixture_option_and_the_stack_project_fixture(pytester: pytest.Pytester, vm_home: Path) -> None:
    config = pytester.path / "stack.config.ts"
    config.write_text(CONFIG)
    pytester.makepyfile(test_inner=INNER_SUITE)
    records = pytester.path / "records"
    records.mkdir()
    os.environ["RECORD_DIR"] = str(records)
    # vm_home: the snapshot the module's stack was resumed from is reused, not captured again.
    args = [
        "--stack-emulator", "--stack-emulator-image=compat", f"--stack-emulator-home={vm_home}",
        f"--stack-emulator-base-port={TEST_BASE_PORT}", "-p", "no:cacheprovider", "-rA",
    ]  # fmt: skip
    first = pytester.runpytest_subprocess(*args, f"--stack-emulator-project-config={config}", timeout=900)
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(["*project_config*stack.config.ts*"])
    project_id = json.loads((records / "file.json").read_text())["project_id"]
    # A second session resumes the snapshot: the file's project is made again in the new VM,
    # from the file; the same file gives the same kind of project through the env variable.
    os.environ["STACK_EMULATOR_PROJECT_CONFIG"] = str(config)
    try:
        second = pytester.runpytest_subprocess(*args, "-k", "file", timeout=900)
    finally:
        del os.environ["STACK_EMULATOR_PROJECT_CONFIG"]
    second.assert_outcomes(passed=1)
    again = json.loads((records / "file.json").read_text())
    assert again["env"]["STACK_PROJECT_ID"] == again["project_id"] != "internal"
    assert project_id != "internal"


def test_cli_start_prints_the_config_files_project(vm_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "stack.config.json"
    # A file project starts from Stack Auth's defaults: password sign-in is off until turned on.
    config.write_text('{"auth": {"allowSignUp": false, "password": {"allowSignIn": true}}}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_stack_emulator.cli", "start", "--image=compat", f"--home={vm_home}",
         f"--config-file={config}", "--json"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "cli.log").open("w"), text=True,
        env={**os.environ, "STACK_EMULATOR_BASE_PORT": str(PROJECTS_BASE_PORT + 50)},
    )  # fmt: skip
    try:
        out = read_json_block(proc)
        env = out["env"]
        assert out["project_id"] == env["STACK_PROJECT_ID"] != "internal"
        r = httpx.post(
            env["STACK_API_URL"] + "/api/v1/auth/password/sign-up",
            json={"email": "cli@example.com", "password": "correct-horse-battery-1"},
            headers={"x-stack-project-id": env["STACK_PROJECT_ID"], "x-stack-access-type": "client",
                     "x-stack-publishable-client-key": env["STACK_PUBLISHABLE_CLIENT_KEY"]},
        )  # fmt: skip
        assert r.json()["code"] == "SIGN_UP_NOT_ENABLED"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
