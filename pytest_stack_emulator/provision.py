"""The provisioning boot of an image build: cloud-init runs ``cloud_init/user-data`` once.

The guest reports on its serial console: ``STACK_PROVISION_OK`` or
``STACK_PROVISION_FAILED: <step>``, then powers off. This module boots it from the NoCloud
seed ISO (label ``cidata``) and watches the console with the shared wait loop.
"""

from __future__ import annotations

from pathlib import Path

from .arch import cpu_model, guest_arch, kernel_append
from .errors import ProvisioningFailed, ProvisioningTimeout
from .iso import write_runtime_iso, write_seed_iso
from .log import Progress
from .machine import Machine, MachineConfig, detect_accel, make_phantom, qemu_binary
from .manifest import Boot, Manifest
from .runtime import base_env, runtime_env
from .wait import Deadline, poll

OK_MARKER = "STACK_PROVISION_OK"
FAIL_MARKER = "STACK_PROVISION_FAILED"
# The serial console is added per architecture (arch.kernel_append).
KERNEL_APPEND = (
    "root=/dev/vda rw net.ifnames=0 quiet loglevel=3 mitigations=off "
    "random.trust_cpu=on systemd.show_status=false"
)
REPORT_EVERY_S = 15.0


def provision_boot(
    source: Path, work: Path, disk: Path, accel_choice: str, timeout: float, progress: Progress,
    *, ram_mb: int, vcpus: int, arch: str,
) -> None:  # fmt: skip
    """Boot ``disk`` once with the seed ISO and wait until the guest reports and powers off."""
    seed = work / "scratch" / "seed.iso"
    write_seed_iso(seed, (source / "user-data").read_bytes(), (source / "meta-data").read_bytes())
    vm_dir = work / "scratch" / "provision-vm"
    vm_dir.mkdir()
    runtime_iso = vm_dir / "runtime-config.iso"
    write_runtime_iso(runtime_iso, runtime_env(None, None), base_env())
    bundle = vm_dir / "bundle.phantom"
    make_phantom(bundle)
    manifest = Manifest(
        name="provisioning",
        arch=arch,
        disk=disk.name,
        ram_mb=ram_mb,
        vcpus=vcpus,
        boot=Boot(method="kernel", kernel="vmlinuz", initrd="initrd.img",
                  append=kernel_append(arch, KERNEL_APPEND.replace(" quiet loglevel=3", ""))),
        services=(),
        machine=guest_arch(arch).machine,
    )  # fmt: skip
    accel = detect_accel(accel_choice, arch)
    cfg = MachineConfig(
        qemu=qemu_binary(arch),
        cpu=cpu_model(arch, accel.name),
        manifest=manifest,
        image_dir=work,
        disk=disk,
        vm_dir=vm_dir,
        accel=accel.name,
        host_ports={},
        guest_ports={},
        runtime_iso=runtime_iso,
        seed=seed,
        bundle=bundle,
    )
    progress.step(f"accelerator {accel.name}: {accel.reason}")
    machine = Machine(cfg)
    machine.launch()
    try:
        watch(machine, timeout, progress)
    finally:
        machine.kill()


def watch(machine: Machine, timeout: float, progress: Progress) -> None:
    """Follow the serial console until the guest reported success and QEMU exited."""
    serial = machine.cfg.serial_log
    deadline = Deadline(timeout)
    seen_ok = False
    last_report = [0.0]
    text = ""

    def step() -> bool | None:
        nonlocal seen_ok, text
        text = serial.read_text(errors="replace")
        if FAIL_MARKER in text:
            line = next(ln for ln in text.splitlines() if FAIL_MARKER in ln)
            machine.wait(15)
            raise ProvisioningFailed(
                f"the guest reported a provisioning failure: {line.strip()}\n"
                f"serial log {serial}, last lines:\n{_tail(serial.read_text(errors='replace'))}\n"
                "Fix the failing step in cloud_init/, then run `stack-emulator build-image` again."
            )
        seen_ok = seen_ok or OK_MARKER in text
        if not machine.running():
            if seen_ok:
                return True
            raise ProvisioningFailed(
                f"QEMU exited (code {machine.process.poll() if machine.process else None}) "
                f"before the guest reported {OK_MARKER}.\nQEMU said: {machine.output()[-1000:]}\n"
                f"serial log {serial}, last lines:\n{_tail(text)}"
            )
        return None

    def report(elapsed: float) -> None:
        if elapsed - last_report[0] >= REPORT_EVERY_S:
            last_report[0] = elapsed
            progress.step(f"provisioning… {elapsed:.0f} s, last console line: {_last_line(text)}")

    def timed_out() -> BaseException:
        return ProvisioningTimeout(
            f"provisioning did not finish within {timeout:.0f} s and the guest reported no "
            f"failure. Serial log {serial}, last lines:\n{_tail(text)}\n"
            "The machine may be slow (TCG): raise --provision-timeout, or look for a hang in "
            "the log above."
        )

    poll(step, deadline, what="the provisioning boot", interval=0.5, on_timeout=timed_out, on_tick=report)
    progress.step(f"guest provisioned and powered off ({deadline.elapsed():.0f} s)")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:120]
    return "(nothing yet)"
