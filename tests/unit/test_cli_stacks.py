"""The stack commands' parts that need no VM: options, messages, IDs, env formats, leftovers."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from pytest_stack_emulator.cli import build_parser
from pytest_stack_emulator.cli_options import settings_from_args
from pytest_stack_emulator.cli_stacks import format_env
from pytest_stack_emulator.config import SPECS, resolve
from pytest_stack_emulator.errors import ConfigError
from pytest_stack_emulator.home import Home
from pytest_stack_emulator.procs import ProcessId
from pytest_stack_emulator.reap import reap
from pytest_stack_emulator.stack_owner import exit_status
from pytest_stack_emulator.stacks import StackNotFound, describe_vms, find_stack


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", ["start", "run", "capture"])
def test_every_plugin_option_exists_without_its_prefix(command: str) -> None:
    options = {o for a in subcommand(command)._actions for o in a.option_strings}
    for spec in SPECS:
        if spec.name != "enabled":
            assert spec.option.replace("--stack-emulator-", "--") in options


def test_cli_options_parse_like_the_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "stack.config.json"
    config.write_text("{}")
    monkeypatch.setenv("STACK_EMULATOR_RESTORE", "stream")
    monkeypatch.setenv("EMULATOR_NO_ROTATION", "0")
    args = build_parser().parse_args(["start", "--base-port", "31000", "--config-file", str(config)])
    settings = settings_from_args(args)
    assert (settings.base_port, settings.project_config) == (31000, config)
    assert (settings.restore, settings.rotate) == ("stream", True)  # the same env variables
    assert settings.sources["restore"] == "env STACK_EMULATOR_RESTORE"
    defaults = settings_from_args(build_parser().parse_args(["start"]))
    assert defaults.shutdown_timeout == resolve({}, {}, {}).shutdown_timeout


def test_messages_name_the_option_of_the_front_end_in_use() -> None:
    assert resolve({}, {}, {}, cli=True).option("rotate") == "--rotate"
    assert resolve({}, {}, {}).option("rotate") == "--stack-emulator-rotate"
    assert resolve({}, {}, {}, cli=True).option("project_config") == "--project-config"
    with pytest.raises(ConfigError, match=r"^--base-port: port 12 is out of range"):
        resolve({"base_port": "12"}, {}, {}, cli=True)
    with pytest.raises(ConfigError, match=r"^--stack-emulator-share: /no/such/dir is not a directory"):
        resolve({"share": "/no/such/dir"}, {}, {})


def test_run_takes_the_command_after_the_options() -> None:
    args = build_parser().parse_args(["run", "--base-port", "31000", "--", "npm", "test", "--", "-x"])
    assert args.command == ["--", "npm", "test", "--", "-x"]  # cmd_run drops the first "--"
    assert args.base_port == "31000"


def test_env_formats_read_back_in_their_languages(tmp_path: Path) -> None:
    env = {"STACK_API_URL": "http://127.0.0.1:26701", "ODD": "a b'c\"$d"}
    assert json.loads(format_env(env, "json")) == env
    script = tmp_path / "env.sh"
    script.write_text(format_env(env, "shell") + '\nprintf %s "$ODD"\n')
    assert subprocess.run(["sh", str(script)], capture_output=True, text=True).stdout == env["ODD"]
    lines = format_env(env, "dotenv").splitlines()
    assert lines[0] == "STACK_API_URL=http://127.0.0.1:26701"
    assert json.loads(lines[1].split("=", 1)[1]) == env["ODD"]  # quoted where it must be
    assert shlex.split(format_env(env, "shell"))[1] == f"STACK_API_URL={env['STACK_API_URL']}"


def test_exit_status_is_the_shells() -> None:
    assert (exit_status(0), exit_status(3), exit_status(-2), exit_status(-15)) == (0, 3, 130, 143)


def _vm_dir(home: Home, name: str, stack: bool, pid: int | None = None) -> Path:
    vm_dir = home.run / name
    vm_dir.mkdir(parents=True)
    me = ProcessId.of(pid or os.getpid())
    owner = {"owner": {"pid": me.pid, "start": me.start}, "qemu": {"pid": me.pid, "start": me.start},
             "session": "1-abc", "worker": "gw0", "created": 0, "ports": {"backend": 30001, "dashboard": 30000},
             "image": "compat", "restore": "mapped-ram"}  # fmt: skip
    (vm_dir / "owner.json").write_text(json.dumps(owner))
    if stack:
        record = {"id": name, "vm_dir": str(vm_dir), "mode": "detached", "owner_pid": me.pid,
                  "owner_start": me.start, "image": "compat", "restore": "mapped-ram", "started": 0,
                  "ports": {}, "project_id": "internal", "keys": {}, "env": {}, "services": []}  # fmt: skip
        (vm_dir / "stack.json").write_text(json.dumps(record))
    return vm_dir


def test_find_stack_by_id_prefix_or_the_only_one_with_clear_errors(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with pytest.raises(StackNotFound, match=r"no stack is running under .*start --detach"):
        find_stack(home, None, "status")
    _vm_dir(home, "100-aaa-cli", stack=True)
    assert find_stack(home, None, "status").id == "100-aaa-cli"
    _vm_dir(home, "100-abb-cli", stack=True)
    with pytest.raises(StackNotFound, match=r"2 stacks are running \(100-aaa-cli, 100-abb-cli\).*status ID"):
        find_stack(home, None, "status")
    with pytest.raises(StackNotFound, match="'100-a' matches 2 stacks"):
        find_stack(home, "100-a", "env")
    assert find_stack(home, "100-ab", "env").id == "100-abb-cli"
    _vm_dir(home, "7-xyz-gw0", stack=False)
    with pytest.raises(
        StackNotFound, match=r"7-xyz-gw0 is not a stack of this command: .*pytest session 1-abc"
    ):
        find_stack(home, "7-xyz", "stop")
    with pytest.raises(StackNotFound, match="no stack 'zzz' under"):
        find_stack(home, "zzz", "stop")


def test_ps_rows_say_who_owns_each_vm(tmp_path: Path) -> None:
    home = Home(tmp_path)
    _vm_dir(home, "100-aaa-cli", stack=True)
    _vm_dir(home, "7-xyz-gw0", stack=False)
    rows = {r.id: r for r in describe_vms(home, now=3600 * 3 + 300)}
    assert rows["100-aaa-cli"].owner == f"pid {os.getpid()} (detached)"
    assert rows["7-xyz-gw0"].owner == f"pid {os.getpid()} (pytest 1-abc gw0)"
    assert (rows["7-xyz-gw0"].ports, rows["7-xyz-gw0"].age, rows["7-xyz-gw0"].state) == (
        "30000-30001", "3h05m", "running")  # fmt: skip


def test_reap_removes_only_start_up_logs_nobody_holds(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.run.mkdir(parents=True)
    held, orphan = home.run / "1-aaa-cli.log", home.run / "2-bbb-cli.log"
    orphan.write_text("owner died\n")
    with held.open("wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a starting owner holds its log
        done = reap(home)
        assert held.exists()
    assert not orphan.exists()
    assert any(str(orphan) in line for line in done)
