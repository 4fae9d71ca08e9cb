"""``g2d serve``: run g2d's deployments (deployments/prefect.yaml) for the Prefect server.

One long-running process, e.g. a systemd unit on the dom0, or started by hand next to
``g2d lab up``: it registers every deployment with the server in $PREFECT_API_URL and runs
their flow runs as child processes, on schedule and on ``prefect deployment run``.
Registered on ``g2d.cli.app`` by one import line in cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from g2d.cli import app


@app.command("serve")
def serve(
    file: Annotated[Path | None, typer.Option(
        "--file", help="The deployments file (default: $G2D_DEPLOYMENTS, else the "
        "checkout's deployments/prefect.yaml).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Serve only this deployment (flow/name); repeatable.")] = None,
    limit: Annotated[int, typer.Option(
        "--limit", help="Flow runs at a time; more wait their turn.")] = 4,
    check: Annotated[bool, typer.Option(
        "--check", help="Read and check the file, print the deployments, serve nothing.")]
    = False,
) -> None:  # fmt: skip
    """Serve g2d's deployments to the Prefect server until stopped (SIGTERM, Ctrl-C)."""
    from g2d.flows.deployments import deployments_file, read_deployments, select

    path = file or deployments_file()
    entries = select(read_deployments(path), only or [])
    for entry in entries:
        typer.echo(f"{entry.full_name:<24} {entry.description or ''}".rstrip())
    if check:
        return
    import os

    from g2d.flows.deployments import serve_deployments

    api = os.environ.get("PREFECT_API_URL") or "the profile's PREFECT_API_URL"
    typer.echo(f"serving {len(entries)} deployment(s) from {path} to {api}; "
               "run one with: prefect deployment run <flow>/<name> -p key=value")  # fmt: skip
    serve_deployments(entries, limit=limit, echo=typer.echo)
