"""The g2d command line: the verbs it lists, its errors, and seed-style key=value words."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from g2d import settings as settings_mod
from g2d.cli import G2dGroup, app, rewrite_key_values
from g2d.core.errors import G2dUserError

WORKING_VERBS = [
    "doctor",
    "settings",
    "uri",
    "mirror",
    "esync",
    "stage3",
    "deploy",
    "update",
    "lineage",
    "install",
    "serve",
    "lab",
]
G2D = Path(sys.executable).parent / "g2d"
RELATIVE_ROOT_ERROR = (
    "error: invalid settings: setting 'dom0_root': needs an absolute path, got 'relative'\n"
    "(set G2D_DOM0_ROOT or dom0_root in a g2d.toml (none was found))\n"
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("G2D_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_mod, "SYSTEM_CONFIG", tmp_path / "etc" / "g2d.toml")


def run(*args: str, env: dict[str, str] | None = None) -> typer.testing.Result:
    return CliRunner().invoke(app, list(args), env=env)


def listed_verbs(help_text: str) -> list[str]:
    section = help_text.split("\nCommands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ") and
            not line.startswith("   ")]  # fmt: skip


def test_help_lists_exactly_the_working_verbs() -> None:
    r = run("--help")
    assert r.exit_code == 0
    assert listed_verbs(r.stdout) == WORKING_VERBS


def test_the_verb_order_does_not_depend_on_which_module_was_imported_first() -> None:
    # a verb module imported before g2d.cli registers itself after the others
    code = "import g2d.cli_install, g2d.cli_serve, g2d.cli; g2d.cli.main()"
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert listed_verbs(done.stdout) == WORKING_VERBS


def test_help_shows_the_global_options() -> None:
    r = run("--help")
    assert "--debug" in r.stdout and "--verbose" in r.stdout


def test_user_error_is_one_line_and_a_hint() -> None:
    r = run("settings", env={"G2D_DOM0_ROOT": "relative"})
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == RELATIVE_ROOT_ERROR
    assert "Traceback" not in r.output


def test_refused_target_is_an_error_line() -> None:
    r = run("uri", "zfs://pool/set@")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr.startswith("error: invalid target 'zfs://pool/set@': ")
    assert "Traceback" not in r.output


def test_debug_reraises_the_user_error() -> None:
    r = run("--debug", "settings", env={"G2D_DOM0_ROOT": "relative"})
    assert r.exit_code == 1
    assert isinstance(r.exception, settings_mod.InvalidSettings)
    assert "error:" not in r.stderr  # the traceback replaces the one-line message


def test_debug_prints_a_traceback_from_the_real_program() -> None:
    env = {**os.environ, "G2D_DOM0_ROOT": "relative"}
    plain = subprocess.run([G2D, "settings"], env=env, capture_output=True, text=True)
    assert (plain.returncode, plain.stderr) == (1, RELATIVE_ROOT_ERROR)
    debug = subprocess.run([G2D, "--debug", "settings"], env=env, capture_output=True, text=True)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):\n")
    assert debug.stderr.endswith(
        "g2d.settings.InvalidSettings: invalid settings: setting 'dom0_root': "
        "needs an absolute path, got 'relative'\n"
    )


# a verb only these tests know, shaped like the seed's `deploy build=plasma work=zpool/plasma`
seed_app = typer.Typer(cls=G2dGroup, rich_markup_mode=None, pretty_exceptions_enable=False)


@seed_app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
    pass


@seed_app.command()
def deploy(
    target: Annotated[str | None, typer.Argument()] = None,
    build: Annotated[str, typer.Option()] = "",
    work: Annotated[str, typer.Option()] = "",
    build_dir: Annotated[str, typer.Option()] = "",
    dry_run: Annotated[bool, typer.Option()] = False,
    fail: Annotated[str, typer.Option()] = "",
) -> None:
    if fail == "user":
        raise G2dUserError("cannot deploy", hint="free some space")
    if fail == "bug":
        raise RuntimeError("a bug")
    typer.echo(json.dumps([target, build, work, build_dir, dry_run]))


def deployed(*args: str) -> list[object]:
    r = CliRunner().invoke(seed_app, ["deploy", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_key_value_equals_options() -> None:
    seed = deployed("build=plasma", "work=zpool/plasma")
    assert seed == deployed("--build", "plasma", "--work", "zpool/plasma")
    assert seed == [None, "plasma", "zpool/plasma", "", False]


def test_key_value_mixes_with_options_and_arguments() -> None:
    got = deployed("zfs://a/b@safe", "--build", "kde", "work=x=y", "build_dir=/tmp/b")
    assert got == ["zfs://a/b@safe", "kde", "x=y", "/tmp/b", False]


def test_key_value_for_flags() -> None:
    assert deployed("dry_run=yes")[4] is True
    assert deployed("dry-run=true")[4] is True
    assert deployed("dry_run=no")[4] is False
    r = CliRunner().invoke(seed_app, ["deploy", "dry_run=maybe"])
    assert r.exit_code == 2
    assert "dry-run= takes yes or no, not 'maybe'" in r.stderr


def test_words_that_stay_words() -> None:
    assert deployed("boot=zfs:///dev/sda:/usb/g1")[0] == "boot=zfs:///dev/sda:/usb/g1"  # no --boot
    assert deployed("--work", "build=x")[1:3] == ["", "build=x"]  # an option's value
    assert deployed("--", "build=x")[0:2] == ["build=x", ""]  # after --
    assert deployed("Build=x")[0:2] == ["Build=x", ""]  # keys are lower case


def test_rewrite_function() -> None:
    command = typer.main.get_command(seed_app).commands["deploy"]  # type: ignore[attr-defined]
    assert rewrite_key_values(["build=a", "--work", "work=b", "dry_run=0", "c=d"], command) == [
        "--build", "a", "--work", "work=b", "--no-dry-run", "c=d",
    ]  # fmt: skip


def test_real_verb_takes_key_value() -> None:
    assert run("settings", "format=toml").stdout == run("settings", "--format", "toml").stdout
    assert run("settings", "format=toml").stdout.startswith('dom0_root = "/var/lib/portage"\n')


def test_user_error_in_a_verb() -> None:
    r = CliRunner().invoke(seed_app, ["deploy", "fail=user"])
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "error: cannot deploy\n(free some space)\n")


def test_a_bug_keeps_its_exception() -> None:
    r = CliRunner().invoke(seed_app, ["deploy", "fail=bug"])
    assert r.exit_code == 1
    assert isinstance(r.exception, RuntimeError)
    assert "error:" not in r.stderr


def _terminal_level() -> int:
    logger = logging.getLogger("g2d")
    (handler,) = [h for h in logger.handlers if type(h).__name__ == "_CliLogHandler"]
    return handler.level


def test_verbose_and_debug_set_the_terminal_level_and_info_still_reaches_run_logs() -> None:
    # the logger passes INFO on (a flow run from the CLI keeps its command lines in Prefect);
    # the terminal's handler shows only what was asked for
    logger = logging.getLogger("g2d")
    run("settings")
    assert (logger.level, _terminal_level()) == (logging.INFO, logging.WARNING)
    run("--verbose", "settings")
    assert (logger.level, _terminal_level()) == (logging.INFO, logging.INFO)
    run("--debug", "settings")
    assert (logger.level, _terminal_level()) == (logging.DEBUG, logging.DEBUG)


def test_uri_prints_json() -> None:
    r = run("uri", "zfs://root@10.1.0.1:/wSys/gnome@safe")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["snapshot"] == "safe"
    boot = run("uri", "boot=zfs:///dev/sda:/usb/g1")
    assert boot.exit_code == 0, boot.output
    assert json.loads(boot.stdout)["device"] == "/dev/sda"
