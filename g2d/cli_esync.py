"""``g2d esync`` and ``g2d stage3``: bring the dom0 tree up to date from its mirrors.

With ``PREFECT_API_URL`` set (a Prefect server, e.g. the lab's) the verbs run the ``esync``
and ``stage3`` flows, so the run, its task runs and its summary artifact are recorded.
Without one they call the same part functions directly: Prefect's ephemeral server would
cost ~20 s of start-up on every call here (measured: 19.3 s on a loaded 2-core box, where
its default 20 s start-up timeout also failed once). ``--flow``/``--no-flow`` choose
explicitly. Either way a line per part shows the progress.
Registered on ``g2d.cli.app`` by one import line in cli.py.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from g2d.cli import app

_FLOW_HELP = "Run as a Prefect flow (default: when PREFECT_API_URL is set)."


def _use_flow(flow: bool | None) -> bool:
    return bool(os.environ.get("PREFECT_API_URL")) if flow is None else flow


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _progress(index: int, total: int, part: Any, outcome: Any) -> None:
    head = f"[{index}/{total}] {part}"
    if outcome is None:
        typer.echo(f"{head} ...", err=True)
    elif outcome.ok:
        typer.echo(f"{head}: {_size(outcome.bytes)}, {outcome.files} file(s), "
                   f"{outcome.seconds:.1f} s from {outcome.mirror}; {outcome.verification}",
                   err=True)  # fmt: skip
    else:
        typer.echo(f"{head}: FAILED: {outcome.error}", err=True)


@app.command("esync")
def esync_cmd(
    parts: Annotated[str | None, typer.Option(
        "--parts", help="Comma-separated parts: releases, repos, snapshots, distfiles, "
        "binpkgs, kernels, packages, patchfiles, profiles, meta (default: all with mirrors).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be fetched from where; change nothing.")] = False,
    flow: Annotated[bool | None, typer.Option("--flow/--no-flow", help=_FLOW_HELP)] = None,
) -> None:  # fmt: skip
    """Sync the dom0 tree from its mirrors, every part verified."""
    from g2d.settings import load_settings
    from g2d.sources.esync import listen, plan_esync, run_esync, select_parts
    from g2d.sources.esync_parts import EsyncSetup

    names = [p for p in (parts or "").split(",") if p.strip()] or None
    setup = EsyncSetup.from_settings(load_settings())
    chosen = select_parts(setup, names)  # a wrong name fails here, before any flow starts
    if dry_run:
        for planned in plan_esync(setup, chosen):
            typer.echo(f"{planned.part:<11} {planned.what}")
            typer.echo(f"{'':<11} from {' then '.join(planned.mirrors)}")
            typer.echo(f"{'':<11} to   {planned.dest}")
        typer.echo("dry run: nothing was fetched or changed")
        return
    with listen(_progress):
        if _use_flow(flow):
            from g2d.flows.esync import esync

            esync(parts=[str(p) for p in chosen], dry_run=False)
            total = None
        else:
            report = run_esync(setup, chosen)
            report.raise_if_failed()
            total = report.bytes
    typer.echo(f"esync: {len(chosen)} part(s) up to date"
               + (f", {_size(total)} fetched" if total is not None else ""))  # fmt: skip


@app.command("stage3")
def stage3_cmd(
    arch: Annotated[str, typer.Option("--arch", help="The stage3 arch.")] = "amd64",
    variant: Annotated[str, typer.Option(
        "--variant", help="openrc, systemd, desktop-openrc, ...")] = "openrc",
    keep: Annotated[int | None, typer.Option(
        "--keep", min=1, help="Builds of the variant to keep (default: [esync] keep).")] = None,
    flow: Annotated[bool | None, typer.Option("--flow/--no-flow", help=_FLOW_HELP)] = None,
) -> None:  # fmt: skip
    """Fetch and verify the latest stage3 of an arch and variant into releases/."""
    from g2d.core.release_files import check_arch_variant
    from g2d.settings import load_settings
    from g2d.sources.esync_parts import EsyncSetup, sync_stage3

    try:
        check_arch_variant(arch, variant)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    setup = EsyncSetup.from_settings(load_settings())
    if _use_flow(flow):
        from g2d.flows.stage3 import stage3

        row = stage3(arch=arch, variant=variant, keep=keep)
    else:
        row = sync_stage3(setup, arch, variant, keep or setup.keep).row()
    typer.echo(f"{row['verification']}\n{_size(row['bytes'])} from {row['mirror']} "
               f"in {row['seconds']} s")  # fmt: skip
