from pathlib import Path

import pytest

from pytest_stack_emulator.machine import detect_accel, host_arch

INTEL = "processor: 0\nflags\t\t: fpu vme de pse tsc msr vmx sse2\n"
AMD = "flags\t\t: fpu svm sse2\n"
PARAVIRT = "flags\t\t: fpu vme de pse tsc msr hypervisor sse2\n"


@pytest.fixture
def kvm(tmp_path: Path) -> str:
    dev = tmp_path / "kvm"
    dev.write_text("")
    return str(dev)


pytestmark = pytest.mark.skipif(host_arch() != "amd64", reason="x86 host rules")


@pytest.mark.parametrize("cpuinfo", [INTEL, AMD])
def test_kvm_needs_writable_device_and_vmx_or_svm(kvm: str, cpuinfo: str) -> None:
    choice = detect_accel("auto", "amd64", system="Linux", cpuinfo=cpuinfo, kvm_path=kvm)
    assert choice.name == "kvm"


def test_paravirtual_kvm_without_flags_falls_back_to_tcg(kvm: str) -> None:
    choice = detect_accel("auto", "amd64", system="Linux", cpuinfo=PARAVIRT, kvm_path=kvm)
    assert choice.name == "tcg"
    assert "vmx/svm" in choice.reason


def test_missing_device_means_tcg(tmp_path: Path) -> None:
    choice = detect_accel("auto", "amd64", system="Linux", cpuinfo=INTEL, kvm_path=str(tmp_path / "nope"))
    assert choice.name == "tcg"
    assert "not writable" in choice.reason


def test_other_guest_arch_means_tcg(kvm: str) -> None:
    assert detect_accel("auto", "arm64", system="Linux", cpuinfo=INTEL, kvm_path=kvm).name == "tcg"


def test_explicit_choice_wins(kvm: str) -> None:
    choice = detect_accel("kvm", "amd64", system="Linux", cpuinfo=PARAVIRT, kvm_path=kvm)
    assert (choice.name, choice.reason) == ("kvm", "asked for explicitly")


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, kvm, hvf, tcg"):
        detect_accel("xen")


def test_this_machine_picks_tcg_when_its_cpu_lacks_vmx_and_svm() -> None:
    flags = Path("/proc/cpuinfo").read_text()
    if " vmx" in flags or " svm" in flags:
        pytest.skip("this host can really virtualise")
    assert detect_accel("auto").name == "tcg"
