"""The image commands of ``stack-emulator``: ``pull``, ``images``, ``snapshot export|import``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .arch import ARCHES, resolve_arch
from .cli_options import add_settings_options as _settings_options
from .cli_options import settings_from_args as _settings
from .home import Home
from .inventory import list_images, list_snapshots, prune
from .log import human_bytes
from .pull import PullSpec
from .releases import DEFAULT_REPO
from .snapshot_transfer import export_snapshot, import_snapshot


def cmd_pull(args: argparse.Namespace) -> int:
    home = Home(_settings(args).home)
    spec = PullSpec(
        repo=args.repo,
        tag=args.tag,
        branch=args.branch,
        url=args.url,
        sha256=args.sha256,
        arch=resolve_arch(args.arch, "--arch"),
    )
    image = home.image_store().pull(spec, force=args.force)
    print(image.disk)
    return 0


def _size(s: Any) -> str:
    return f"{human_bytes(s.logical)} logical, {human_bytes(s.allocated)} allocated"


def cmd_images(args: argparse.Namespace) -> int:
    home = Home(_settings(args).home)
    images = list_images(home.image_store())
    snapshots = list_snapshots(home, images)
    if args.json:
        print(json.dumps({
            "images": [{"disk": str(e.image.disk), "name": e.image.manifest.name, "sha256": e.image.digest,
                        "current": e.current, "origin": e.origin, "logical": e.sizes.logical,
                        "allocated": e.sizes.allocated} for e in images],
            "snapshots": [{"id": e.directory.name, "directory": str(e.directory), "key": e.key, "usable": e.usable,
                           "problem": e.problem, "logical": e.sizes.logical, "allocated": e.sizes.allocated}
                          for e in snapshots],
        }, indent=2))  # fmt: skip
    else:
        print(f"images in {home.images}:" if images else f"no images in {home.images}")
        for e in images:
            mark = "*" if e.current else " "
            print(f"{mark} {e.image.disk}\n    {e.image.manifest.name}, sha256 {e.image.digest[:12]}, "
                  f"{e.origin}; {_size(e.sizes)}")  # fmt: skip
        print(f"snapshots in {home.snapshots}:" if snapshots else f"no snapshots in {home.snapshots}")
        for s in snapshots:
            k = s.key
            what = (f"image {str(k.get('image_digest'))[:12]}, QEMU {k.get('qemu_version')}, {k.get('accel')}, "
                    f"{k.get('restore_method')}, {k.get('ram_mb')} MiB") if k else "staging"  # fmt: skip
            age = (
                f", {(time.time() - float(s.meta['created'])) / 3600:.1f} h old"
                if "created" in s.meta
                else ""
            )
            state = f"unusable: {s.problem}" if not s.usable else "usable" if k else "in use"
            print(f"  {s.directory.name}: {what}{age}; {_size(s.sizes)}; {state}")
    if args.prune:
        removed = prune(home, snapshots)
        for path, why in removed:
            print(f"removed {path} ({why})")
        freed = sum((s.sizes.allocated for s in snapshots if any(s.directory == p for p, _ in removed)), 0)
        print(
            f"pruned {len(removed)} snapshot(s), {human_bytes(freed)} freed"
            if removed
            else "nothing to prune"
        )
    return 0


def cmd_snapshot_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    header = export_snapshot(Home(settings.home), settings, args.file, args.id)
    print(f"{args.file}: snapshot {header['id']} ({args.file.stat().st_size} bytes)")
    return 0


def cmd_snapshot_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(import_snapshot(Home(settings.home), settings, args.file))
    return 0


def add_commands(sub: Any) -> None:
    """Add ``pull``, ``images`` and ``snapshot`` to the ``stack-emulator`` subcommands."""
    p = sub.add_parser(
        "pull",
        help="Download an image: a GitHub release asset, or any URL; resumable, verified",
        description="Download stack-emulator-<arch>.qcow2 (or .qcow2.zst) of a GitHub release through "
        "the releases API (GITHUB_TOKEN as a bearer token), or any URL, with upstream's base.env of the "
        "same tag beside it. An interrupted download resumes; a known sha256 is checked.",
    )
    _settings_options(p, ("home",))
    p.add_argument("--repo", default=DEFAULT_REPO, metavar="OWNER/NAME", help=f"default {DEFAULT_REPO}")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--tag", help="release tag (default emulator-<branch>-latest)")
    which.add_argument("--branch", help="release branch (default dev, or STACK_EMULATOR_BRANCH)")
    p.add_argument("--url", help="download this .qcow2 or .qcow2.zst instead; --tag then names the "
                   "tag whose base.env goes with it")  # fmt: skip
    p.add_argument("--sha256", metavar="HEX", help="sha256 of the file downloaded; else a .sha256 sibling's")
    p.add_argument("--arch", choices=("auto", *ARCHES), default="auto", help="default auto: the host's")
    p.add_argument("--force", action="store_true", help="download again even if the store has this asset")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser(
        "images", help="List images and snapshots with their sizes; --prune drops unusable snapshots"
    )
    _settings_options(p, ("home",))
    p.add_argument(
        "--prune", action="store_true", help="remove snapshots that no current QEMU or image can use"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("snapshot", help="Export a captured snapshot to one file, or import one")
    ops = p.add_subparsers(dest="snapshot_command", required=True)
    q = ops.add_parser("export", help="Pack the snapshot this host resumes (or --id) into one zstd file")
    _settings_options(q, ("home", "image", "arch", "accel", "restore"))
    q.add_argument("file", type=Path, help="the file to write (for example snapshot.zst)")
    q.add_argument("--id", help="the snapshot to export (an id from `stack-emulator images`)")
    q.set_defaults(func=cmd_snapshot_export)
    q = ops.add_parser("import", help="Unpack an exported snapshot; refused unless its key fits this host")
    _settings_options(q, ("home", "image", "arch", "accel"))
    q.add_argument("file", type=Path, help="a file written by `snapshot export`")
    q.set_defaults(func=cmd_snapshot_import)
