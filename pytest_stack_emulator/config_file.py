"""An app's Stack config file, read on the host.

Upstream's ``stack.config.ts`` exports the project's config (``export const config = {...}``,
keys like ``"auth.allowSignUp"`` or nested objects); upstream's emulator evaluated it inside the
VM. Here the host reads it, without a build step:

- ``*.json``: the config object itself (``{"auth": {"allowSignUp": false}}``).
- ``*.ts``, ``*.mts``, ``*.cts``, ``*.js``, ``*.mjs``, ``*.cjs``: ``export const config`` whose
  value is a plain literal (objects, arrays, strings, numbers, booleans, null), optionally
  typed (``: StackConfig``), wrapped in ``defineStackConfig(...)`` or followed by ``as const``
  / ``satisfies StackConfig``: parsed here, nothing runs. That is the form upstream's own
  tooling reads and writes.
- Anything else in a JavaScript file (a computed config, imports of values) runs with
  ``node`` when it is on PATH: the file is imported and its ``config`` export printed as JSON.
  TypeScript files need Node.js 22.6 or later for that (type stripping). A config that needs
  a bundler (path aliases, imports of .ts modules on older Node) is not supported: write it as
  a literal, or as ``stack.config.json``.

``"show-onboarding"`` (what a fresh upstream project's file may hold) counts as an empty config.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCRIPT_SUFFIXES = (".ts", ".mts", ".cts", ".js", ".mjs", ".cjs")
TYPESCRIPT_SUFFIXES = (".ts", ".mts", ".cts")
SHOW_ONBOARDING = "show-onboarding"
NODE_TIMEOUT = 30.0
_DECLARATION = re.compile(r"\bexport\s+(?:const|let|var)\s+config\b")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_NODE_SCRIPT = (
    "const m = await import(process.argv[1]);"
    "const c = m.config ?? m.default?.config;"
    "process.stdout.write(JSON.stringify(c === undefined ? null : c));"
)


@dataclass(frozen=True)
class ConfigFile:
    """A config file's absolute path, the config it exports, and how it was read."""

    path: Path
    config: dict[str, Any]
    how: str  # "json", "literal" or "node"


_UNDEFINED = object()


class _NotLiteral(Exception):
    """The config's value is not a plain literal (so node may be needed)."""


def load_config_file(path: str | Path) -> ConfigFile:
    """Read the config a Stack config file exports; ConfigError says what is wrong and how to fix it."""
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Stack config file {file}: {exc.strerror or exc}") from None
    if file.suffix == ".json":
        try:
            value = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"{file} is not valid JSON: {exc}") from None
        return ConfigFile(file, _as_config(value, file), "json")
    if file.suffix not in SCRIPT_SUFFIXES:
        raise ConfigError(
            f"{file}: not a Stack config file; use stack.config.ts (or .js, .mjs, .cjs, .mts, .cts) or "
            "stack.config.json"
        )
    if not text.strip():
        return ConfigFile(file, {}, "literal")
    try:
        return ConfigFile(file, _as_config(parse_config_source(text, file), file), "literal")
    except _NotLiteral as exc:
        return ConfigFile(file, _as_config(_run_with_node(file, str(exc)), file), "node")


def _as_config(value: Any, file: Path) -> dict[str, Any]:
    if value == SHOW_ONBOARDING:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"Invalid config in {file}. The file must export a 'config' object "
            f"(found {type(value).__name__})."
        )
    return value


# --------------------------------------------------------------------------- literal parsing


def parse_config_source(text: str, file: Path | str = "<config>") -> Any:
    """The value of ``export const config`` in JavaScript/TypeScript source, if it is a literal.

    Raises _NotLiteral (the reason) when the value is something to run, ConfigError when there
    is no such export at all."""
    source = strip_comments(text)
    match = _DECLARATION.search(source)
    if match is None:
        raise ConfigError(
            f"Invalid config in {file}. The file must export a plain `config` object "
            '(export const config = {...}) or "show-onboarding".'
        )
    equals = _find_initializer(source, match.end())
    if equals is None:
        raise ConfigError(f"Config export in {file} must have an initializer.")
    parser = _Parser(source, equals + 1)
    value = parser.expression()
    if value is _UNDEFINED:
        raise ConfigError(f"Invalid config in {file}. The file must export a 'config' object.")
    parser.skip_type_suffix()
    parser.ws()
    if parser.pos < len(source) and source[parser.pos] not in ";\n}":
        raise _NotLiteral(f"unexpected {source[parser.pos : parser.pos + 20]!r} after the config literal")
    return value


def strip_comments(text: str) -> str:
    """The source with // and /* */ comments blanked out (string literals untouched)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _find_initializer(source: str, pos: int) -> int | None:
    """The index of the `=` that starts the declaration's initializer (skipping a type)."""
    depth = 0
    for i in range(pos, len(source)):
        c = source[i]
        if c in "<({[":
            depth += 1
        elif c in ">)}]" and not (c == ">" and source[i - 1] == "="):
            depth -= 1
        elif c == "=" and depth <= 0 and source[i + 1 : i + 2] not in ("=", ">"):
            return i
        elif c == ";" and depth <= 0:
            return None
    return None


class _Parser:
    def __init__(self, source: str, pos: int) -> None:
        self.s = source
        self.pos = pos

    def ws(self) -> None:
        while self.pos < len(self.s) and self.s[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _NotLiteral(f"expected {char!r} at {self.s[self.pos : self.pos + 20]!r}")
        self.pos += 1

    def expression(self) -> Any:
        c = self.peek()
        if c == "(":
            self.pos += 1
            value = self.expression()
            self.skip_type_suffix()
            self.expect(")")
            return value
        if c == "{":
            return self.obj()
        if c == "[":
            return self.array()
        if c in "'\"":
            return self.string()
        if c == "`":
            return self.template()
        ident = _IDENT.match(self.s, self.pos)
        if ident:
            name = ident.group()
            self.pos = ident.end()
            constants = {"true": True, "false": False, "null": None, "undefined": _UNDEFINED}
            if name in constants:
                return constants[name]
            if name in ("defineStackConfig", "defineConfig") and self.peek() == "(":
                return self.expression()
            raise _NotLiteral(f"{name} is not a literal")
        number = _NUMBER.match(self.s, self.pos)
        if number and number.group():
            self.pos = number.end()
            return _number(number.group())
        raise _NotLiteral(f"unsupported value at {self.s[self.pos : self.pos + 20]!r}")

    def skip_type_suffix(self) -> None:
        """`as const`, `as T`, `satisfies T`, a non-null `!`: types, nothing to evaluate."""
        while True:
            self.ws()
            word = _IDENT.match(self.s, self.pos)
            if word and word.group() in ("as", "satisfies"):
                self.pos = word.end()
                self._skip_type()
            elif self.s.startswith("!", self.pos) and not self.s.startswith("!=", self.pos):
                self.pos += 1
            else:
                return

    def _skip_type(self) -> None:
        self.ws()
        depth = 0
        while self.pos < len(self.s):
            c = self.s[self.pos]
            if c in "<({[":
                depth += 1
            elif c in ">)}]":
                if depth == 0:
                    return
                depth -= 1
            elif depth == 0 and (c in ",;\n" or c.isspace()):
                return
            self.pos += 1

    def obj(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        while self.peek() != "}":
            c = self.peek()
            if c in "'\"":
                key = self.string()
            elif self.s.startswith("...", self.pos):
                raise _NotLiteral("config objects cannot contain spreads")
            elif c == "[":
                raise _NotLiteral("config object keys cannot be computed")
            else:
                m = _IDENT.match(self.s, self.pos) or _NUMBER.match(self.s, self.pos)
                if not m or not m.group():
                    raise _NotLiteral(f"unsupported key at {self.s[self.pos : self.pos + 20]!r}")
                key = m.group()
                self.pos = m.end()
            if self.peek() != ":":
                raise _NotLiteral(f"{key}: shorthand properties and methods are not literals")
            self.pos += 1
            value = self.expression()
            self.skip_type_suffix()
            if value is not _UNDEFINED:  # as JSON.stringify: an undefined property is left out
                out[key] = value
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise _NotLiteral(f"expected , or }} at {self.s[self.pos : self.pos + 20]!r}")
        self.pos += 1
        return out

    def array(self) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        while self.peek() != "]":
            if self.peek() == ",":
                raise _NotLiteral("config arrays cannot contain holes")
            item = self.expression()
            out.append(None if item is _UNDEFINED else item)
            self.skip_type_suffix()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise _NotLiteral(f"expected , or ] at {self.s[self.pos : self.pos + 20]!r}")
        self.pos += 1
        return out

    def string(self) -> str:
        quote = self.s[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.s) and self.s[self.pos] != quote:
            c = self.s[self.pos]
            if c == "\n":
                raise _NotLiteral("unterminated string")
            if c == "\\":
                out.append(self._escape())
                continue
            out.append(c)
            self.pos += 1
        self.pos += 1
        return "".join(out)

    def template(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.s) and self.s[self.pos] != "`":
            if self.s.startswith("${", self.pos):
                raise _NotLiteral("template literals with ${...} are not literals")
            if self.s[self.pos] == "\\":
                out.append(self._escape())
                continue
            out.append(self.s[self.pos])
            self.pos += 1
        self.pos += 1
        return "".join(out)

    def _escape(self) -> str:
        nxt = self.s[self.pos + 1 : self.pos + 2]
        self.pos += 2
        if nxt in _ESCAPES:
            return _ESCAPES[nxt]
        if nxt == "\n":
            return ""
        if nxt == "x":
            code = self.s[self.pos : self.pos + 2]
            self.pos += 2
            return chr(int(code, 16))
        if nxt == "u":
            if self.s.startswith("{", self.pos):
                end = self.s.index("}", self.pos)
                code = self.s[self.pos + 1 : end]
                self.pos = end + 1
            else:
                code = self.s[self.pos : self.pos + 4]
                self.pos += 4
            return chr(int(code, 16))
        return nxt


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    body = clean.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if body.lower().startswith(prefix):
            return sign * int(body[2:], base)
    value = float(body)
    return sign * (int(value) if value.is_integer() and not re.search(r"[.eE]", body) else value)


# --------------------------------------------------------------------------- node


def node_version(node: str) -> tuple[int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False)
    m = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _run_with_node(file: Path, why: str) -> Any:
    """Import the file with node and return its `config` export."""
    node = shutil.which("node")
    unsupported = (
        f"{file}: its config is not a plain literal ({why}), and reading it needs "
        "{what}. Write the config as a plain object literal (export const config = {{...}}) or "
        "as stack.config.json."
    )
    if node is None:
        raise ConfigError(unsupported.format(what="Node.js on PATH, which is not there"))
    argv = [node]
    if file.suffix in TYPESCRIPT_SUFFIXES:
        version = node_version(node)
        if version < (22, 6):
            raise ConfigError(
                unsupported.format(what=f"Node.js 22.6+ for TypeScript (found {version[0]}.{version[1]})")
            )
        if version < (23, 6):
            argv.append("--experimental-strip-types")
    argv += ["--no-warnings", "--input-type=module", "-e", _NODE_SCRIPT, file.as_uri()]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=NODE_TIMEOUT, cwd=file.parent, check=False
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"node did not finish importing {file} within {NODE_TIMEOUT:.0f} s") from None
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-8:])
        raise ConfigError(f"node could not import {file} (exit {out.returncode}):\n{tail}")
    try:
        value = json.loads(out.stdout or "null")
    except ValueError:
        raise ConfigError(f"{file}: its config export is not JSON-serialisable") from None
    if value is None:
        raise ConfigError(f"Invalid config in {file}. The file must export a 'config' object.")
    return value
