from pathlib import Path

import pytest

from pytest_stack_emulator.config import Settings, resolve
from pytest_stack_emulator.errors import ConfigError


def test_defaults() -> None:
    s = resolve({}, {}, {})
    assert s == Settings()
    assert s.home == Path("~/.stack/emulator").expanduser()
    assert set(s.sources.values()) == {"default"}


def test_option_beats_env_beats_ini() -> None:
    env = {"STACK_EMULATOR_BASE_PORT": "27000", "STACK_EMULATOR_ACCEL": "kvm"}
    ini = {"base_port": "28000", "accel": "hvf", "image": "compat"}
    s = resolve({"base_port": 29000}, ini, env)
    assert (s.base_port, s.accel, s.image) == (29000, "kvm", "compat")
    assert s.sources["base_port"] == "option"
    assert s.sources["accel"] == "env STACK_EMULATOR_ACCEL"
    assert s.sources["image"] == "ini stack_emulator_image"


@pytest.mark.parametrize(
    ("env", "rotate"),
    [({}, False), ({"EMULATOR_NO_ROTATION": "1"}, False), ({"EMULATOR_NO_ROTATION": "0"}, True)],
)
def test_rotation_follows_upstream_no_rotation_variable(env: dict[str, str], rotate: bool) -> None:
    assert resolve({}, {}, env).rotate is rotate


def test_enable_and_cold_from_env_and_ini() -> None:
    assert resolve({}, {}, {"STACK_EMULATOR": "1", "EMULATOR_NO_SNAPSHOT": "1"}).enabled
    assert resolve({}, {}, {"EMULATOR_NO_SNAPSHOT": "1"}).cold
    assert resolve({}, {"enabled": "true"}, {}).enabled


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"accel": "xen"}, {}, "--stack-emulator-accel: 'xen' is not one of: auto, kvm, hvf, tcg"),
        ({"base_port": "80"}, {}, "--stack-emulator-base-port: port 80 is out of range"),
        ({}, {"STACK_EMULATOR": "maybe"}, "env STACK_EMULATOR: 'maybe' is not a yes/no value"),
        ({"boot_timeout": "-1"}, {}, "cannot be negative"),
        ({"restore": "rsync"}, {}, "auto, template, mapped-ram, stream"),
    ],
)
def test_bad_values_name_the_setting_and_the_choices(
    options: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(options, {}, env)


def test_share_must_be_an_existing_directory(tmp_path: Path) -> None:
    assert resolve({"share": str(tmp_path)}, {}, {}).share == tmp_path
    with pytest.raises(ConfigError, match="not a directory"):
        resolve({"share": str(tmp_path / "missing")}, {}, {})
