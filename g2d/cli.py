"""The ``g2d`` command: ``g2d [--debug] [--verbose] VERB [ARGS]``.

A verb appears in ``--help`` only once it works. Seed-style ``key=value`` words are accepted
beside ``--key value``. A ``G2dUserError`` prints as ``error: ...`` plus ``(hint)`` and exits
1; ``--debug`` shows its traceback instead; any other exception is a bug and keeps its own.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Protocol

import click
import typer
from typer.core import TyperGroup

from g2d.core.errors import G2dUserError

KEY_VALUE = re.compile(r"([a-z][a-z0-9_-]*)=(.*)", re.DOTALL)
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class HasParams(Protocol):
    """A click command (typer vendors its own click, so this is duck-typed)."""

    params: list[Any]


def rewrite_key_values(args: Sequence[str], command: HasParams) -> list[str]:
    """Turn ``key=value`` words into ``--key value`` where ``command`` declares ``--key``.

    ``build=plasma`` becomes ``--build plasma``; ``dry_run=yes`` becomes ``--dry-run`` for a
    flag. Words after ``--``, values of options and keys the command lacks stay as they are.
    """
    options = {
        name: param
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }
    out: list[str] = []
    value_next = False  # the previous word was an option that takes this word as its value
    for i, word in enumerate(args):
        if value_next:
            out.append(word)
            value_next = False
            continue
        if word == "--":
            out.extend(args[i:])
            break
        found = KEY_VALUE.fullmatch(word)
        option = "--" + found[1].replace("_", "-") if found else ""
        if found and option in options:
            out += _option_words(options[option], option, found[2])
            continue
        if word.startswith("-") and "=" not in word:
            param = options.get(word)
            value_next = param is not None and not param.is_flag and not param.count
        out.append(word)
    return out


def _option_words(param: Any, option: str, value: str) -> list[str]:
    if not param.is_flag:
        return [option, value]
    if value.lower() in TRUE_WORDS:
        return [param.opts[0]]
    if value.lower() in FALSE_WORDS:
        return [param.secondary_opts[0]] if param.secondary_opts else []
    raise typer.BadParameter(f"{option.removeprefix('--')}= takes yes or no, not {value!r}")


def report_error(error: G2dUserError) -> None:
    typer.echo(f"error: {error}", err=True)
    if error.hint:
        typer.echo(f"({error.hint})", err=True)


# `g2d --help` lists the verbs in the order an admin meets them, whatever order their
# modules happened to be imported in
VERB_ORDER = ("doctor", "settings", "uri", "mirror", "esync", "stage3", "deploy", "update",
              "lineage", "install", "serve", "lab")  # fmt: skip


class G2dGroup(TyperGroup):
    """Rewrites ``key=value`` words for the chosen verb; turns user errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(VERB_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))  # stable for the rest

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        # the verb is the first word that is not a group option; group options are flags
        at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        if at is not None:
            command = self.get_command(ctx, args[at])
            # a sub-group (it has list_commands) rewrites the words of its own verbs
            if command is not None and not hasattr(command, "list_commands"):
                args = [*args[: at + 1], *rewrite_key_values(args[at + 1 :], command)]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except G2dUserError as e:
            if ctx.find_root().params.get("debug"):
                raise
            report_error(e)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=G2dGroup,
    name="g2d",
    help="Run a Gentoo distribution server (dom0) and the machines it feeds.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help and usage errors, like the rest of the output
    pretty_exceptions_enable=False,  # a bug shows Python's own traceback
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _CliLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this CLI installed, so a second run replaces it."""


def setup_logging(level: int) -> None:
    logger = logging.getLogger("g2d")
    for handler in [h for h in logger.handlers if isinstance(h, _CliLogHandler)]:
        logger.removeHandler(handler)
    handler = _CliLogHandler(sys.stderr)
    fmt = "%(levelname)s %(name)s: %(message)s" if level <= logging.DEBUG else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)  # the terminal shows `level` and up
    logger.addHandler(handler)
    # the logger itself passes INFO on: a flow run by this CLI keeps every command line in
    # its Prefect run log, however quiet the terminal is
    logger.setLevel(min(level, logging.INFO))
    logger.propagate = False  # the terminal is this handler's; Prefect's console shows only its own


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks; log commands and their output.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log each command g2d runs.")
    ] = False,
) -> None:
    setup_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check this host's storage backends and tools."""
    from g2d import doctor as checks  # imports the runner; keep `g2d --help` quick

    report = checks.run_checks()
    typer.echo(checks.format_json(report) if as_json else checks.format_table(report), nl=False)
    raise typer.Exit(report.exit_code())


class Format(enum.StrEnum):
    json = enum.auto()
    toml = enum.auto()


@app.command("settings")
def show_settings(
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
) -> None:
    """Print the resolved settings.

    Defaults, overridden by g2d.toml, overridden by G2D_* environment variables.
    """
    from g2d.settings import load_settings, render_json, render_toml

    settings = load_settings()
    typer.echo(render_toml(settings) if fmt is Format.toml else render_json(settings))


@app.command()
def uri(
    text: Annotated[
        str, typer.Argument(help="A target (zfs://..., pool/set, /path, ...) or boot=...")
    ],
) -> None:
    """Parse a target URI and print it as JSON.

    A target the parser refuses is an error that says what is wrong with it.
    """
    from g2d.core import uri as uris

    parsed = uris.parse_boot(text) if text.startswith("boot=") else uris.parse_target(text)
    typer.echo(render_parsed(parsed))


def render_parsed(value: Any) -> str:
    """A parsed target as JSON, whether it offers ``to_json()`` (dict or text) or not."""
    data = value.to_json() if hasattr(value, "to_json") else dataclasses.asdict(value)
    return data if isinstance(data, str) else json.dumps(data, indent=2)


import g2d.cli_deploy  # noqa: E402  registers `g2d deploy` and `g2d update` on app
import g2d.cli_esync  # noqa: E402  registers `g2d esync` and `g2d stage3` on app
import g2d.cli_install  # noqa: E402  registers `g2d install` on app
import g2d.cli_lab  # noqa: E402  registers `g2d lab` on app
import g2d.cli_lineage  # noqa: E402  registers `g2d lineage` on app
import g2d.cli_mirror  # noqa: E402  registers `g2d mirror` on app
import g2d.cli_serve  # noqa: E402, F401  registers `g2d serve` on app


def main() -> None:
    app(prog_name="g2d")


if __name__ == "__main__":
    main()
