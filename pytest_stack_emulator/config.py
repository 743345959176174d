"""Settings, resolved as command-line option > environment > ini file > default.

Every setting remembers where its value came from, for the pytest report header. Nothing here
imports pytest: the plugin and the CLI hand in what they read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arch import ARCHES
from .config_file import load_config_file
from .errors import ConfigError
from .machine import ACCELERATORS
from .ports import DEFAULT_BASE_PORT, MAX_BASE_PORT
from .snapshot import RESTORE_METHODS

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ConfigError(f"{value!r} is not a yes/no value; use one of 1, 0, true, false, yes, no")


def _not(value: str | bool) -> bool:
    return not parse_bool(value)


def _port(value: str | int) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a port number") from None
    if not 1024 <= port <= MAX_BASE_PORT:
        raise ConfigError(f"port {port} is out of range; pick a number from 1024 to {MAX_BASE_PORT}")
    return port


def _seconds(value: str | float) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise ConfigError(f"a timeout cannot be negative ({seconds})")
    return seconds


def _path(value: str | Path) -> Path:
    return Path(value).expanduser().absolute()


def _share(value: str | Path) -> Path:
    path = _path(value)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; give an existing directory")
    return path


def _project_config(value: str | Path) -> Path:
    """A Stack config file that can be read now (its config is read again at each start)."""
    return load_config_file(value).path


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ConfigError(f"{value!r} is not one of: {', '.join(choices)}")
        return value

    return parse


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    default: Any
    parse: Callable[[Any], Any]
    env: str | None = None
    env_parse: Callable[[str], Any] | None = None
    flag: bool = False
    metavar: str | None = None
    # More spellings of the stack-emulator command's option (upstream's), besides --<name>.
    cli_aliases: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return (
            "--stack-emulator"
            if self.name == "enabled"
            else "--stack-emulator-" + self.name.replace("_", "-")
        )

    @property
    def cli_option(self) -> str:
        """The stack-emulator command's option: the plugin's without ``--stack-emulator-``."""
        return "--" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "stack_emulator" if self.name == "enabled" else f"stack_emulator_{self.name}"

    @property
    def dest(self) -> str:
        return f"stack_emulator_{self.name}"


SPECS: tuple[Spec, ...] = (
    Spec("enabled", "Run tests that use the stack_emulator fixture (they are skipped otherwise)",
         False, parse_bool, env="STACK_EMULATOR", flag=True),
    Spec("image", "VM image: auto, compat, upstream, a .qcow2 path or a URL (default: auto, an "
         "image already in the store, else a freshly built compat image)", "auto", str,
         env="STACK_EMULATOR_IMAGE", metavar="SPEC"),
    Spec("home", "Directory for images, snapshots and run state (default: ~/.stack/emulator)",
         Path("~/.stack/emulator").expanduser(), _path, env="STACK_EMULATOR_HOME", metavar="DIR"),
    Spec("base_port", f"First host port; worker N tries base + 10*N first (default: {DEFAULT_BASE_PORT})",
         DEFAULT_BASE_PORT, _port, env="STACK_EMULATOR_BASE_PORT", metavar="PORT"),
    Spec("rotate", "Replace the placeholder API keys with fresh ones after each boot (default: off)",
         False, parse_bool, env="EMULATOR_NO_ROTATION", env_parse=_not, flag=True),
    Spec("cold", "Boot every VM cold instead of resuming a RAM snapshot",
         False, parse_bool, env="EMULATOR_NO_SNAPSHOT", flag=True),
    Spec("share", "Share this host directory with the guest at /host over 9p (default: nothing shared)",
         None, _share, metavar="DIR"),
    Spec("project_config", "Make the fixture's project from this Stack config file (stack.config.ts, .js "
         "or .json): one project per file path, given the file's config at every start (default: internal)",
         None, _project_config, env="STACK_EMULATOR_PROJECT_CONFIG", metavar="FILE",
         cli_aliases=("--config-file",)),
    Spec("arch", f"Guest architecture: auto (the host's), {', '.join(ARCHES)} (default: auto)", "auto",
         _choice(("auto", *ARCHES)), env="STACK_EMULATOR_ARCH", metavar="ARCH"),
    Spec("accel", f"Accelerator: {', '.join(ACCELERATORS)} (default: auto)", "auto",
         _choice(ACCELERATORS), env="STACK_EMULATOR_ACCEL", metavar="NAME"),
    Spec("restore", f"Snapshot restore: {', '.join(RESTORE_METHODS)} (default: auto: template where QEMU can, else mapped-ram, else stream)",
         "auto", _choice(RESTORE_METHODS), env="STACK_EMULATOR_RESTORE", metavar="METHOD"),
    Spec("boot_timeout", "Seconds a cold boot may take to become healthy (default: 300)",
         300.0, _seconds, env="EMULATOR_READY_TIMEOUT", metavar="SECONDS"),
    Spec("resume_timeout", "Seconds a snapshot resume may take to become healthy (default: 45)",
         45.0, _seconds, env="EMULATOR_SNAPSHOT_READY_TIMEOUT", metavar="SECONDS"),
    Spec("shutdown_timeout", "Seconds to wait for an ACPI power-down before quitting QEMU (default: 1)",
         1.0, _seconds, env="STACK_EMULATOR_SHUTDOWN_TIMEOUT", metavar="SECONDS"),
)  # fmt: skip
SPEC_BY_NAME = {s.name: s for s in SPECS}

# The front ends that read settings: the pytest plugin and the stack-emulator command.
PYTEST, CLI = "pytest", "cli"


@dataclass(frozen=True)
class Settings:
    enabled: bool = False
    image: str = "auto"
    home: Path = field(default_factory=lambda: Path("~/.stack/emulator").expanduser())
    base_port: int = DEFAULT_BASE_PORT
    rotate: bool = False
    cold: bool = False
    share: Path | None = None
    project_config: Path | None = None
    arch: str = "auto"
    accel: str = "auto"
    restore: str = "auto"
    boot_timeout: float = 300.0
    resume_timeout: float = 45.0
    shutdown_timeout: float = 1.0
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Which front end resolved these settings: messages name its options.
    front_end: str = field(default=PYTEST, compare=False)

    def option(self, name: str) -> str:
        """The option that sets ``name`` in the front end in use, for messages."""
        spec = SPEC_BY_NAME[name]
        return spec.cli_option if self.front_end == CLI else spec.option


def resolve(
    options: Mapping[str, Any],
    ini: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    cli: bool = False,
) -> Settings:
    """Resolve every setting. ``options``/``ini`` map setting names to raw values, None (or
    missing) when not given. ``cli``: errors name the stack-emulator command's options."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        raw, source, parse = options.get(spec.name), "option", spec.parse
        if raw is None and spec.env and environ.get(spec.env) not in (None, ""):
            raw, source, parse = environ[spec.env], f"env {spec.env}", spec.env_parse or spec.parse
        if raw is None and ini.get(spec.name) not in (None, ""):
            raw, source = ini[spec.name], f"ini {spec.ini}"
        if raw is None:
            values[spec.name], sources[spec.name] = spec.default, "default"
            continue
        try:
            values[spec.name] = parse(raw)
        except ConfigError as exc:
            option = spec.cli_option if cli else spec.option
            where = option if source == "option" else source
            raise ConfigError(f"{where}: {exc}") from None
        sources[spec.name] = source
    return Settings(**values, sources=sources, front_end=CLI if cli else PYTEST)
