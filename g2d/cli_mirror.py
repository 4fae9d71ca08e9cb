"""``g2d mirror <type> <protocol> [profile]``: the mirror g2d would use, as ``mirror.sh`` did.

Mirrors without a recent measurement are probed first (``--probe`` probes them all); the
measurements are kept in the state directory for the next run. For ``releases`` a profile
(``plasma``, ``openrc``, ``gnome/systemd``...) picks the stage3 variant, and the answer is
the signed ``latest-stage3-<arch>-<variant>.txt`` that ``g2d stage3`` resolves and verifies.
Registered on ``g2d.cli.app`` by one import line in cli.py.
"""

from __future__ import annotations

import json
import platform
from typing import Annotated, Any

import typer

from g2d.cli import app
from g2d.core.errors import G2dUserError

MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "riscv64": "riscv"}


class ProfileNotForType(G2dUserError):
    """A profile was given for a type other than releases."""

    def __str__(self) -> str:
        return f"a profile selects a stage3 variant; {self.args[0]} mirrors take none"


def host_arch() -> str:
    machine = platform.machine()
    return MACHINE_ARCH.get(machine, machine)


@app.command("mirror")
def mirror(
    resource: Annotated[str, typer.Argument(help="releases, repos, snapshots, distfiles, ...")],
    protocol: Annotated[
        str, typer.Argument(help="http (takes https too), https, rsync, ssh, file, or any")
    ],
    profile: Annotated[
        str | None, typer.Argument(help="releases only: plasma, openrc, gnome/systemd, ...")
    ] = None,
    arch: Annotated[
        str | None, typer.Option("--arch", help="Stage3 arch; default: this machine's.")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every candidate, best first, with its health.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ranking as JSON.")] = False,
    probe_all_: Annotated[
        bool, typer.Option("--probe", help="Measure every candidate now, not only stale ones.")
    ] = False,
) -> None:
    """Print the mirror URL g2d would use for a resource type and protocol."""
    from g2d.core.mirrors import HEALTH_TTL, Protocol, Resource, candidates, stage3_pointer
    from g2d.core.release_files import variant_for
    from g2d.settings import load_settings
    from g2d.sources.mirror_health import HealthStore, now_utc, probe_all
    from g2d.sources.mirror_lists import mirrors_for

    kind = _parse(Resource, resource, "type")
    proto = _parse(Protocol, protocol, "protocol")
    if profile is not None and kind is not Resource.releases:
        raise ProfileNotForType(str(kind), hint="drop the profile, or ask for releases")
    arch = arch or host_arch()
    settings = load_settings()
    store = HealthStore.in_state_dir(settings.state_dir)
    urls = list(mirrors_for(settings, kind))
    now = now_utc()
    first = candidates(kind, urls, proto, store.load(), now=now)  # NoMirror if none fits
    known = store.load()
    stale = [
        u for u in first if probe_all_ or u not in known or now - known[u].checked > HEALTH_TTL
    ]
    probe_all(stale, kind, store=store, arch=arch)
    health = store.load()
    ranked = candidates(kind, urls, proto, health, now=now_utc())
    variant = variant_for(profile) if profile else None

    def answer(url: str) -> str:
        return stage3_pointer(url, arch, variant) if variant else url

    if as_json:
        rows = [_row(u, answer(u), health.get(u)) for u in ranked]
        data = {"type": str(kind), "protocol": str(proto), "chosen": answer(ranked[0])}
        typer.echo(json.dumps({**data, "ranking": rows}, indent=2))
    elif show_all:
        for url in ranked:
            typer.echo(f"{answer(url)}\t{_describe(health.get(url))}")
    else:
        typer.echo(answer(ranked[0]))


def _parse(enum_type: Any, text: str, what: str) -> Any:
    try:
        return enum_type(text)
    except ValueError:
        names = ", ".join(enum_type.__members__)
        raise typer.BadParameter(f"{text!r} is not a mirror {what} ({names})") from None


def _row(url: str, answer: str, h: Any) -> dict[str, Any]:
    return {"mirror": url, "url": answer, "health": h.to_json() if h else None}


def _describe(h: Any) -> str:
    if h is None:
        return "not measured"
    if not h.reachable:
        return f"unreachable: {h.error}"
    fresh = h.fresh_as_of.strftime("%Y-%m-%d %H:%M UTC") if h.fresh_as_of else "freshness unknown"
    latency = f"{h.latency * 1000:.0f} ms" if h.latency is not None else "latency unknown"
    return f"reachable, {latency}, as of {fresh}"
