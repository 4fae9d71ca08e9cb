"""Where a deploy may put its new generation, checked before anything is made.

``work`` names a lineage (``zfs://tank/sys``: the next free ``gN`` below it) or a
generation that does not exist yet (``zfs://tank/sys/g5``). An existing generation is
refused: a deploy never changes one. The pool must exist (ZFS), or the lineage's directory
(btrfs, plain); the lineage's own dataset is created with the generation when missing.
"""

from __future__ import annotations

import dataclasses

from g2d.core.errors import InvalidTarget
from g2d.core.lineage import GenName, LineageError
from g2d.core.uri import Target
from g2d.storage.base import BackendKind
from g2d.storage.lineage_site import LineageSite


def generation_target(site: LineageSite, volume: str) -> Target:
    """The URI of ``volume`` on the site's backend and host (as ``g2d lineage`` takes it)."""
    return dataclasses.replace(site.target, name=volume, snapshot=None)


def lineage_target(site: LineageSite) -> Target:
    return dataclasses.replace(site.target, name=site.root, snapshot=None)


def check_new_generation(site: LineageSite) -> tuple[GenName, str]:
    """The name and volume of the generation a deploy to ``site`` makes; refuses an existing
    one, a missing pool and a missing lineage directory."""
    backend = site.backend
    if backend.kind is BackendKind.zfs:
        if not backend.exists(site.pool):
            raise InvalidTarget(str(site.target), f"ZFS pool {site.pool} does not exist",
                                hint="zpool list shows the pools; create or import it")  # fmt: skip
    elif not backend.host.run(["test", "-d", site.root], check=False).ok:
        raise InvalidTarget(str(site.target), f"the lineage directory {site.root} does not exist",
                            hint=f"create it first: mkdir {site.root}")  # fmt: skip
    lineage = site.load()
    if site.generation is None:
        gen = lineage.next_gen()
        return gen, f"{site.root.rstrip('/')}/{gen}"
    if backend.exists(site.generation) or lineage.find(site.generation) is not None:
        raise LineageError(
            f"{site.target} exists; a deploy makes a new generation and never changes one",
            hint=f"deploy to the lineage ({lineage_target(site)}) to make {lineage.next_gen()}, "
            "or update this one with g2d update",
        )
    leaf = site.generation.rstrip("/").rpartition("/")[2]
    return GenName.parse(leaf), site.generation
