"""The plugin's behaviour that needs no VM, through pytester inner runs."""

import pytest

USES_FIXTURE = """
def test_x(stack_emulator):
    assert stack_emulator.backend_url
"""


def test_without_the_flag_tests_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_FIXTURE)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*stack_emulator needs --stack-emulator*STACK_EMULATOR=1*"])
    result.stdout.fnmatch_lines(["stack-emulator: off (enable with --stack-emulator)"])


def test_without_the_flag_under_xdist_tests_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_FIXTURE)
    result = pytester.runpytest_subprocess("-n", "2", "-rs")
    result.assert_outcomes(skipped=1)


def test_tests_without_the_fixture_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--stack-emulator-accel", "xen"],
            "*--stack-emulator-accel: 'xen' is not one of: auto, kvm, hvf, tcg*",
        ),
        (["--stack-emulator-base-port", "12"], "*--stack-emulator-base-port: port 12 is out of range*"),
        (["--stack-emulator-share", "/no/such/dir"], "*not a directory*"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(USES_FIXTURE)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nstack_emulator_restore = rsync\n")
    pytester.makepyfile(USES_FIXTURE)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini stack_emulator_restore: 'rsync' is not one of*"])


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "*--stack-emulator *",
            "*--stack-emulator-image=SPEC*",
            "*--stack-emulator-share=DIR*",
            "*--stack-emulator-accel=NAME*",
            "*stack_emulator_base_port*",
        ]
    )


def test_settings_fixture_can_be_read_and_overridden(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import dataclasses, pytest

@pytest.fixture(scope="session")
def stack_emulator_settings(stack_emulator_settings):
    return dataclasses.replace(stack_emulator_settings, base_port=30000)
"""
    )
    pytester.makepyfile(
        "def test_s(stack_emulator_settings):\n    assert stack_emulator_settings.base_port == 30000\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_env_enables_and_header_shows_where_settings_came_from(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable image fails the fixture's tests with a message naming the path and the fix."""
    monkeypatch.setenv("STACK_EMULATOR", "1")
    pytester.makepyfile(USES_FIXTURE)
    missing = pytester.path / "nope.qcow2"
    result = pytester.runpytest_subprocess(
        f"--stack-emulator-image={missing}", f"--stack-emulator-home={pytester.path / 'home'}",
        "--stack-emulator-base-port=31500",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*preparing failed: image {missing} does not exist. Give a path to a .qcow2 file, a URL, or `compat`*"
        ]
    )
    result.stdout.fnmatch_lines(["*stack-emulator settings: *base_port=31500 (from option)*"])


def test_ini_enables_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_EMULATOR_IMAGE", str(pytester.path / "nope.qcow2"))
    pytester.makeini(f"[pytest]\nstack_emulator = true\nstack_emulator_home = {pytester.path / 'home'}\n")
    pytester.makepyfile(USES_FIXTURE)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*image=*nope.qcow2 (from env STACK_EMULATOR_IMAGE)*"])


def test_nothing_is_prepared_when_no_test_uses_the_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_EMULATOR", "1")
    monkeypatch.setenv("STACK_EMULATOR_IMAGE", str(pytester.path / "nope.qcow2"))
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess(f"--stack-emulator-home={pytester.path / 'home'}")
    result.assert_outcomes(passed=1)
    assert "preparing failed" not in result.stdout.str()
    assert not (pytester.path / "home" / "images").exists()


def test_xdist_workers_report_the_controllers_failure_without_retrying(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_FIXTURE)
    missing = pytester.path / "nope.qcow2"
    result = pytester.runpytest_subprocess(
        "-n", "2", "--stack-emulator", f"--stack-emulator-image={missing}",
        f"--stack-emulator-home={pytester.path / 'home'}",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["stack-emulator: preparing failed: image * does not exist*"])
    result.stdout.fnmatch_lines(["*preparing failed in the xdist controller: image * does not exist*"])
