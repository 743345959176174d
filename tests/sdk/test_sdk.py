"""Conformance of the compat image to the official Stack Auth SDKs.

One stack is resumed from the compat image's snapshot for this module. ``run.mjs`` then runs
every flow in ``flows/`` with each pinned SDK release (``sdk-latest`` sends ``x-hexclave-*``
headers, ``sdk-legacy`` sends ``x-stack-*``), and each (release, flow) pair is one test here.
A flow fails on a wrong outcome or on any backend response that does not fit stack-shared's
schema for its route. Node 20+ and ``tests/sdk/node_modules`` come from ``bash scripts/setup``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from tests.helpers import TEST_BASE_PORT

SDK_DIR = Path(__file__).resolve().parent
ALIASES = ("sdk-latest", "sdk-legacy")
HEADER_PREFIX = {"sdk-latest": "x-hexclave-", "sdk-legacy": "x-stack-"}
RUN_TIMEOUT_S = 900
# Its own port block, away from tests/vm (TEST_BASE_PORT) and a developer's emulator.
SDK_BASE_PORT = TEST_BASE_PORT + 200
SETUP_HINT = "run `bash scripts/setup` (it installs Node.js 20+ and runs `npm ci` in tests/sdk)"


def flow_names() -> list[str]:
    """Flow names in run order, read from the flow modules without running Node."""
    order = re.findall(r'from "\./([\w-]+)\.mjs"', (SDK_DIR / "flows" / "index.mjs").read_text())
    names: list[str] = []
    for module in order:
        names += re.findall(r'^\s*name: "([^"]+)",$', (SDK_DIR / "flows" / f"{module}.mjs").read_text(), re.M)
    return names


FLOWS = flow_names()


@cache
def node_problem() -> str | None:
    """Why the runner cannot start, or None."""
    node = shutil.which("node")
    if node is None:
        return f"node is not installed: {SETUP_HINT}"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 20:
        return f"{node} is {version or 'unknown'}, the SDKs need Node.js 20 or newer: {SETUP_HINT}"
    for alias in ALIASES:
        if not (SDK_DIR / "node_modules" / alias / "package.json").is_file():
            return f"{SDK_DIR / 'node_modules' / alias} is missing: {SETUP_HINT}"
    return None


@dataclass
class Run:
    """One run of run.mjs with one SDK release."""

    returncode: int
    flows: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None
    stderr: str

    def why_missing(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-30:])
        return f"run.mjs exited with {self.returncode} before reporting this flow; its stderr ends:\n{tail}"


def run_flows(handle: emulator.StackEmulator, alias: str) -> Run:
    env = {
        **os.environ,
        **handle.env(),
        "STACK_SUPER_SECRET_ADMIN_KEY": handle.super_secret_admin_key,
        "STACK_INBUCKET_URL": handle.inbucket_url,
    }
    try:
        proc = subprocess.run(
            ["node", str(SDK_DIR / "run.mjs"), alias],
            cwd=SDK_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:  # keep what it reported; never rerun it per test
        stdout = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        returncode, stderr = -1, f"{stderr}\nrun.mjs was killed after {RUN_TIMEOUT_S} s"
    flows: dict[str, dict[str, Any]] = {}
    summary = None
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("summary"):
            summary = record
        elif "flow" in record:
            flows[record["flow"]] = record
    return Run(returncode, flows, summary, stderr)


@dataclass
class SdkRuns:
    """Starts the stack on first use and runs each SDK release once."""

    instance: emulator.Instance | None = None
    error: BaseException | None = None
    runs: dict[str, Run] = field(default_factory=dict)

    def get(self, alias: str, vm_home: Callable[[], Path]) -> Run:
        if self.error is not None:
            pytest.fail(f"the stack did not start: {self.error}", pytrace=False)
        if self.instance is None:
            try:
                settings = resolve({"image": "compat", "home": vm_home(), "base_port": SDK_BASE_PORT}, {}, {})
                self.instance = emulator.start(emulator.prepare(settings), worker="sdk-conformance")
            except BaseException as exc:
                self.error = exc
                raise
        if alias not in self.runs:
            self.runs[alias] = run_flows(self.instance.handle, alias)
        return self.runs[alias]

    def close(self) -> None:
        if self.instance is not None:
            self.instance.stop()


@pytest.fixture(scope="module")
def sdk_runs() -> Iterator[SdkRuns]:
    runs = SdkRuns()
    yield runs
    runs.close()


def sdk_run(alias: str, sdk_runs: SdkRuns, request: pytest.FixtureRequest) -> Run:
    problem = node_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    # vm_home builds the compat image when needed: only ask for it once Node is known to work.
    return sdk_runs.get(alias, lambda: request.getfixturevalue("vm_home"))


@pytest.mark.parametrize("alias", ALIASES)
def test_runner_reports_every_flow(alias: str, sdk_runs: SdkRuns, request: pytest.FixtureRequest) -> None:
    run = sdk_run(alias, sdk_runs, request)
    assert run.summary is not None, run.why_missing()
    assert sorted(run.flows) == sorted(FLOWS), "flows/*.mjs and run.mjs disagree on the flow list"
    assert run.summary["header_prefixes"] == [HEADER_PREFIX[alias]], run.summary


@pytest.mark.parametrize(("alias", "flow"), [(a, f) for a in ALIASES for f in FLOWS])
def test_flow(alias: str, flow: str, sdk_runs: SdkRuns, request: pytest.FixtureRequest) -> None:
    run = sdk_run(alias, sdk_runs, request)
    record = run.flows.get(flow)
    if record is None:
        pytest.fail(run.why_missing(), pytrace=False)
    if not record["ok"]:
        pytest.fail(f"{alias} {run.summary and run.summary['sdk_version']}: {record['error']}", pytrace=False)
