"""``g2d install work=... boot=...``: a sealed generation onto a new disk (or pool), bootable.

Prints the plan first (every command, then the boot entries). ``--dry-run`` stops there.
Without ``--yes`` it asks on a terminal and refuses anywhere else (a script must say yes
itself). Registered on ``g2d.cli.app`` by one import line in cli.py.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from g2d.cli import app
from g2d.core.errors import G2dUserError


class NotConfirmed(G2dUserError):
    """The install was not confirmed; nothing was written."""


@app.command("install")
def install_cmd(
    work: Annotated[str, typer.Option(
        "--work", help="The sealed snapshot: zfs://[user@host[:port]:]/pool/set/g2@safe, "
        "btrfs://..., dir://...")],
    boot: Annotated[str, typer.Option(
        "--boot", help="Where: zfs:///dev/DISK:/pool/g2, zfs://pool/g2 (an existing pool), "
        "btrfs|ext4|xfs:///dev/DISK:/g1")],
    force: Annotated[bool, typer.Option(
        "--force", help="Install onto a disk that holds data, or an unsealed snapshot.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan; write nothing.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Do not ask: everything on the disk is destroyed.")] = False,
    hostname: Annotated[str, typer.Option("--hostname", help="/etc/hostname.")] = "gentoo",
    lineage: Annotated[bool, typer.Option(
        "--lineage", help="zfs/btrfs: the whole lineage, clones as clones.")] = False,
    runtime: Annotated[bool, typer.Option(
        "--runtime", help="zfs/btrfs: a writable clone of the installed generation boots "
        "by default (the sealed one is the fallback).")] = False,
    kernel: Annotated[str | None, typer.Option(
        "--kernel", help="Kernel version in <dom0_root>/kernels/current (default: newest).")
    ] = None,
    esp_mib: Annotated[int, typer.Option("--esp-mib", help="Size of the ESP.")] = 512,
    esp: Annotated[str | None, typer.Option(
        "--esp", metavar="PATH", help="An existing pool: the machine's ESP (where it is "
        "mounted, or its vfat device) for the boot entries.")] = None,
    known_hosts: Annotated[str | None, typer.Option(
        "--known-hosts", envvar="G2D_SSH_KNOWN_HOSTS", metavar="FILE",
        help="A remote source: the known_hosts file pinning its host key.")] = None,
    identity: Annotated[str | None, typer.Option(
        "--identity", envvar="G2D_SSH_IDENTITY", metavar="FILE",
        help="A remote source: the ssh client key.")] = None,
) -> None:  # fmt: skip
    """Install a sealed generation onto a disk and make it boot (asks first)."""
    from contextlib import ExitStack

    from g2d.hosts.open import host_for
    from g2d.install.request import InstallRequest, apply_install, prepare_install
    from g2d.settings import load_settings

    request = InstallRequest(work.removeprefix("work="), boot, force=force, hostname=hostname,
                             lineage=lineage, runtime=runtime, kernel=kernel,
                             esp_mib=esp_mib, esp=esp)  # fmt: skip
    settings = load_settings()
    with ExitStack() as undo:
        source_host = host_for(request.target.host, known_hosts=known_hosts, key=identity)
        if hasattr(source_host, "close"):
            undo.callback(source_host.close)
        prepared = prepare_install(request, source_host=source_host,
                                   kernels=settings.dom0_root / "kernels",
                                   state_dir=settings.state_dir)  # fmt: skip
        typer.echo(prepared.render())
        if dry_run:
            typer.echo("dry run: nothing was written")
            return
        target = prepared.plan.boot.device or f"pool {prepared.plan.boot.pool}"
        if not yes:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise NotConfirmed(
                    f"not installing onto {request.boot_target.argument}: no terminal to ask "
                    "for confirmation; nothing was written",
                    hint="read the plan (--dry-run), then pass --yes",
                )
            if not typer.confirm(f"Everything on {target} is destroyed. Install?"):
                raise NotConfirmed(f"not installing onto {request.boot_target.argument}: "
                                   "not confirmed; nothing was written")  # fmt: skip
        outcome = apply_install(prepared, yes=True)
    facts, done = outcome.facts, outcome.boot
    typer.echo(f"installed {prepared.plan.source} onto {request.boot_target.argument}")
    typer.echo(f"root: {' '.join(facts.kernel_root_args())}")
    entries = ", ".join(outcome.esp_files) or "none"
    typer.echo(f"boot entries: {entries}; default {done.default}, fallback "
               f"{done.fallback or '-'}; kernel {done.kernel}")  # fmt: skip
    for warning in done.warnings:
        typer.echo(f"warning: {warning}", err=True)
