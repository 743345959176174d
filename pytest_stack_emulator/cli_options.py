"""The stack-emulator command's settings options, generated from config.SPECS as the plugin's are.

Each plugin option ``--stack-emulator-<name>`` is ``--<name>`` here, with the same environment
variable and default; config parses and checks every value.
"""

from __future__ import annotations

import argparse

from .config import SPEC_BY_NAME, SPECS, Settings, resolve

# Every setting but ``enabled``.
ALL_SETTINGS = tuple(s.name for s in SPECS if s.name != "enabled")


def add_settings_options(p: argparse.ArgumentParser, names: tuple[str, ...] = ALL_SETTINGS) -> None:
    """Add ``--<setting>`` options (and their aliases) from config.SPECS."""
    for spec in (SPEC_BY_NAME[name] for name in names):
        flags = (spec.cli_option, *spec.cli_aliases)
        if spec.flag:
            p.add_argument(*flags, action="store_true", default=None, dest=spec.name, help=spec.help)
        else:
            p.add_argument(*flags, dest=spec.name, metavar=spec.metavar, help=spec.help)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve the settings: option > environment > default. Messages name the CLI's options."""
    options = {name: getattr(args, name, None) for name in SPEC_BY_NAME}
    return resolve({**options, "enabled": True}, {}, cli=True)
