"""arm64 guests on this amd64 host, under TCG: the arm64 compat image is captured, each
xdist worker resumes it, the backend answers, and nothing is left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_stack_emulator.arch import host_arch
from pytest_stack_emulator.images import Image
from tests.helpers import TEST_BASE_PORT, make_home, qemu_pids

# On an arm64 host this guest is native (KVM or HVF), and the assertions on TCG do not hold.
pytestmark = pytest.mark.skipif(host_arch() != "amd64", reason="an arm64 guest emulated on an amd64 host")

INNER_SUITE = """
import json, os
from pathlib import Path
import httpx

def test_arm64_stack(stack_emulator):
    h = stack_emulator
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with h.client("server") as server:
        r = server.post("/api/v1/users", json={"primary_email": f"{worker}@example.com"})
        assert r.status_code == 201, r.text
    with h.client("client") as client:
        r = client.post("/api/v1/auth/password/sign-up",
                        json={"email": f"{worker}-pw@example.com", "password": "a-Long-passw0rd"})
        assert r.status_code == 200, r.text
    assert httpx.get(h.backend_url + "/health?db=1").json() == {"status": "ok"}
    pid = int((h.vm_dir / "qemu.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")
    record = {"worker": worker, "boot": h.boot, "vm_dir": str(h.vm_dir), "ports": h.ports,
              "qemu": os.path.basename(cmdline[cmdline.index(b"-name") - 1].decode()),
              "machine": cmdline[cmdline.index(b"-machine") + 1].decode(),
              "cpu": cmdline[cmdline.index(b"-cpu") + 1].decode()}
    with open(os.path.join(os.environ["RECORD_DIR"], f"{worker}.json"), "w") as f:
        json.dump(record, f)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, compat_arm64_image: Image) -> Path:
    return make_home(tmp_path_factory.mktemp("arm64-home"))


def run_inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, home: Path, *args: str
) -> tuple[pytest.RunResult, list[dict]]:
    records = pytester.path / "records"
    shutil.rmtree(records, ignore_errors=True)
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    pytester.makepyfile(test_inner=INNER_SUITE)
    result = pytester.runpytest_subprocess(
        "--stack-emulator", "--stack-emulator-image=compat", "--stack-emulator-arch=arm64",
        f"--stack-emulator-home={home}", f"--stack-emulator-base-port={TEST_BASE_PORT + 600}",
        "-p", "no:cacheprovider", "-rA", "-W", "always", *args, timeout=1200,
    )  # fmt: skip
    return result, [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]


def test_an_arm64_guest_is_captured_and_each_worker_resumes_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, home: Path, compat_arm64_image: Image
) -> None:
    assert compat_arm64_image.manifest.arch == "arm64"
    result, records = run_inner(pytester, monkeypatch, home, "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "stack-emulator snapshot: captured *",
        "stack-emulator accelerator: tcg (guest arch arm64 differs from host arch amd64*",
    ])  # fmt: skip
    assert sorted(r["worker"] for r in records) == ["gw0", "gw1"]
    for record in records:
        assert record["boot"] == "resume"
        assert record["qemu"] == "qemu-system-aarch64"
        assert record["machine"].startswith("virt")
        assert record["cpu"] == "max,pauth-impdef=on"
        assert not Path(record["vm_dir"]).exists()
    assert set(records[0]["ports"].values()).isdisjoint(records[1]["ports"].values())
    snapshots = [p for p in (home / "snapshots").iterdir() if not p.name.startswith(".")]
    assert len(snapshots) == 1
    key = json.loads((snapshots[0] / "meta.json").read_text())["key"]
    assert (key["arch"], key["accel"], key["image_digest"]) == ("arm64", "tcg", compat_arm64_image.digest)
    # Nothing left: no QEMU, no run directory, no port lease.
    assert qemu_pids(str(home)) == []
    assert list((home / "run").iterdir()) == []
    assert list((home / "ports").glob("*.json")) == []


def test_the_next_session_resumes_the_arm64_snapshot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    result, records = run_inner(pytester, monkeypatch, home)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["stack-emulator snapshot: reused *"])
    assert [r["boot"] for r in records] == ["resume"]
    assert qemu_pids(str(home)) == []
