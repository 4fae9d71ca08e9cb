"""``g2d deploy build=<profile> work=<target>`` and ``g2d update work=<target> [bootpart=...]``.

Both run their Prefect flow (against $PREFECT_API_URL, else a temporary local server).
``deploy --dry-run`` checks every input (profile, atoms, stage3 signature and digests,
kernel, keys, users) and prints the steps a deploy would run, changing nothing.
Registered on ``g2d.cli.app`` by one import line in cli.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from g2d.cli import app

Build = Annotated[str, typer.Option("--build", help="The profile: plasma, openrc, 23.0/systemd...")]
Work = Annotated[
    str, typer.Option("--work", help="The lineage (zfs://tank/sys, /srv/sys) or a new gN in it.")
]


@app.command("deploy")
def deploy_cmd(
    build: Build,
    work: Work,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and print the plan.")] = False,
    timezone: Annotated[str, typer.Option("--timezone", help="Zone of the root.")] = "UTC",
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="emerge --jobs.")] = 1,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the pool.")] = 600.0,
) -> None:
    """Build a new generation from the dom0's stage3, package sets and binhost; seal it."""
    if dry_run:
        for line in deploy_plan(build, work, timezone):
            typer.echo(line)
        typer.echo("dry run: nothing changed")
        return
    from g2d.flows.deploy import deploy

    out = deploy(build, work, timezone=timezone, jobs=jobs, wait=wait)
    typer.echo(f"{out['generation']}: sealed as {out['sealed']}")


@app.command("update")
def update_cmd(
    work: Annotated[str, typer.Option("--work", help="The generation: zfs://tank/sys/g2.")],
    bootpart: Annotated[str | None, typer.Option(
        "--bootpart", help="The EFI partition (or its mount point) to put the kernel on.")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the pool.")] = 600.0,
) -> None:  # fmt: skip
    """Snapshot, emerge -uDN @world from the binhost, kernel, boot partition; seal, or roll
    back on any failure."""
    from g2d.flows.update import update

    out = update(work, bootpart=bootpart, wait=wait)
    merged = ", ".join(out["merged"]) or "nothing"  # type: ignore[arg-type]
    typer.echo(f"{out['generation']}: merged {merged}; kernel {out['kernel']}; "
               f"sealed as {out['sealed']}")  # fmt: skip


def deploy_plan(build: str, work: str, timezone: str = "UTC") -> list[str]:
    """The checked inputs and the steps of a deploy, as the dry run prints them."""
    from g2d.core.deploy_steps import DeployStep
    from g2d.flows.deploy import _release_keys
    from g2d.rootfs.deploy_work import DeployOptions, preflight
    from g2d.rootfs.dom0_tree import Dom0Tree
    from g2d.settings import load_settings
    from g2d.storage.lineage_site import open_site
    from g2d.storage.new_generation import check_new_generation

    settings = load_settings()
    site = open_site(work)
    _, volume = check_new_generation(site)
    with tempfile.TemporaryDirectory(prefix="g2d-deploy-") as scratch:
        inputs = preflight(Dom0Tree(settings.dom0_root), build, _release_keys(settings),
                           DeployOptions(timezone=timezone), scratch=Path(scratch))  # fmt: skip
    lines = [f"plan: deploy {inputs.profile} as {volume} ({site.backend.kind})"]
    lines += [f"  {line}" for line in inputs.plan_lines()]
    lines.append(f"  0. create {volume}, state building")
    lines += [f"  {i}. {s}: {s.describe()}" for i, s in enumerate(DeployStep, 1)]
    lines.append(f"  {len(DeployStep) + 1}. seal {volume} (the new @safe)")
    return lines
