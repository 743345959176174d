"""``stack-emulator bench``: cold boot, capture, resume (1..N workers at once) by every restore
method QEMU has (template, mapped-ram, stream), rotation, teardown, memory and disk, measured
side by side in one run.

Absolute times on a shared machine are noisy; the ratios between figures taken in the same run
(cold boot / resume, one restore method / another) are the numbers to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import emulator, procinfo
from .config import Settings, resolve
from .errors import SnapshotError
from .log import get_logger
from .snapshot import MAPPED_RAM, STREAM, TEMPLATE, choose_restore_method

log = get_logger(__name__)

BENCH_BASE_PORT = 28700
REQUIRED_KEYS = (
    "machine", "cold_boot_s", "capture_s", "resume_s", "resume_rotate_s", "restore_method",
    "resume_stream_s", "teardown_s", "memory_mb", "snapshot_bytes", "session_overhead_s",
    "template", "restore_methods",
)  # fmt: skip
METHODS = (TEMPLATE, MAPPED_RAM, STREAM)


def spread(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "n": len(samples),
    }


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (pages no other process maps) of a process in MB; RSS alone where the
    host cannot tell the others (macOS)."""
    return procinfo.host().memory_mb(pid)


def median_memory(samples: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure that every sample has."""
    names = [name for name in ("rss", "pss", "uss") if samples and all(name in s for s in samples)]
    return {name: round(statistics.median(s[name] for s in samples), 1) for name in names}


def memory_text(mem: dict[str, float]) -> str:
    """``USS 12 MB, PSS 34 MB, RSS 56 MB``, leaving out the figures this host did not give."""
    return ", ".join(f"{name.upper()} {mem[name]:.0f} MB" for name in ("uss", "pss", "rss") if name in mem)


def machine_facts(prepared: emulator.Prepared) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": procinfo.host().cpu_model(),
        "accelerator": prepared.host.accel.name,
        "accelerator_reason": prepared.host.accel.reason,
        "qemu_version": prepared.host.version,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "image": prepared.image.source,
        "guest_arch": prepared.image.manifest.arch,
        "guest_ram_mb": prepared.image.manifest.ram_mb,
        "guest_vcpus": prepared.image.manifest.vcpus,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def resume_group(prepared: emulator.Prepared, count: int) -> dict[str, Any]:
    """Start ``count`` VMs at once; time each to healthy, sample memory, then stop them."""
    started = time.monotonic()

    def one(i: int) -> tuple[emulator.Instance, float]:
        t = time.monotonic()
        inst = emulator.start(prepared, worker=f"bench{i}", worker_idx=i)
        return inst, time.monotonic() - t

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        errors = [e for f in futures if (e := f.exception()) is not None]
        results = [f.result() for f in futures if f.exception() is None]
    if errors:
        emulator.stop_all([inst for inst, _ in results])
        raise RuntimeError(f"{len(errors)} of {count} VMs did not start: {errors[0]}")
    wall = time.monotonic() - started
    instances = [inst for inst, _ in results]
    try:
        boots = {inst.handle.boot for inst in instances}
        if boots != {"resume"}:
            raise RuntimeError(f"expected every VM to resume, got {boots}: {instances[0].warnings}")
        mem = [memory_mb(inst.machine.pid or 0) for inst in instances]
    finally:
        stops: list[float] = []
        with ThreadPoolExecutor(max_workers=count) as pool:
            stops = list(pool.map(lambda inst: inst.stop(), instances))
    return {
        "wall": wall,
        "each": [t for _, t in results],
        "phases": [inst.timings for inst in instances],
        "memory": mem,
        "teardown": stops,
    }


def session_overhead(home: Path, workers: int, base_port: int, arch: str = "auto") -> tuple[float, float]:
    """Seconds from launching pytest to the first test body running, and to the last worker's
    first test, snapshot already cached."""
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        suite = Path(tmp)
        (suite / "test_first.py").write_text(
            textwrap.dedent(
                """
                import os, time
                def test_first(stack_emulator):
                    with open(os.path.join(os.environ["BENCH_OUT"], f"{os.getpid()}"), "w") as f:
                        f.write(repr(time.time()))
                """
            )
        )
        for i in range(1, workers):
            (suite / f"test_more{i}.py").write_text((suite / "test_first.py").read_text())
        out = suite / "out"
        out.mkdir()
        cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
               "--stack-emulator", "--stack-emulator-image=compat", f"--stack-emulator-home={home}",
               f"--stack-emulator-base-port={base_port}", f"--stack-emulator-arch={arch}"]  # fmt: skip
        if workers > 1:
            cmd += ["-n", str(workers)]
        launched = time.time()
        proc = subprocess.run(
            cmd, cwd=suite, env={**os.environ, "BENCH_OUT": str(out)}, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pytest -n {workers} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        firsts = [float(p.read_text()) for p in out.iterdir()]
        return min(firsts) - launched, max(firsts) - launched


def measure(prepared: emulator.Prepared, workers: tuple[int, ...], repeat: int) -> dict[str, Any]:
    """Resume ``n`` VMs at once for each ``n`` in ``workers``, ``repeat`` times: wall time to all
    healthy, memory per worker (medians), teardowns and each VM's phases."""
    resume: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    phases: dict[str, Any] = {}
    teardowns: list[float] = []
    for count in workers:
        walls: list[float] = []
        samples: list[dict[str, float]] = []
        for _ in range(repeat):
            log.info("bench: resume %d worker(s) at once (%s)", count, prepared.restore_method)
            group = resume_group(prepared, count)
            walls.append(group["wall"])
            samples += group["memory"]
            teardowns += group["teardown"]
            phases[str(count)] = [{p: round(t, 3) for p, t in ph.items()} for ph in group["phases"]]
        resume[str(count)] = spread(walls)
        memory[str(count)] = median_memory(samples)
    return {"resume_s": resume, "memory_mb": memory, "phases": phases, "teardown": teardowns}


def run(
    home: Path,
    repeat: int = 5,
    workers: tuple[int, ...] = (1, 2, 4),
    overhead: bool = True,
    arch: str = "auto",
) -> dict[str, Any]:
    """Every measurement, in one run, on a home whose snapshots are captured afresh here: one
    snapshot per restore method this QEMU has, each resumed the same way."""
    base = resolve({"image": "compat", "home": home, "base_port": BENCH_BASE_PORT, "arch": arch}, {}, {})
    shutil.rmtree(home / "snapshots", ignore_errors=True)
    default = emulator.prepare(base)
    if default.snapshot is None:
        raise RuntimeError(f"capture failed: {default.snapshot_state}")
    caps = set(default.host.capabilities)
    preps: dict[str, emulator.Prepared] = {}
    for method in METHODS:
        try:
            choose_restore_method(method, caps, default.host.version)
        except SnapshotError:
            log.info("bench: this QEMU has no %s restore; skipped", method)
            continue
        prep = (
            default if method == default.restore_method else emulator.prepare(replace(base, restore=method))
        )
        if prep.snapshot is None:
            raise RuntimeError(f"{method} capture failed: {prep.snapshot_state}")
        preps[method] = prep
    snaps = {m: p.snapshot for m, p in preps.items() if p.snapshot is not None}
    assert default.snapshot is not None
    result: dict[str, Any] = {"machine": machine_facts(default), "restore_method": default.restore_method}
    result["cold_boot_s"] = spread([snap.boot_seconds for snap in snaps.values()])
    result["capture_s"] = round(default.snapshot.capture_seconds, 3)
    result["snapshot_bytes"] = default.snapshot.sizes()

    measured = {method: measure(prep, workers, repeat) for method, prep in preps.items()}
    result["restore_methods"] = {
        m: {"resume_s": r["resume_s"], "memory_mb": r["memory_mb"], "capture_s": round(snaps[m].capture_seconds, 3),
            "snapshot_bytes": snaps[m].sizes()}
        for m, r in measured.items()
    }  # fmt: skip
    mine = measured[default.restore_method]
    result["resume_s"] = mine["resume_s"]
    result["memory_mb"] = mine["memory_mb"]
    result["resume_phases_s"] = mine["phases"]
    result["teardown_s"] = spread(mine["teardown"])
    # The same shape as the top-level keys; empty where this QEMU cannot template.
    template = measured.get(TEMPLATE, {})
    result["template"] = {
        "resume_s": template.get("resume_s", {}),
        "memory_mb": template.get("memory_mb", {}),
    }

    rotated = replace(default, settings=replace(base, rotate=True))
    result["resume_rotate_s"] = spread([resume_group(rotated, 1)["wall"] for _ in range(repeat)])
    one = str(workers[0])
    result["resume_stream_s"] = measured[STREAM]["resume_s"][one]
    if overhead:
        overheads = {str(n): session_overhead(home, n, BENCH_BASE_PORT, arch) for n in (1, 4)}
        result["session_overhead_s"] = {n: round(first, 3) for n, (first, _) in overheads.items()}
        result["session_overhead_last_s"] = {n: round(last, 3) for n, (_, last) in overheads.items()}
    else:
        result["session_overhead_s"] = result["session_overhead_last_s"] = {}
    r1 = mine["resume_s"][one]["median"]
    ratios = {
        "cold_boot_over_resume": round(result["cold_boot_s"]["median"] / r1, 1),
        "rotate_over_plain": round(result["resume_rotate_s"]["median"] / r1, 2),
    }
    for method, r in measured.items():
        if method != default.restore_method:
            ratios[f"{method}_over_{default.restore_method}"] = round(r["resume_s"][one]["median"] / r1, 2)
    pair = "2" if "2" in mine["memory_mb"] else one
    if all("uss" in measured.get(m, {}).get("memory_mb", {}).get(pair, {}) for m in (TEMPLATE, MAPPED_RAM)):
        # A template's clones share clean RAM pages: compare what each worker holds alone.
        ratios["template_uss_over_mapped_ram"] = round(
            measured[TEMPLATE]["memory_mb"][pair]["uss"] / measured[MAPPED_RAM]["memory_mb"][pair]["uss"], 3
        )
    result["ratios"] = ratios
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    default = result["restore_method"]
    rows = [
        ("Cold boot to all healthy", f"{result['cold_boot_s']['median']:.1f} s"),
        (f"Capture (migration to file, {default})", f"{result['capture_s']:.2f} s"),
    ]
    for method, r in result["restore_methods"].items():
        for n, s in r["resume_s"].items():
            mem = r["memory_mb"][n]
            rows.append((f"Resume ({method}{', default' if method == default else ''}), {n} worker(s) at once",
                         f"{s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f}, n={s['n']}); per worker "
                         f"{memory_text(mem)}"))  # fmt: skip
    rows += [
        ("Resume with key rotation", f"{result['resume_rotate_s']['median']:.2f} s"),
        (
            "Teardown per worker",
            f"{result['teardown_s']['median']:.2f} s (max {result['teardown_s']['max']:.2f})",
        ),
    ]
    for method, r in result["restore_methods"].items():
        sb = r["snapshot_bytes"]
        rows.append((f"Snapshot on disk ({method}: state, RAM, disk layer)",
                     f"{sb['logical'] / 1e6:.0f} MB logical, {sb['allocated'] / 1e6:.0f} MB allocated"))  # fmt: skip
    for n, s in result["session_overhead_s"].items():
        last = result["session_overhead_last_s"][n]
        rows.append(
            (f"pytest start to first test, -n {n}", f"{s:.2f} s (every worker's first test by {last:.2f} s)")
        )
    ratios = result["ratios"]
    rows.append(("Cold boot / resume (1 worker)", f"{ratios['cold_boot_over_resume']:.0f}x"))
    rows += [(f"Resume {name.replace('_over_', ' / ')} (1 worker)", f"{value:.2f}x")
             for name, value in ratios.items() if name.endswith(f"_over_{default}")]  # fmt: skip
    if "template_uss_over_mapped_ram" in ratios:
        rows.append(("Private memory per worker, template / mapped-ram (2 at once)",
                     f"{ratios['template_uss_over_mapped_ram']:.1%}"))  # fmt: skip
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, accelerator {m['accelerator']}, QEMU {m['qemu_version']}, "
        f"guest {m.get('guest_arch', 'amd64')} {m['guest_ram_mb']} MiB / {m['guest_vcpus']} vCPU, {m['date']}",
        "",
        "| measurement | result |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
    ]
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> bool:
    """A PNG of resume time against worker count beside cold boot; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels: list[str] = []
    values: list[float] = []
    colors: list[str] = []
    palette = {TEMPLATE: "#55a868", MAPPED_RAM: "#4c72b0", STREAM: "#8172b2"}
    for method, r in result["restore_methods"].items():
        for count, s in r["resume_s"].items():
            labels.append(f"{method}\nx{count}")
            values.append(s["median"])
            colors.append(palette.get(method, "#4c72b0"))
    labels.append("cold\nboot")
    values.append(result["cold_boot_s"]["median"])
    colors.append("#c44e52")
    fig, ax = plt.subplots(figsize=(max(7, len(labels) * 0.8), 4))
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds to all services healthy (log)")
    m = result["machine"]
    ax.set_title(f"{m['cores']} cores, {m['accelerator']}, QEMU {m['qemu_version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(args: argparse.Namespace) -> int:
    settings: Settings = resolve({"home": args.home, "arch": args.arch}, {})
    output: Path = args.output.resolve()  # the pytest runs below have their own cwd
    output.mkdir(parents=True, exist_ok=True)
    home = output / "home"
    home.mkdir(exist_ok=True)
    images = home / "images"
    if not images.exists():
        images.symlink_to(settings.home / "images", target_is_directory=True)
    workers = tuple(int(w) for w in args.workers.split(","))
    repeat = 1 if args.quick else args.repeat
    try:
        result = run(home, repeat=repeat, workers=workers, overhead=True, arch=settings.arch)
    finally:
        emulator.stop_all()  # nothing outlives the benchmark, also on Ctrl-C
    (output / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (output / "bench.md").write_text(table)
    drew = chart(result, output / "bench.png")
    print(table)
    print(f"wrote {output / 'bench.json'}, {output / 'bench.md'}" + (f", {output / 'bench.png'}" if drew else
          " (no chart: pip install 'pytest-stack-emulator[plot]')"))  # fmt: skip
    return 0


__all__ = ["REQUIRED_KEYS", "main", "markdown", "run"]
