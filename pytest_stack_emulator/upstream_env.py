"""Upstream's base environment (``base.env``) for an image pulled from a release tag.

Upstream's run script copied ``docker/local-emulator/.env.development`` onto the runtime ISO
as ``base.env``. Since March 2026 that file is not committed: CI writes it with
``docker/local-emulator/generate-env-development.mjs`` from ``apps/backend/.env.development``
and ``apps/dashboard/.env.development`` before it builds the image. So for a tag this module
takes the committed file if the tag has one, and otherwise writes what that tag's generator
writes: it reads the generator's list of entries (``comment``, ``blank``, ``literal``,
``fromSource``) and the two source files at the same tag. A generator it cannot read is an
error that says how to supply the file by hand; no made-up environment is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import ImageError

ENV_PATH = "docker/local-emulator/.env.development"
GENERATOR_PATH = "docker/local-emulator/generate-env-development.mjs"

# Reads a repository file at the tag: its bytes, or None when the tag has no such file.
Reader = Callable[[str], bytes | None]

_TOKEN = re.compile(
    r'\s*(?:(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<name>[A-Za-z_$][\w$]*)|(?P<punct>[(),\]]))',
    re.S,
)


@dataclass(frozen=True)
class Entry:
    kind: str  # comment, blank, entry
    key: str = ""
    value: str = ""
    source: str | None = None  # the env file the value comes from (fromSource)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                return
            raise ValueError(f"unexpected text {text[pos : pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "comment":
            yield kind, m.group(kind)


def parse_generator(text: str) -> list[Entry]:
    """The entries of the generator's ``const entries = [...]`` list, in order."""
    start = re.search(r"\bconst\s+entries\s*=\s*\[", text)
    if start is None:
        raise ValueError("no `const entries = [` list")
    tokens = _tokens(text[start.end() :])
    entries: list[Entry] = []
    for kind, value in tokens:
        if (kind, value) == ("punct", "]"):
            return entries
        if (kind, value) == ("punct", ","):
            continue
        if kind != "name" or next(tokens, None) != ("punct", "("):
            raise ValueError(f"unexpected {value!r} in the entries list")
        args: list[tuple[str, str]] = []
        for arg in tokens:
            if arg == ("punct", ")"):
                break
            if arg != ("punct", ","):
                args.append(arg)
        entries.append(_entry(value, args))
    raise ValueError("the entries list does not end")


def _entry(call: str, args: list[tuple[str, str]]) -> Entry:
    kinds = [k for k, _ in args]
    strings = [json.loads(v) if k == "str" else v for k, v in args]
    if call == "blank" and not args:
        return Entry("blank")
    if call == "comment" and kinds == ["str"]:
        return Entry("comment", value=strings[0])
    if call == "literal" and kinds == ["str", "str"]:
        return Entry("entry", key=strings[0], value=strings[1])
    if call == "fromSource" and kinds == ["str", "name", "str"]:
        return Entry("entry", key=strings[2], source=strings[0])
    raise ValueError(f"unknown entry {call}({', '.join(v for _, v in args)})")


def parse_env(text: str) -> dict[str, str]:
    """An env file as the generator reads it: ``KEY=value``, the value taken as written."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"a line without `=`: {line[:60]!r}")
        env[key.strip()] = value
    return env


def render(entries: list[Entry], sources: dict[str, dict[str, str]]) -> bytes:
    lines = []
    for e in entries:
        if e.kind == "entry" and e.source is not None:
            if e.key not in sources[e.source]:
                raise ValueError(f"{e.source} has no {e.key}")
            lines.append(f"{e.key}={sources[e.source][e.key]}")
        else:
            lines.append(f"{e.key}={e.value}" if e.kind == "entry" else e.value)
    return ("\n".join(lines) + "\n").encode()


def base_env_at(read: Reader, where: str) -> tuple[bytes, str]:
    """``base.env`` for the tag that ``read`` reads; and how it was obtained. ``where``
    names the repository and tag in errors."""
    committed = read(ENV_PATH)
    if committed is not None:
        return committed, f"{ENV_PATH} at {where}"
    generator = read(GENERATOR_PATH)
    if generator is None:
        raise ImageError(
            f"{where} has neither {ENV_PATH} nor {GENERATOR_PATH}, so upstream's base.env for this "
            "image is unknown. Put that release's .env.development beside the image as "
            "<image>.base.env, or pull another tag."
        )
    try:
        entries = parse_generator(generator.decode())
        sources = {}
        for path in sorted({e.source for e in entries if e.source is not None}):
            data = read(path)
            if data is None:
                raise ValueError(f"{path} does not exist at that tag")
            sources[path] = parse_env(data.decode())
        return render(entries, sources), f"{GENERATOR_PATH} at {where}"
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(
            f"could not write upstream's base.env from {GENERATOR_PATH} at {where}: {exc}. Run "
            "`node docker/local-emulator/generate-env-development.mjs` in a checkout of that tag and "
            "put docker/local-emulator/.env.development beside the image as <image>.base.env."
        ) from None
