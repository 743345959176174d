"""Reading an app's Stack config file on the host, and the option that names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_stack_emulator import config_file
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.config_file import load_config_file, parse_config_source, strip_comments
from pytest_stack_emulator.errors import ConfigError

EXPECTED = {
    "auth": {"allowSignUp": False, "password": {"allowSignIn": True}},
    "teams.allowClientTeamCreation": True,
}

TS_FORMS = {
    "typed": """
import type { StackConfig } from "@stackframe/js";

export const config: StackConfig = {
  auth: {
    allowSignUp: false,
    password: { allowSignIn: true },
  },
  "teams.allowClientTeamCreation": true,
};
""",
    "satisfies": """export const config = { auth: { allowSignUp: false, password: { allowSignIn: true } },
  'teams.allowClientTeamCreation': true } satisfies StackConfig""",
    "as-const": """export const config = ({
  // sign-up is off: invitations only
  auth: { allowSignUp: false, /* for now */ password: { allowSignIn: true } },
  "teams.allowClientTeamCreation": true,
} as const);""",
    "define-literal": """export const config = defineStackConfig({
  auth: { allowSignUp: false, password: { allowSignIn: true }, otp: undefined },
  "teams.allowClientTeamCreation": true,
});""",
    "define": """import { defineStackConfig } from "@stackframe/js";
export const config = defineStackConfig({
  auth: { allowSignUp: false, password: { allowSignIn: true }, otp: undefined },
  [`teams.allowClientTeamCreation`.length > 0 ? "teams.allowClientTeamCreation" : "x"]: true,
});""",
}


@pytest.mark.parametrize("form", ["typed", "satisfies", "as-const", "define-literal"])
def test_literal_configs_are_parsed_without_running_anything(form: str, tmp_path: Path) -> None:
    file = tmp_path / "stack.config.ts"
    file.write_text(TS_FORMS[form])
    loaded = load_config_file(file)
    assert (loaded.config, loaded.how, loaded.path) == (EXPECTED, "literal", file)


def test_literal_values_follow_javascript() -> None:
    value = parse_config_source(
        """export const config = {
          a: 'it\\'s', b: "tab\\tnew\\nline \\u00e9 \\x41", c: `plain`, d: -1.5e3, e: 0x1F, f: 1_000,
          g: null, h: undefined, i: [1, "two", [true]], 42: "numeric key", "k.l": {},
        };"""
    )
    assert value == {
        "a": "it's",
        "b": "tab\tnew\nline é A",
        "c": "plain",
        "d": -1500.0,
        "e": 31,
        "f": 1000,
        "g": None,
        "i": [1, "two", [True]],
        "42": "numeric key",
        "k.l": {},
    }


def test_comments_are_blanked_but_strings_kept() -> None:
    assert (
        strip_comments('a = "//not a comment" // gone\n/* gone */b')
        == 'a = "//not a comment"        \n          b'
    )


def test_json_config_files(tmp_path: Path) -> None:
    file = tmp_path / "stack.config.json"
    file.write_text('{"auth.allowSignUp": false}')
    assert load_config_file(file).config == {"auth.allowSignUp": False}
    file.write_text('"show-onboarding"')
    assert load_config_file(file).config == {}
    file.write_text("[1]")
    with pytest.raises(ConfigError, match="must export a 'config' object"):
        load_config_file(file)
    file.write_text("{nope")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config_file(file)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("stack.config.ts", "export const other = {};", "must export a plain `config` object"),
        ("stack.config.ts", 'export const config = "show-onboarding";', None),
        ("stack.config.ts", "", None),
        ("stack.config.yaml", "auth: {}", "not a Stack config file"),
        ("missing.ts", None, "cannot read the Stack config file"),
    ],
)
def test_what_is_not_a_config_file_says_why(
    tmp_path: Path, name: str, text: str | None, message: str | None
) -> None:
    file = tmp_path / name
    if text is not None:
        file.write_text(text)
    if message is None:
        assert load_config_file(file).config == {}
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config_file(file)


def test_a_computed_javascript_config_runs_with_node(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    (tmp_path / "base.mjs").write_text("export const signUp = false;\n")
    file = tmp_path / "stack.config.mjs"
    file.write_text(
        'import { signUp } from "./base.mjs";\n'
        "export const config = { auth: { allowSignUp: signUp, password: { allowSignIn: !signUp } },\n"
        '  ["teams." + "allowClientTeamCreation"]: true };\n'
    )
    loaded = load_config_file(file)
    assert (loaded.config, loaded.how) == (EXPECTED, "node")
    broken = tmp_path / "broken.config.mjs"
    broken.write_text('import { nothing } from "./nowhere.mjs";\nexport const config = { a: nothing };\n')
    with pytest.raises(ConfigError, match="node could not import"):
        load_config_file(broken)


def test_a_computed_typescript_config_needs_a_recent_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "stack.config.ts"
    file.write_text(TS_FORMS["define"])
    monkeypatch.setattr(config_file.shutil, "which", lambda name: "/usr/bin/node-20")
    monkeypatch.setattr(config_file, "node_version", lambda node: (20, 20))
    with pytest.raises(
        ConfigError, match=r"not a plain literal .*needs Node.js 22.6\+ for TypeScript \(found 20.20\)"
    ):
        load_config_file(file)
    monkeypatch.setattr(config_file.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="Write the config as a plain object literal"):
        load_config_file(file)


def test_the_option_env_and_ini_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "stack.config.json"
    file.write_text("{}")
    s = resolve({"project_config": str(file)}, {}, {})
    assert (s.project_config, s.sources["project_config"]) == (file, "option")
    s = resolve({}, {}, {"STACK_EMULATOR_PROJECT_CONFIG": str(file)})
    assert s.sources["project_config"] == "env STACK_EMULATOR_PROJECT_CONFIG"
    monkeypatch.chdir(tmp_path)
    s = resolve({}, {"project_config": "stack.config.json"}, {})
    assert (s.project_config, s.sources["project_config"]) == (file, "ini stack_emulator_project_config")
    assert resolve({}, {}, {}).project_config is None
    with pytest.raises(
        ConfigError, match="--stack-emulator-project-config: cannot read the Stack config file"
    ):
        resolve({"project_config": str(tmp_path / "nope.ts")}, {}, {})


def test_the_plugin_registers_the_option(pytester: pytest.Pytester) -> None:
    file = pytester.path / "stack.config.json"
    file.write_text('{"auth.allowSignUp": false}')
    pytester.makepyfile(
        test_opt="""
def test_opt(stack_emulator_settings):
    assert stack_emulator_settings.project_config.name == "stack.config.json"
"""
    )
    result = pytester.runpytest(f"--stack-emulator-project-config={file}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest("--stack-emulator-project-config=missing.ts", "-p", "no:cacheprovider")
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(
        ["*--stack-emulator-project-config: cannot read the Stack config file*missing.ts*"]
    )
