"""upstream_env: base.env for a tag, from its committed file or from its generator's entries."""

from __future__ import annotations

import pytest

from pytest_stack_emulator.errors import ImageError
from pytest_stack_emulator.upstream_env import ENV_PATH, GENERATOR_PATH, base_env_at, parse_generator

# Written in the generator's style (a list of entry calls, comments, a URL inside a string).
GENERATOR = """
const fromSource = (sourceName, envMap, key) => ({ type: "entry", key });
const entries = [
  comment("# Public emulator/app credentials"),
  literal("NEXT_PUBLIC_STACK_DOCS_BASE_URL", "https://docs.example"), // trailing remark
  fromSource("apps/dashboard/.env.development", dashboardEnv, "NEXT_PUBLIC_STACK_PROJECT_ID"),
  blank(),
  /* a block comment */
  fromSource("apps/backend/.env.development", backendEnv, "STACK_DATABASE_CONNECTION_STRING"),
  literal("QUOTED", "a \\"b\\" c"),
];
const content = entries.map(render);
"""
SOURCES = {
    "apps/backend/.env.development": b"# db\nSTACK_DATABASE_CONNECTION_STRING=postgres://u:p@h:5432/db # kept\n\n",
    "apps/dashboard/.env.development": b"NEXT_PUBLIC_STACK_PROJECT_ID=internal\nOTHER=1\n",
}


def test_the_generator_is_followed_entry_by_entry() -> None:
    files = {GENERATOR_PATH: GENERATOR.encode(), **SOURCES}
    data, how = base_env_at(files.get, "stack-auth/stack-auth@emulator-dev-latest")
    assert data == (
        b"# Public emulator/app credentials\n"
        b"NEXT_PUBLIC_STACK_DOCS_BASE_URL=https://docs.example\n"
        b"NEXT_PUBLIC_STACK_PROJECT_ID=internal\n"
        b"\n"
        b"STACK_DATABASE_CONNECTION_STRING=postgres://u:p@h:5432/db # kept\n"
        b'QUOTED=a "b" c\n'
    )
    assert how == f"{GENERATOR_PATH} at stack-auth/stack-auth@emulator-dev-latest"


def test_a_committed_env_file_wins() -> None:
    files = {ENV_PATH: b"A=1\n", GENERATOR_PATH: GENERATOR.encode()}
    assert base_env_at(files.get, "r@t") == (b"A=1\n", f"{ENV_PATH} at r@t")


def test_a_key_missing_from_its_source_is_an_error_naming_both() -> None:
    files = {GENERATOR_PATH: GENERATOR.encode(), **SOURCES, "apps/dashboard/.env.development": b"OTHER=1\n"}
    with pytest.raises(
        ImageError, match=r"apps/dashboard/.env.development has no NEXT_PUBLIC_STACK_PROJECT_ID"
    ):
        base_env_at(files.get, "r@t")


def test_an_unknown_entry_is_an_error_that_says_how_to_supply_the_file() -> None:
    text = 'const entries = [\n  literal("A", "1"),\n  secret("B"),\n];\n'
    with pytest.raises(ImageError, match=r"unknown entry secret.*<image>.base.env"):
        base_env_at({GENERATOR_PATH: text.encode()}.get, "r@t")


def test_a_tag_without_either_file_is_an_error() -> None:
    with pytest.raises(ImageError, match=r"r@t has neither .*\.env.development nor .*generate-env"):
        base_env_at({}.get, "r@t")


def test_parse_generator_keeps_order_and_kinds() -> None:
    entries = parse_generator(GENERATOR)
    assert [e.kind for e in entries] == ["comment", "entry", "entry", "blank", "entry", "entry"]
    assert entries[2].source == "apps/dashboard/.env.development"
