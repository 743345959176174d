from pathlib import Path

from pytest_stack_emulator.argv import MachineConfig, build_argv, hostfwd
from pytest_stack_emulator.manifest import Boot, Manifest, stack_services, upstream_manifest
from pytest_stack_emulator.ports import block_ports


def config(tmp_path: Path, manifest: Manifest, **kw: object) -> MachineConfig:
    defaults: dict[str, object] = dict(
        qemu="qemu-system-x86_64", manifest=manifest, image_dir=tmp_path / "img",
        disk=tmp_path / "disk.qcow2", vm_dir=tmp_path / "vm", accel="tcg",
        host_ports=block_ports(26710), guest_ports={"dashboard": 8101, "backend": 8102,
        "minio": 9090, "inbucket": 9001, "mock_oauth": 26704},
        runtime_iso=tmp_path / "r.iso", seed=tmp_path / "s", bundle=tmp_path / "b",
    )  # fmt: skip
    defaults.update(kw)
    return MachineConfig(**defaults)  # type: ignore[arg-type]


COMPAT = Manifest(
    name="compat", arch="amd64", disk="d.qcow2", ram_mb=1024, vcpus=2,
    boot=Boot("kernel", "vmlinuz", "initrd.img", "root=/dev/vda"), services=stack_services(),
)  # fmt: skip


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_snapshot_layout_devices_in_contract_order(tmp_path: Path) -> None:
    argv = build_argv(config(tmp_path, COMPAT))
    drives = opt(argv, "-drive")
    assert [d.split(",")[0] for d in drives] == [
        f"file={tmp_path / 'disk.qcow2'}", f"file={tmp_path / 's'}", f"file={tmp_path / 'b'}",
        f"file={tmp_path / 'r.iso'}",
    ]  # fmt: skip
    assert all("if=virtio" in d for d in drives)
    assert all("readonly=on" in d for d in drives[1:])
    devices = opt(argv, "-device")
    assert devices[-1] == "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1"
    assert "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0" in devices
    assert opt(argv, "-m") == ["1024"]
    assert opt(argv, "-smp") == ["2"]
    assert opt(argv, "-kernel") == [str(tmp_path / "img" / "vmlinuz")]
    assert "-incoming" not in argv
    assert "-fsdev" not in argv


def test_resume_adds_only_incoming_defer(tmp_path: Path) -> None:
    cold = build_argv(config(tmp_path, COMPAT))
    resume = build_argv(config(tmp_path, COMPAT, incoming=True))
    assert resume == [*cold, "-incoming", "defer"]


def test_hostfwd_binds_loopback_only_and_maps_each_service(tmp_path: Path) -> None:
    argv = build_argv(config(tmp_path, COMPAT))
    netdev = opt(argv, "-netdev")[0]
    assert netdev.startswith("user,id=net0,")
    for rule in ("tcp:127.0.0.1:26710-:8101", "tcp:127.0.0.1:26711-:8102", "tcp:127.0.0.1:26712-:9090",
                 "tcp:127.0.0.1:26713-:9001", "tcp:127.0.0.1:26714-:26704"):  # fmt: skip
        assert f"hostfwd={rule}" in netdev
    assert hostfwd({}, {}) == "user,id=net0"


def test_share_adds_fsdev_for_the_named_directory_only(tmp_path: Path) -> None:
    argv = build_argv(config(tmp_path, COMPAT, share_dir=tmp_path / "shared"))
    assert opt(argv, "-fsdev") == [f"local,id=hostfs,path={tmp_path / 'shared'},security_model=none"]


def test_upstream_image_boots_from_disk_with_its_pinned_size(tmp_path: Path) -> None:
    argv = build_argv(config(tmp_path, upstream_manifest()))
    assert "-kernel" not in argv
    assert opt(argv, "-boot") == ["order=c"]
    assert (opt(argv, "-m"), opt(argv, "-smp"), opt(argv, "-machine")) == (["4096"], ["4"], ["q35"])


def test_long_run_dirs_get_short_socket_paths(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    cfg = config(tmp_path, COMPAT, vm_dir=deep)
    assert len(str(cfg.qmp_socket)) < 108
    assert cfg.serial_log == deep / "serial.log"


def test_template_capture_writes_ram_through_a_shared_file(tmp_path: Path) -> None:
    argv = build_argv(config(tmp_path, COMPAT, memory=tmp_path / "memory.img", memory_shared=True))
    assert opt(argv, "-machine") == ["q35,memory-backend=ram0"]
    assert opt(argv, "-object") == [
        f"memory-backend-file,id=ram0,size=1024M,mem-path={tmp_path / 'memory.img'},share=on"
    ]
    assert opt(argv, "-m") == ["1024"]


def test_template_clones_map_the_ram_file_read_only_and_copy_on_write(tmp_path: Path) -> None:
    memory = tmp_path / "a,b" / "memory.img"
    argv = build_argv(config(tmp_path, COMPAT, memory=memory, incoming=True))
    assert opt(argv, "-object") == [
        f"memory-backend-file,id=ram0,size=1024M,mem-path={tmp_path / 'a,,b' / 'memory.img'},"
        "share=off,readonly=on,rom=off"
    ]
    assert "-incoming" in argv
    # Anonymous RAM (mapped-ram, stream, cold boot) names no backend.
    plain = build_argv(config(tmp_path, COMPAT))
    assert opt(plain, "-object") == []
    assert opt(plain, "-machine") == ["q35"]
