"""One snapshot directory as one zstd-compressed file, and back.

Every regular file of the directory is packed, whatever the restore method wrote, so that a
new method's files travel too. The stream (one zstd frame with a checksum) holds:

- ``STACK-EMULATOR-SNAPSHOT 1`` and a newline;
- one line of JSON: the directory's name, its key (from ``meta.json``) and its files
  (relative path, size, mode), so that ``read_header`` knows the key without unpacking;
- per file, in that order: records of (offset, length) as two little-endian u64 and then
  ``length`` bytes, ending with a record of length 0.

Holes and all-zero blocks are left out (``SEEK_DATA``/``SEEK_HOLE`` where the file system
has them), so a sparse 1 GiB RAM file packs into what it holds and is sparse again when
unpacked: records are written at their offsets and the file is truncated to its size.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import zstandard

from .errors import SnapshotError
from .log import Progress, Transfer

MAGIC = b"STACK-EMULATOR-SNAPSHOT 1\n"
RECORD = struct.Struct("<QQ")
BLOCK = 64 * 1024
RECORD_MAX = 4 * 1024 * 1024
ZERO = bytes(BLOCK)


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of a file that hold data; all of it without SEEK_DATA."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here on
                return
            yield pos, size
            return
        yield start, min(end, size)
        pos = end


def _records(f: IO[bytes], size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of the non-zero runs of ``f``, each at most RECORD_MAX long."""
    for start, end in data_ranges(f.fileno(), size):
        f.seek(start)
        run_start, run = start, bytearray()
        pos = start
        while pos < end:
            block = f.read(min(BLOCK, end - pos))
            if not block:
                break
            if block == ZERO[: len(block)]:
                if run:
                    yield run_start, bytes(run)
                    run = bytearray()
            else:
                if not run:
                    run_start = pos
                run += block
                if len(run) >= RECORD_MAX:
                    yield run_start, bytes(run)
                    run = bytearray()
            pos += len(block)
        if run:
            yield run_start, bytes(run)


def _files(directory: Path) -> list[Path]:
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise SnapshotError(f"{path} is a symlink; a snapshot directory holds regular files only")
        if path.is_file():
            files.append(path)
    return files


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if not isinstance(meta.get("key"), dict):
            raise ValueError("no key")
        return dict(meta)
    except (OSError, ValueError) as exc:
        raise SnapshotError(
            f"{directory} is not a captured snapshot ({directory / 'meta.json'}: {exc}). Capture one "
            "with `stack-emulator capture`."
        ) from None


def pack(directory: Path, out: Path, progress: Progress, level: int = 3) -> dict[str, Any]:
    """Write ``directory`` to ``out`` (through ``out``'s ``.tmp`` and a rename); the header."""
    meta = read_meta(directory)
    files = _files(directory)
    header = {
        "format": 1,
        "id": directory.name,
        "key": meta["key"],
        "files": [
            {
                "path": p.relative_to(directory).as_posix(),
                "size": p.stat().st_size,
                "mode": p.stat().st_mode & 0o777,
            }
            for p in files
        ],
    }
    allocated = sum(p.stat().st_blocks * 512 for p in files)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tmp.open("wb") as raw:
            cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
            with cctx.stream_writer(raw, closefd=False) as z:
                z.write(MAGIC + json.dumps(header).encode() + b"\n")
                bar = Transfer(progress, f"pack {directory.name}", allocated)
                done = 0
                for path in files:
                    with path.open("rb") as f:
                        for offset, data in _records(f, path.stat().st_size):
                            z.write(RECORD.pack(offset, len(data)))
                            z.write(data)
                            done += len(data)
                            bar.update(done)
                    z.write(RECORD.pack(0, 0))
                bar.finish()
        os.replace(tmp, out)
    except OSError as exc:
        raise SnapshotError(f"writing {out} failed: {exc}. Check the path and the free space.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return header


class _Reader:
    def __init__(self, source: Path) -> None:
        self.source = source
        self.raw = source.open("rb")
        self.z = zstandard.ZstdDecompressor().stream_reader(self.raw, read_across_frames=True)

    def exact(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = self.z.read(left)
            if not chunk:
                raise SnapshotError(f"{self.source} ends early: it is truncated. Export it again.")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def header(self) -> dict[str, Any]:
        if self.exact(len(MAGIC)) != MAGIC:
            raise SnapshotError(
                f"{self.source} is not a snapshot exported by `stack-emulator snapshot export`"
            )
        line = bytearray()
        while not line.endswith(b"\n"):
            line += self.exact(1)
            if len(line) > 1 << 20:
                raise SnapshotError(f"{self.source} has no valid header")
        try:
            header: dict[str, Any] = json.loads(line)
            for entry in header["files"]:
                entry["path"] = _safe_path(str(entry["path"]))
            return header
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{self.source} has no valid header ({exc})") from None

    def close(self) -> None:
        self.z.close()  # type: ignore[no-untyped-call]
        self.raw.close()


def _safe_path(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"unsafe path {path!r}")
    return p.as_posix()


@contextlib.contextmanager
def _open(source: Path) -> Iterator[_Reader]:
    try:
        reader = _Reader(source)
    except OSError as exc:
        raise SnapshotError(f"cannot read {source}: {exc}") from None
    try:
        yield reader
    except zstandard.ZstdError as exc:
        raise SnapshotError(f"{source} is corrupt ({exc}). Export it again.") from None
    finally:
        reader.close()


def read_header(source: Path) -> dict[str, Any]:
    """The header of an exported snapshot: its id, key and files."""
    with _open(source) as reader:
        return reader.header()


def unpack(source: Path, target: Path, progress: Progress) -> dict[str, Any]:
    """Write the files of ``source`` into the empty directory ``target``; the header."""
    with _open(source) as reader:
        header = reader.header()
        bar = Transfer(progress, f"unpack {header.get('id')}", None)
        done = 0
        for entry in header["files"]:
            path = target / entry["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            size = int(entry["size"])
            with path.open("wb") as f:
                while True:
                    offset, length = RECORD.unpack(reader.exact(RECORD.size))
                    if length == 0:
                        break
                    if offset + length > size:
                        raise SnapshotError(
                            f"{source} is corrupt: a record of {entry['path']} ends past its size"
                        )
                    f.seek(offset)
                    f.write(reader.exact(length))
                    done += length
                    bar.update(done)
                f.truncate(size)
            os.chmod(path, int(entry.get("mode", 0o644)) | 0o200)
        if reader.z.read(1):
            raise SnapshotError(f"{source} has data after its last file: it is corrupt. Export it again.")
        bar.finish()
        return header
