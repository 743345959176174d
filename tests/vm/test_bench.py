"""A small benchmark run: every field present, figures positive and consistent. No time bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_stack_emulator.bench import REQUIRED_KEYS
from pytest_stack_emulator.cli import main
from pytest_stack_emulator.images import Image
from tests.helpers import CACHE_HOME


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and value > 0


def check_spread(s: dict[str, float]) -> None:
    assert positive(s["min"])
    assert s["min"] <= s["median"] <= s["max"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, compat_image: Image) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--home", str(CACHE_HOME), "--output", str(out), "--quick"]) == 0
    return json.loads((out / "bench.json").read_text()), out


def test_json_has_every_field(result: tuple[dict, Path]) -> None:
    data, out = result
    assert set(REQUIRED_KEYS) <= data.keys()
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["accelerator"] in ("kvm", "hvf", "tcg")
    assert data["machine"]["qemu_version"].count(".") == 2
    assert set(data["resume_s"]) == {"1", "2", "4"}
    assert set(data["memory_mb"]) == {"1", "2", "4"}
    assert set(data["session_overhead_s"]) == {"1", "4"}
    assert data["restore_method"] == "template"  # QEMU 10 here: templating is the default
    assert set(data["restore_methods"]) == {"template", "mapped-ram", "stream"}
    for measured in (data["template"], *data["restore_methods"].values()):
        assert set(measured["resume_s"]) == {"1", "2", "4"}
        assert set(measured["memory_mb"]) == {"1", "2", "4"}
    assert data["template"]["resume_s"] == data["resume_s"]
    assert (out / "bench.md").read_text().startswith("Machine: ")


def test_figures_are_positive_and_consistent(result: tuple[dict, Path]) -> None:
    data, _ = result
    check_spread(data["cold_boot_s"])
    assert positive(data["capture_s"])
    for spread in (
        *data["resume_s"].values(),
        data["resume_rotate_s"],
        data["resume_stream_s"],
        data["teardown_s"],
    ):
        check_spread(spread)
    for method in data["restore_methods"].values():
        for spread in method["resume_s"].values():
            check_spread(spread)
        for mem in method["memory_mb"].values():
            assert 0 < mem["uss"] <= mem["pss"] <= mem["rss"]
    sizes = data["snapshot_bytes"]
    assert 0 < sizes["allocated"] <= sizes["logical"]
    assert all(positive(v) for v in data["session_overhead_s"].values())
    for n, first in data["session_overhead_s"].items():
        assert first <= data["session_overhead_last_s"][n]
    assert data["ratios"]["cold_boot_over_resume"] == pytest.approx(
        data["cold_boot_s"]["median"] / data["resume_s"]["1"]["median"], rel=0.05
    )
    # Every phase of a resume happened in order.
    for phases in data["resume_phases_s"]["1"]:
        assert phases["launch"] <= phases["loaded"] <= phases["qga"] <= phases["healthy"]
