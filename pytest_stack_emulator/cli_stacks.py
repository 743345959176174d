"""The stack commands of ``stack-emulator``: start, stop, status, reset, ps, env, run.

Thin: the work is done by :mod:`.stack_owner` (hosting a stack, stop and reset requests),
:mod:`.detached` (``start --detach``) and :mod:`.stacks` (descriptions, IDs, ``ps``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from typing import TextIO

from .cli_options import add_settings_options, settings_from_args
from .contract import PLACEHOLDER_KEYS
from .detached import spawn
from .errors import StackEmulatorError
from .health import check_services
from .home import Home
from .procs import ProcessId
from .stack_owner import QEMU_EXITED, Events, hosted, request_reset, run_command, stop_stack
from .stacks import StackRecord, age, describe_vms, find_stack, read_owner, stacks

ID_HELP = "The stack's ID (its run directory's name) or a unique prefix; default: the only running stack"


def _home(args: argparse.Namespace) -> Home:
    return Home(settings_from_args(args).home)


# A secret key that is not a placeholder (rotated, or a config file's project) is not printed
# where logs keep it; `env` prints it on request and `run` hands it to the command.
NOT_PRINTED = "(secret: not printed; `stack-emulator env {id}` prints it, `run -- CMD` passes it on)"
SECRET_KEYS = ("secret_server_key", "super_secret_admin_key")
SECRET_ENV = ("STACK_SECRET_SERVER_KEY",)


def printable(record: StackRecord) -> StackRecord:
    """``record`` with its secret keys left out, unless they are the public placeholders."""
    hidden = NOT_PRINTED.format(id=record.id)
    keys = {
        k: hidden if k in SECRET_KEYS and v != PLACEHOLDER_KEYS.get(k) else v for k, v in record.keys.items()
    }
    secrets = {record.keys.get(k) for k in SECRET_KEYS} - {PLACEHOLDER_KEYS.get(k) for k in SECRET_KEYS}
    env = {k: hidden if k in SECRET_ENV and v in secrets else v for k, v in record.env.items()}
    return replace(record, keys=keys, env=env)


def print_stack(record: StackRecord, as_json: bool, out: TextIO) -> None:
    """What ``start`` and ``run`` print: URLs, keys (secret ones only when they are the
    placeholders), env, where it runs and how to stop it."""
    record = printable(record)
    if as_json:
        print(json.dumps(record.to_dict(), indent=2), file=out, flush=True)
        return
    took = record.timings.get("healthy")
    how = "cold boot" if record.restore == "cold" else f"resumed from a {record.restore} snapshot"
    lines = [f"stack {record.id}: {how}" + (f" in {took:.1f} s" if took else "")
             + f"; owner pid {record.owner_pid} ({record.mode})"]  # fmt: skip
    width = max(len(name) for name in record.urls)
    lines += [f"  {name:<{width}}  {url}" for name, url in record.urls.items()]
    lines.append(f"project {record.project_id}:")
    lines += [f"  {name.replace('_', ' '):<24}{key}" for name, key in record.keys.items()]
    lines.append("env:")
    lines += [f"  {name}={value}" for name, value in record.env.items()]
    lines.append(f"run dir: {record.vm_dir}")
    print("\n".join(lines), file=out, flush=True)


def cmd_start(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.detach:
        record = spawn(settings, on_output=lambda line: print(line, file=sys.stderr, flush=True))
        print_stack(record, args.json, sys.stdout)
        print(f"running in the background; `stack-emulator stop {record.id}` stops it", file=sys.stderr)
        return 0
    with hosted(settings, "foreground") as stack, Events() as events:
        print_stack(stack.record, args.json, sys.stdout)
        print(f"running; press Ctrl-C (or `stack-emulator stop {stack.record.id}`) to stop", file=sys.stderr,
              flush=True)  # fmt: skip
        event = stack.serve(events)
    return 1 if event == QEMU_EXITED else 0


def cmd_stop(args: argparse.Namespace) -> int:
    home = _home(args)
    if args.all:
        if args.id:
            raise StackEmulatorError("give an ID or --all, not both")
        todo = stacks(home)
        if not todo:
            print(f"no stack is running under {home.run}")
    else:
        todo = [find_stack(home, args.id, "stop")]
    for record in todo:
        for line in stop_stack(home, record):
            print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    record = find_stack(_home(args), args.id, "status")
    owner = read_owner(record.vm_dir)
    qemu_alive = owner is not None and ProcessId(owner["qemu"]["pid"], owner["qemu"]["start"]).alive()
    if not record.owner.alive() or not qemu_alive:
        gone = f"its owner pid {record.owner_pid} is gone" if not record.owner.alive() else "its QEMU exited"
        print(f"stack {record.id} is not running: {gone}. `stack-emulator reap` cleans up; "
              "`stack-emulator start --detach` starts a new one", file=sys.stderr)  # fmt: skip
        return 1
    results = check_services(record.health_checks())
    print(f"stack {record.id}: owner pid {record.owner_pid} ({record.mode}), up {age(record.started, time.time())}, "
          f"image {record.image}, restore {record.restore}")  # fmt: skip
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"  {r.name:<{width}}  {record.urls[r.name]:<24} {'up' if r.ok else 'DOWN':<5} {r.detail}")
    down = [r.name for r in results if not r.ok]
    if down:
        print(
            f"{len(down)} of {len(results)} services down: {', '.join(down)}; see {record.vm_dir}/serial.log"
        )
        return 1
    print(f"all {len(results)} services up")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    record = find_stack(Home(settings.home), args.id, "reset")
    print(f"resetting stack {record.id} to its captured state ...", file=sys.stderr, flush=True)
    seconds = request_reset(record, timeout=settings.resume_timeout + settings.boot_timeout)
    print(f"stack {record.id} reset to its captured state in {seconds:.2f} s")
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    home = _home(args)
    rows = describe_vms(home)
    if not rows:
        print(f"no VMs under {home.run}")
        return 0
    table = [("ID", "OWNER", "PORTS", "IMAGE", "RESTORE", "AGE", "STATE")]
    table += [(r.id, r.owner, r.ports, r.image, r.restore, r.age, r.state) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def format_env(env: dict[str, str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(env, indent=2)
    if fmt == "shell":
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())
    return "\n".join(
        f"{name}={json.dumps(value) if _needs_quotes(value) else value}" for name, value in env.items()
    )


def _needs_quotes(value: str) -> bool:
    return not value or any(c.isspace() or c in "\"'#$\\`" for c in value)


def cmd_env(args: argparse.Namespace) -> int:
    record = find_stack(_home(args), args.id, "env")
    if not record.owner.alive():
        raise StackEmulatorError(f"stack {record.id} is not running (owner pid {record.owner_pid} is gone)")
    print(format_env(record.env, args.format))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise StackEmulatorError("run needs a command: `stack-emulator run [OPTIONS] -- CMD [ARGS...]`")
    return run_command(settings_from_args(args), command,
                       on_ready=lambda record: print_stack(record, args.json, sys.stderr))  # fmt: skip


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the stack commands to the ``stack-emulator`` parser."""
    p = sub.add_parser("start", help="Start one stack and print its URLs, keys and env (Ctrl-C stops it)")
    add_settings_options(p)
    p.add_argument("--detach", action="store_true",
                   help="Leave the stack running in a background process and return once it is up")  # fmt: skip
    p.add_argument("--json", action="store_true", help="Print the stack's description as JSON")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", help="Stop a stack started by `start` or `run`")
    add_settings_options(p, ("home",))
    p.add_argument("id", nargs="?", help=ID_HELP)
    p.add_argument("--all", action="store_true", help="Stop every running stack of this command")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="Each service's health and URL; exit status 1 when any is down")
    add_settings_options(p, ("home",))
    p.add_argument("id", nargs="?", help=ID_HELP)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reset", help="Put a running stack back into its captured state (all data gone)")
    add_settings_options(p, ("home", "resume_timeout", "boot_timeout"))
    p.add_argument("id", nargs="?", help=ID_HELP)
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser(
        "ps", aliases=["list"], help="Every emulator VM under the home: owner, ports, image, age, state"
    )
    add_settings_options(p, ("home",))
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("env", help="The environment an app needs for a running stack")
    add_settings_options(p, ("home",))
    p.add_argument("--format", choices=("dotenv", "shell", "json"), default="dotenv",
                   help="dotenv (KEY=value, default), shell (export KEY='value') or json")  # fmt: skip
    p.add_argument("id", nargs="?", help=ID_HELP)
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("run", help="Start a stack, run CMD with its env, stop it; exit with CMD's status",
                       usage="stack-emulator run [OPTIONS] -- CMD [ARGS...]")  # fmt: skip
    add_settings_options(p)
    p.add_argument("--json", action="store_true", help="Describe the stack on stderr as JSON")
    p.add_argument("command", nargs=argparse.REMAINDER, help="The command and its arguments, after --")
    p.set_defaults(func=cmd_run)
