"""arm64 guests: argv per accelerator (TCG here, HVF on macOS, KVM on arm64 Linux), the
accelerator choice on each host, the firmware lookup, and choosing the architecture.

HVF and KVM on arm64 cannot run on this amd64 host, so their argv is checked here and the
host is described to detect_accel; a real arm64 guest runs under TCG in tests/vm/test_arm64.py.
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_stack_emulator.arch import (
    cpu_model,
    find_firmware,
    firmware_candidates,
    host_arch,
    kernel_append,
    machine_type,
    resolve_arch,
)
from pytest_stack_emulator.argv import MachineConfig, build_argv
from pytest_stack_emulator.builder import read_packages
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.errors import ConfigError, HostSetupError, ImageError
from pytest_stack_emulator.images import ImageStore
from pytest_stack_emulator.machine import detect_accel
from pytest_stack_emulator.manifest import Boot, Manifest, stack_services, upstream_manifest
from pytest_stack_emulator.ports import block_ports
from pytest_stack_emulator.provision import KERNEL_APPEND

ARM64 = Manifest(
    name="compat", arch="arm64", disk="d.qcow2", ram_mb=1024, vcpus=2, machine="virt",
    boot=Boot("kernel", "vmlinuz", "initrd.img", kernel_append("arm64", KERNEL_APPEND)),
    services=stack_services(),
)  # fmt: skip


def arm64_argv(tmp_path: Path, accel: str, manifest: Manifest = ARM64, **kw: object) -> list[str]:
    cfg = MachineConfig(
        qemu="qemu-system-aarch64", manifest=manifest, image_dir=tmp_path / "img",
        disk=tmp_path / "disk.qcow2", vm_dir=tmp_path / "vm", accel=accel, cpu=cpu_model("arm64", accel),
        host_ports=block_ports(26710), guest_ports={"dashboard": 8101, "backend": 8102,
        "minio": 9090, "inbucket": 9001, "mock_oauth": 26704},
        runtime_iso=tmp_path / "r.iso", seed=tmp_path / "s", bundle=tmp_path / "b", **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return build_argv(cfg)


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize(
    ("accel", "machine", "cpu"),
    [
        ("hvf", "virt,highmem=off", "host"),
        ("kvm", "virt,gic-version=host", "host"),
        ("tcg", "virt", "max,pauth-impdef=on"),
    ],
)
def test_arm64_argv_per_accelerator(tmp_path: Path, accel: str, machine: str, cpu: str) -> None:
    argv = arm64_argv(tmp_path, accel)
    assert argv[0] == "qemu-system-aarch64"
    assert opt(argv, "-accel") == [accel]
    assert opt(argv, "-machine") == [machine]
    assert opt(argv, "-cpu") == [cpu]
    assert opt(argv, "-kernel") == [str(tmp_path / "img" / "vmlinuz")]
    assert "console=ttyAMA0" in opt(argv, "-append")[0]
    assert "console=ttyS0" not in opt(argv, "-append")[0]
    assert "-bios" not in argv


def test_arm64_keeps_the_snapshot_device_layout(tmp_path: Path) -> None:
    """The same drives and devices, in the same order, as amd64: the snapshot format."""
    argv = arm64_argv(tmp_path, "hvf")
    assert [d.split(",")[0] for d in opt(argv, "-drive")] == [
        f"file={tmp_path / 'disk.qcow2'}", f"file={tmp_path / 's'}", f"file={tmp_path / 'b'}",
        f"file={tmp_path / 'r.iso'}",
    ]  # fmt: skip
    devices = opt(argv, "-device")
    assert devices[0] == "virtio-net-pci,netdev=net0,romfile="
    assert devices[-1] == "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1"
    assert arm64_argv(tmp_path, "hvf", incoming=True) == [*argv, "-incoming", "defer"]


def test_arm64_template_clone_maps_the_ram_file(tmp_path: Path) -> None:
    argv = arm64_argv(tmp_path, "kvm", memory=tmp_path / "memory.img")
    assert opt(argv, "-machine") == ["virt,gic-version=host,memory-backend=ram0"]
    backend = opt(argv, "-object")[0]
    assert backend.startswith("memory-backend-file,id=ram0,size=1024M,")
    assert backend.endswith("share=off,readonly=on,rom=off")


def test_arm64_firmware_boot_adds_bios(tmp_path: Path) -> None:
    """Upstream's arm64 image: UEFI firmware, and 4 GiB of RAM, which does not fit below 4 GiB
    on ``virt`` (RAM starts at 1 GiB), so HVF keeps QEMU's high memory map there."""
    firmware = tmp_path / "QEMU_EFI.fd"
    upstream = upstream_manifest("arm64")
    assert upstream.ram_mb > 3072
    argv = arm64_argv(tmp_path, "hvf", manifest=upstream, firmware=firmware)
    assert opt(argv, "-bios") == [str(firmware)]
    assert argv.index("-bios") < argv.index("-boot")
    assert opt(argv, "-machine") == ["virt"]
    assert "-kernel" not in argv


@pytest.mark.parametrize(("ram_mb", "machine"), [(1024, "virt,highmem=off"), (3072, "virt,highmem=off"),
                                                  (3073, "virt"), (4096, "virt")])  # fmt: skip
def test_hvf_keeps_memory_low_only_where_the_ram_fits(ram_mb: int, machine: str) -> None:
    assert machine_type("arm64", "virt", "hvf", ram_mb) == machine
    assert machine_type("arm64", "virt", "kvm", ram_mb) == "virt,gic-version=host"


def test_amd64_is_unchanged_by_the_accelerator() -> None:
    assert machine_type("amd64", "q35", "kvm", 1024) == "q35"
    assert cpu_model("amd64", "kvm") == "max"
    assert cpu_model("amd64", "tcg") == "max"


def test_firmware_lookup(tmp_path: Path) -> None:
    assert find_firmware("amd64", "qemu-system-x86_64", []) is None
    missing, present, later = tmp_path / "a.fd", tmp_path / "b.fd", tmp_path / "c.fd"
    present.write_bytes(b"\0")
    later.write_bytes(b"\0")
    assert find_firmware("arm64", "qemu-system-aarch64", [missing, present, later]) == present
    with pytest.raises(HostSetupError, match=r"apt-get install qemu-efi-aarch64.*brew install qemu") as err:
        find_firmware("arm64", "qemu-system-aarch64", [missing])
    assert str(missing) in str(err.value)


def test_firmware_beside_a_homebrew_qemu_comes_first(tmp_path: Path) -> None:
    """Homebrew's layout: <prefix>/bin/qemu-system-aarch64 and <prefix>/share/qemu/*.fd."""
    qemu = tmp_path / "bin" / "qemu-system-aarch64"
    qemu.parent.mkdir()
    qemu.write_text("")
    firmware = tmp_path / "share" / "qemu" / "edk2-aarch64-code.fd"
    firmware.parent.mkdir(parents=True)
    firmware.write_bytes(b"\0")
    assert firmware_candidates(str(qemu))[0] == firmware
    assert find_firmware("arm64", str(qemu)) == firmware


def fake_qemu(tmp_path: Path, accelerators: str) -> str:
    """Stands in for Homebrew's qemu-system-aarch64 on a Mac, which cannot run here: it
    prints what `-accel help` prints there."""
    script = tmp_path / "qemu-system-aarch64"
    script.write_text(f"#!/bin/sh\nprintf 'Accelerators supported in QEMU binary:\\n{accelerators}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_apple_silicon_picks_hvf(tmp_path: Path) -> None:
    choice = detect_accel(
        "auto", "arm64", system="Darwin", host="arm64", qemu=fake_qemu(tmp_path, "tcg\\nhvf\\n")
    )
    assert (choice.name, choice.reason) == ("hvf", "macOS with Hypervisor.framework")


def test_a_mac_qemu_without_hvf_falls_back_to_tcg(tmp_path: Path) -> None:
    choice = detect_accel("auto", "arm64", system="Darwin", host="arm64", qemu=fake_qemu(tmp_path, "tcg\\n"))
    assert choice.name == "tcg"


def test_arm64_linux_with_kvm_picks_kvm(tmp_path: Path) -> None:
    """No vmx/svm check on arm64: those are x86 flags."""
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    choice = detect_accel(
        "auto", "arm64", system="Linux", host="arm64", cpuinfo="Features: fp asimd", kvm_path=str(kvm)
    )
    assert choice.name == "kvm"
    gone = detect_accel("auto", "arm64", system="Linux", host="arm64", kvm_path=str(tmp_path / "none"))
    assert gone.name == "tcg"


@pytest.mark.parametrize(("guest", "host"), [("arm64", "amd64"), ("amd64", "arm64")])
def test_a_foreign_guest_runs_under_tcg(tmp_path: Path, guest: str, host: str) -> None:
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    for system in ("Linux", "Darwin"):
        choice = detect_accel("auto", guest, system=system, host=host, kvm_path=str(kvm))
        assert choice.name == "tcg"
        assert f"guest arch {guest} differs from host arch {host}" in choice.reason


def test_host_arch_names() -> None:
    assert host_arch("x86_64") == "amd64"
    assert host_arch("aarch64") == "arm64"
    assert host_arch("arm64") == "arm64"  # macOS's platform.machine()


def test_arch_option_follows_the_host_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve({}, {}, {}).arch == "auto"
    assert resolve_arch("auto") == host_arch()
    assert resolve({"arch": "arm64"}, {}, {}).arch == "arm64"
    assert resolve({}, {}, {"STACK_EMULATOR_ARCH": "arm64"}).arch == "arm64"
    with pytest.raises(
        ConfigError, match=r"--stack-emulator-arch: 'riscv64' is not one of: auto, amd64, arm64"
    ):
        resolve({"arch": "riscv64"}, {}, {})
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    with pytest.raises(HostSetupError, match="pass --stack-emulator-arch amd64 or arm64"):
        resolve_arch("auto")


def test_packages_name_the_guest_kernel(tmp_path: Path) -> None:
    (tmp_path / "packages").write_text("# kernel\nlinux-image-{arch} zstd  # comment\npython3\n")
    assert read_packages(tmp_path, "arm64") == ["linux-image-arm64", "zstd", "python3"]
    assert read_packages(tmp_path, "amd64")[0] == "linux-image-amd64"


def test_an_image_of_the_other_arch_is_refused_when_an_arch_is_asked_for(tmp_path: Path) -> None:
    disk = tmp_path / "stack-emulator-arm64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    store = ImageStore(tmp_path / "images", tmp_path / "locks")
    assert store.resolve(str(disk)).manifest.arch == "arm64"  # auto: the image decides
    assert store.resolve(str(disk), arch="arm64").manifest.machine == "virt"
    with pytest.raises(ImageError, match=r"is an arm64 image \(its manifest or file name says so\), but "
                       r"--stack-emulator-arch asks for amd64"):  # fmt: skip
        store.resolve(str(disk), arch="amd64", arch_option="--stack-emulator-arch")
    # A name that does not say: the arch asked for, else amd64.
    plain = tmp_path / "my-image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(plain), "16M"], check=True)
    assert store.resolve(str(plain), arch="arm64").manifest.arch == "arm64"
    assert store.resolve(str(plain)).manifest.arch == "amd64"


def test_existing_looks_for_the_asked_arch(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    disk = images / "stack-emulator-arm64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    store = ImageStore(images, tmp_path / "locks")
    assert store.existing("amd64") is None
    found = store.existing("arm64")
    assert found is not None
    assert found.disk == disk


def test_a_manifest_without_a_machine_gets_its_architectures(tmp_path: Path) -> None:
    """A release's manifest may leave out ``machine``: q35 would not start an arm64 guest."""
    data = json.loads(ARM64.to_json())
    del data["machine"]
    assert Manifest.from_dict(data).machine == "virt"
    data["arch"] = "amd64"
    assert Manifest.from_dict(data).machine == "q35"
