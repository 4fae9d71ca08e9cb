"""``g2d lab``: build the offline Gentoo lab, serve it on 127.0.0.1, check it, stop it."""

from __future__ import annotations

from typing import Annotated

import typer

from g2d.cli import G2dGroup, app

lab_app = typer.Typer(
    cls=G2dGroup,
    help="The offline Gentoo lab: build it, serve it on 127.0.0.1, check it.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_app, name="lab")


def _echo_err(line: str) -> None:
    typer.echo(line, err=True)


@lab_app.command("build")
def lab_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild every step.")] = False,
    step: Annotated[
        list[str] | None,
        typer.Option("--step", help="Build only this step and what it needs (repeatable)."),
    ] = None,
) -> None:
    """Build the lab: keys, repository, binhost, stage3s, releases, snapshots, kernel.

    Each step runs only when its inputs changed or its output was damaged.
    """
    from g2d.lab.build import build_lab
    from g2d.lab.layout import LabLayout

    report = build_lab(LabLayout.from_settings(), force=force, only=step, progress=_echo_err)
    typer.echo(report.format_table(), nl=False)


@lab_app.command("up")
def lab_up(
    reuse: Annotated[bool, typer.Option(
        "--reuse", help="When every service is up already, keep it and print it again.")] = False,
) -> None:  # fmt: skip
    """Serve the lab on 127.0.0.1: http, rsync, sshd and a Prefect server."""
    from g2d.lab.layout import LabLayout
    from g2d.lab.pipeline import ensure_lab
    from g2d.lab.services import Service
    from g2d.lab.services import lab_up as start

    layout = LabLayout.from_settings()
    if reuse:
        state, started = ensure_lab(layout, _echo_err)
        if not started:
            _echo_err(f"the lab in {layout.root} is up already")
    else:
        state = start(layout, progress=_echo_err)
    for s in state.services:
        typer.echo(f"{s.name:<8} {s.url:<32} pid {s.pid}")
    prefect = state.get(Service.prefect)
    if prefect is not None:
        typer.echo(f"Prefect UI: {prefect.url}")
        typer.echo(f"export PREFECT_API_URL={state.prefect_api_url}")
    typer.echo(f"state: {layout.state_file}")
    from g2d.lab.esync_config import write_lab_config
    from g2d.lab.process import run

    # settings that point g2d's mirrors and release keys at this lab
    try:
        typer.echo(f"export G2D_CONFIG={write_lab_config(layout, state)}")
    finally:  # python-gnupg started an agent for the lab's keyring
        run(["gpgconf", "--homedir", layout.gnupg, "--kill", "gpg-agent"], check=False)


@lab_app.command("down")
def lab_down() -> None:
    """Stop exactly what `g2d lab up` started, by pid."""
    from g2d.lab.layout import LabLayout
    from g2d.lab.services import lab_down as stop

    stopped = stop(LabLayout.from_settings())
    if not stopped:
        typer.echo("the lab is not up")
    for s in stopped:
        typer.echo(f"{s.name:<8} pid {s.pid}: {s.outcome}")


@lab_app.command("status")
def lab_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check the lab: services answering, files present, signatures and digests good.

    Exits 1 when something is wrong.
    """
    from g2d.lab import status
    from g2d.lab.layout import LabLayout

    findings = status.lab_status(LabLayout.from_settings())
    typer.echo(status.format_json(findings) if as_json else status.format_table(findings), nl=False)
    raise typer.Exit(0 if status.is_sound(findings) else 1)


@lab_app.command("demo")
def lab_demo(
    directory: Annotated[str | None, typer.Option(
        "--dir", help="The demo's own data: dom0, state, lineage home, disk image "
        "(default: beside the lab, <lab>/../demo).")] = None,
    boot_timeout: Annotated[float, typer.Option(
        "--boot-timeout", help="Seconds the qemu boot may take.")] = 300.0,
) -> None:  # fmt: skip
    """The whole pipeline on the lab, each step a flow run in its Prefect UI.

    esync, stage3, deploy and seal g1, branch and update g2, install g2 (g1 the fallback)
    onto a disk image, boot it in qemu; then the lineage tree and the runs to look at.
    Starts the lab when it is not up, and leaves it up for the UI (g2d lab down stops it).
    """
    from pathlib import Path

    from g2d.lab.layout import LabLayout
    from g2d.lab.pipeline import DemoPaths, run_demo

    layout = LabLayout.from_settings()
    paths = DemoPaths(Path(directory).absolute()) if directory else DemoPaths.beside(layout)
    down = f"G2D_LAB_DIR={layout.root} g2d lab down"
    try:
        report = run_demo(layout, paths, echo=typer.echo, boot_timeout=boot_timeout)
    except BaseException:
        _echo_err(f"the lab stays up for its Prefect UI; `{down}` stops it")
        _echo_err(f"the demo's log: {paths.log}")
        raise
    typer.echo(f"Prefect UI: {report.ui}runs  (this demo's flow runs below; artifacts: "
               f"{report.ui}artifacts)")  # fmt: skip
    for title, run_id in report.flow_runs:
        typer.echo(f"  {title:<11} {report.ui}runs/flow-run/{run_id}")
    typer.echo(f"demo: done in {report.seconds:.1f} s; log {paths.log}; the installed disk "
               f"image {paths.disk} (qemu console: {paths.qemu / 'console.log'})")  # fmt: skip
    typer.echo(f"the lab stays up{' (started by the demo)' if report.lab_started else ''}; "
               f"`{down}` stops it")  # fmt: skip
