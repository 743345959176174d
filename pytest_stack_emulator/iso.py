"""ISO 9660 images written in memory with pycdlib, no host tool.

Two ISOs are made: the runtime configuration disk (label ``STACKCFG``, CONTRACT §2) and the
cloud-init NoCloud seed (label ``cidata``). Both carry ISO 9660, Joliet and Rock Ridge names.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pycdlib

RUNTIME_LABEL = "STACKCFG"
SEED_LABEL = "cidata"
# The runtime ISO is padded to a fixed size so that every worker's copy has the capacity the
# snapshot was captured with.
RUNTIME_ISO_SIZE = 1024 * 1024
_ISO9660_BAD = re.compile(r"[^A-Z0-9_]")


def _iso9660_name(name: str, used: set[str]) -> str:
    """An ISO 9660 level-1 style name (8.3, upper case) that is unique in ``used``."""
    stem, _, ext = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
    stem = _ISO9660_BAD.sub("_", stem)[:8] or "FILE"
    ext = _ISO9660_BAD.sub("_", ext)[:3]
    candidate = f"{stem}.{ext}"
    n = 0
    while candidate in used:
        n += 1
        suffix = str(n)
        candidate = f"{stem[: 8 - len(suffix)]}{suffix}.{ext}"
    used.add(candidate)
    return candidate


def build_iso(files: Mapping[str, bytes], label: str, pad_to: int | None = None) -> bytes:
    """Return the bytes of an ISO holding ``files`` (flat names only) under ``label``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    used: set[str] = set()
    try:
        for name, data in sorted(files.items()):
            if "/" in name or not name:
                raise ValueError(f"ISO file names must be flat, got {name!r}")
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                f"/{_iso9660_name(name, used)};1",
                rr_name=name,
                joliet_path=f"/{name}",
            )
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    data = out.getvalue()
    if pad_to is not None:
        if len(data) > pad_to:
            raise ValueError(f"ISO is {len(data)} bytes, larger than its fixed size {pad_to}")
        data += b"\0" * (pad_to - len(data))
    return data


def read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    """Return the volume label and the files (by Rock Ridge name) of an ISO made here."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files: dict[str, bytes] = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot() or child.is_dir():
                continue
            name = child.rock_ridge.name().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            files[name] = buf.getvalue()
    finally:
        iso.close()
    return label, files


def render_env(values: Mapping[str, str]) -> bytes:
    """``KEY=VALUE`` lines. Values with a newline are refused: the guest reads one per line."""
    lines = []
    for key, value in values.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"bad environment variable name {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"the value of {key} has a line break")
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_runtime_iso(
    path: Path, runtime_env: Mapping[str, str], base_env: Mapping[str, str] | bytes
) -> None:
    """The STACKCFG ISO; ``base_env`` as bytes is written as it is (an image's own file)."""
    base = base_env if isinstance(base_env, bytes) else render_env(base_env)
    data = build_iso(
        {"runtime.env": render_env(runtime_env), "base.env": base},
        RUNTIME_LABEL,
        pad_to=RUNTIME_ISO_SIZE,
    )
    write_atomic(path, data)


def write_seed_iso(path: Path, user_data: bytes, meta_data: bytes) -> None:
    write_atomic(path, build_iso({"user-data": user_data, "meta-data": meta_data}, SEED_LABEL))
