"""The ``stack-emulator`` command: the same core as the pytest plugin."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import cli_stacks, emulator
from .arch import resolve_arch
from .cli_options import add_settings_options as _settings_options
from .cli_options import settings_from_args as _settings
from .errors import StackEmulatorError
from .log import console


def cmd_build_image(args: argparse.Namespace) -> int:
    settings = _settings(args)
    result = (
        emulator.Home(settings.home)
        .image_store()
        .build_compat(force=args.force, accel=settings.accel, provision_timeout=args.provision_timeout,
                      arch=resolve_arch(settings.arch, settings.option("arch")))
    )  # fmt: skip
    state = f"built in {result.seconds:.0f} s" if result.built else "up to date"
    print(f"{result.directory / result.manifest.disk} ({state})")
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    prepared = emulator.prepare(_settings(args))
    for line in prepared.describe():
        print(line)
    return 0 if prepared.snapshot is not None else 1


def cmd_reap(args: argparse.Namespace) -> int:
    home = emulator.Home(_settings(args).home)
    done = emulator.reap(home, include_kept=args.all)
    for line in done:
        print(line)
    if not done:
        print("nothing to clean up")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stack-emulator",
        description="Stack Auth emulator VMs: images, snapshots, stacks (start, status, env, run), bench",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Show debug output")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-image", help="Build the compat image from cloud_init/ (cached by input hash)")
    _settings_options(p, ("home", "arch", "accel"))
    p.add_argument("--force", action="store_true", help="Rebuild even if the inputs are unchanged")
    p.add_argument(
        "--provision-timeout",
        type=float,
        default=900.0,
        help="Seconds the provisioning boot may take",
    )
    p.set_defaults(func=cmd_build_image)

    p = sub.add_parser("capture", help="Get the image and capture its RAM snapshot")
    _settings_options(p)
    p.set_defaults(func=cmd_capture)

    cli_stacks.add_commands(sub)

    p = sub.add_parser("reap", help="Stop VMs whose owning process is gone and clean their run dirs")
    _settings_options(p, ("home",))
    p.add_argument("--all", action="store_true", help="Also remove run dirs kept after failed tests")
    p.set_defaults(func=cmd_reap)

    p = sub.add_parser("bench", help="Measure cold boot, capture, resume and teardown side by side")
    _settings_options(p, ("home", "arch"))
    p.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results"),
        help="Directory for JSON, Markdown, PNG",
    )
    p.add_argument("--repeat", type=int, default=5, help="Repetitions of each resume measurement")
    p.add_argument("--workers", default="1,2,4", help="Worker counts to resume at once")
    p.add_argument(
        "--quick",
        action="store_true",
        help="A small run: one repetition of each measurement",
    )
    p.set_defaults(func=cmd_bench)

    from .cli_images import add_commands

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, handlers=[console(sys.stderr, level)])
    # httpx logs every request at INFO; health polling would drown the progress lines.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args))
    except StackEmulatorError as exc:
        print(f"stack-emulator: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack-emulator: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
