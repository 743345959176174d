"""``stack-emulator bench``: cold boot, capture, resume (1..N workers at once), rotation,
mapped-ram against a plain stream, teardown, memory and disk, measured side by side in one run.

Absolute times on a shared machine are noisy; the ratios between figures taken in the same run
(cold boot / resume, stream / mapped-ram) are the numbers to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from pathlib import Path
from typing import Any

from . import emulator
from .config import Settings, resolve
from .log import get_logger
from .snapshot import STREAM

log = get_logger(__name__)

BENCH_BASE_PORT = 28700
REQUIRED_KEYS = (
    "machine", "cold_boot_s", "capture_s", "resume_s", "resume_rotate_s", "restore_method",
    "resume_stream_s", "teardown_s", "memory_mb", "snapshot_bytes", "session_overhead_s",
)  # fmt: skip


def spread(samples: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "n": len(samples),
    }


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS of a process from /proc/<pid>/smaps_rollup, in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key.lower()] = int(rest.split()[0]) / 1024
    return values


def machine_facts(prepared: emulator.Prepared) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "accelerator": prepared.host.accel.name,
        "accelerator_reason": prepared.host.accel.reason,
        "qemu_version": prepared.host.version,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "image": prepared.image.source,
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


def session_overhead(home: Path, workers: int, base_port: int) -> float:
    """Seconds from launching pytest to the first test body running, snapshot already cached."""
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
               f"--stack-emulator-base-port={base_port}"]  # fmt: skip
        if workers > 1:
            cmd += ["-n", str(workers)]
        launched = time.time()
        proc = subprocess.run(
            cmd, cwd=suite, env={**os.environ, "BENCH_OUT": str(out)}, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pytest -n {workers} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        firsts = [float(p.read_text()) for p in out.iterdir()]
        return min(firsts) - launched


def run(
    home: Path, repeat: int = 5, workers: tuple[int, ...] = (1, 2, 4), overhead: bool = True
) -> dict[str, Any]:
    """Every measurement, in one run, on a home whose snapshots are captured afresh here."""
    base = resolve({"image": "compat", "home": home, "base_port": BENCH_BASE_PORT}, {}, {})
    shutil.rmtree(home / "snapshots", ignore_errors=True)
    mapped = emulator.prepare(base)
    if mapped.snapshot is None:
        raise RuntimeError(f"capture failed: {mapped.snapshot_state}")
    stream_prep = emulator.prepare(dataclasses.replace(base, restore=STREAM))
    if stream_prep.snapshot is None:
        raise RuntimeError(f"stream capture failed: {stream_prep.snapshot_state}")
    result: dict[str, Any] = {"machine": machine_facts(mapped)}
    result["cold_boot_s"] = spread([mapped.snapshot.boot_seconds, stream_prep.snapshot.boot_seconds])
    result["capture_s"] = round(mapped.snapshot.capture_seconds, 3)
    result["capture_stream_s"] = round(stream_prep.snapshot.capture_seconds, 3)
    result["restore_method"] = mapped.restore_method
    result["snapshot_bytes"] = mapped.snapshot.sizes()
    result["snapshot_stream_bytes"] = stream_prep.snapshot.sizes()

    resume: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    teardowns: list[float] = []
    phases: dict[str, Any] = {}
    for count in workers:
        walls, rss, pss = [], [], []
        for _ in range(repeat):
            log.info("bench: resume %d worker(s) at once", count)
            group = resume_group(mapped, count)
            walls.append(group["wall"])
            rss += [m["rss"] for m in group["memory"]]
            pss += [m["pss"] for m in group["memory"]]
            teardowns += group["teardown"]
            phases[str(count)] = group["phases"]
        resume[str(count)] = spread(walls)
        memory[str(count)] = {
            "rss": round(statistics.median(rss), 1),
            "pss": round(statistics.median(pss), 1),
        }
    result["resume_s"] = resume
    result["resume_phases_s"] = {
        k: [{p: round(t, 3) for p, t in ph.items()} for ph in v] for k, v in phases.items()
    }
    result["memory_mb"] = memory
    result["teardown_s"] = spread(teardowns)

    rotated = dataclasses.replace(mapped, settings=dataclasses.replace(base, rotate=True))
    result["resume_rotate_s"] = spread([resume_group(rotated, 1)["wall"] for _ in range(repeat)])
    result["resume_stream_s"] = spread([resume_group(stream_prep, 1)["wall"] for _ in range(repeat)])
    if overhead:
        result["session_overhead_s"] = {
            str(n): round(session_overhead(home, n, BENCH_BASE_PORT), 3) for n in (1, 4)
        }
    else:
        result["session_overhead_s"] = {}
    r1 = resume[str(workers[0])]["median"]
    result["ratios"] = {
        "cold_boot_over_resume": round(result["cold_boot_s"]["median"] / r1, 1),
        "stream_over_mapped_ram": round(result["resume_stream_s"]["median"] / r1, 2),
        "rotate_over_plain": round(result["resume_rotate_s"]["median"] / r1, 2),
    }
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [
        ("Cold boot to all healthy", f"{result['cold_boot_s']['median']:.1f} s"),
        ("Capture (migration to file)", f"{result['capture_s']:.2f} s"),
    ]
    for n, s in result["resume_s"].items():
        rows.append((f"Resume, {n} worker(s) at once, to all healthy",
                     f"{s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f}, n={s['n']})"))  # fmt: skip
    rows += [
        ("Resume with key rotation", f"{result['resume_rotate_s']['median']:.2f} s"),
        (
            f"Resume from a plain stream (vs {result['restore_method']})",
            f"{result['resume_stream_s']['median']:.2f} s",
        ),
        (
            "Teardown per worker",
            f"{result['teardown_s']['median']:.2f} s (max {result['teardown_s']['max']:.2f})",
        ),
    ]
    for n, mem in result["memory_mb"].items():
        rows.append((f"Memory per worker, {n} at once", f"RSS {mem['rss']:.0f} MB, PSS {mem['pss']:.0f} MB"))
    sb = result["snapshot_bytes"]
    rows.append(
        (
            "Snapshot on disk (RAM + disk layer)",
            f"{sb['logical'] / 1e6:.0f} MB logical, {sb['allocated'] / 1e6:.0f} MB allocated",
        )
    )
    for n, s in result["session_overhead_s"].items():
        rows.append((f"pytest start to first test, -n {n}", f"{s:.2f} s"))
    ratios = result["ratios"]
    rows += [
        ("Cold boot / resume (1 worker)", f"{ratios['cold_boot_over_resume']:.0f}x"),
        ("Stream / mapped-ram resume", f"{ratios['stream_over_mapped_ram']:.2f}x"),
    ]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, accelerator {m['accelerator']}, QEMU {m['qemu_version']}, "
        f"guest {m['guest_ram_mb']} MiB / {m['guest_vcpus']} vCPU, {m['date']}",
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
    counts = list(result["resume_s"])
    med = [result["resume_s"][c]["median"] for c in counts]
    lo = [m - result["resume_s"][c]["min"] for c, m in zip(counts, med, strict=True)]
    hi = [result["resume_s"][c]["max"] - m for c, m in zip(counts, med, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"resume x{c}" for c in counts] + ["cold boot"]
    values = [*med, result["cold_boot_s"]["median"]]
    bars = ax.bar(labels, values, color=["#4c72b0"] * len(counts) + ["#c44e52"])
    ax.errorbar(
        [i + 0.25 for i in range(len(counts))], med, yerr=[lo, hi], fmt="none", ecolor="black", capsize=3
    )
    ax.bar_label(bars, labels=[f"{v:.2f} s" for v in values], padding=12)
    ax.set_yscale("log")
    ax.set_ylabel("seconds to all services healthy (log)")
    m = result["machine"]
    ax.set_title(f"{m['cores']} cores, {m['accelerator']}, QEMU {m['qemu_version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(args: argparse.Namespace) -> int:
    settings: Settings = resolve({"home": args.home} if args.home else {}, {})
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
        result = run(home, repeat=repeat, workers=workers, overhead=True)
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
