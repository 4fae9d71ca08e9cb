"""What a destroy takes with it, and the order that destroys it safely.

zfs-fuse has no ``zfs destroy -n``, and ``-r``/``-R`` would decide at run time what goes,
so g2d computes it from the pool's state: the snapshots and children of a dataset, the
clones of every snapshot that goes (anywhere in the pool, recursively), and the holds on
them. The plan then names every victim: holds released first, then clones before the
snapshots they come from, snapshots before their dataset, children before parents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from g2d.core.plan import Plan
from g2d.storage.base import HasDependents, NotFound, SnapRef, StorageError
from g2d.storage.zfs_holds import read_holds
from g2d.storage.zfs_props import (
    HOLDS_KEY,
    Row,
    check_target,
    exists,
    origins,
    pool_of,
    read_rows,
)

if TYPE_CHECKING:
    from g2d.storage.zfs import ZfsBackend


@dataclass(frozen=True)
class Hold:
    snapshot: str
    tag: str | None  # None: a hold g2d cannot name (zfs-fuse counts it, cannot list it)
    count: int = 1

    def __str__(self) -> str:
        if self.tag is None:
            return f"{self.count} untracked hold(s) on {self.snapshot}"
        return f"hold {self.tag} on {self.snapshot}"


def destroy_order(rows: Mapping[str, Row], target: str) -> list[str]:
    """Everything a destroy of ``target`` takes, in a safe order (``target`` last).

    ``rows``: the whole pool (``read_rows(pool, recursive=True)``) with type, origin and
    createtxg."""
    children: dict[str, list[str]] = {}
    snapshots: dict[str, list[Row]] = {}
    clones: dict[str, list[str]] = {}
    for row in rows.values():
        if row.is_snapshot:
            snapshots.setdefault(row.name.split("@", 1)[0], []).append(row)
        else:
            parent = row.name.rpartition("/")[0]
            if parent:
                children.setdefault(parent, []).append(row.name)
            if origin := row.get("origin"):
                clones.setdefault(origin, []).append(row.name)
    order: list[str] = []

    def add_snapshot(name: str) -> None:
        for clone in sorted(clones.get(name, [])):
            add_dataset(clone)
        if name not in order:
            order.append(name)

    def add_dataset(name: str) -> None:
        for child in sorted(children.get(name, []), reverse=True):
            add_dataset(child)
        newest_first = sorted(
            snapshots.get(name, []), key=lambda r: r.number("createtxg") or 0, reverse=True
        )
        for snap in newest_first:
            add_snapshot(snap.name)
        if name not in order:
            order.append(name)

    if "@" in target:
        add_snapshot(target)
    else:
        add_dataset(target)
    return order


def _holds_of(z: ZfsBackend, rows: Mapping[str, Row], names: Sequence[str]) -> list[Hold]:
    """The holds on ``names`` (snapshots), tagged where the tag is known."""
    snaps = [rows[n] for n in names if rows[n].is_snapshot]
    tags = read_holds(z, snaps)
    found = []
    for row in snaps:
        known = sorted(tags.get(row.name, frozenset()))
        found += [Hold(row.name, tag) for tag in known]
        untracked = (row.number("userrefs") or 0) - len(known)
        if untracked > 0:
            found.append(Hold(row.name, None, untracked))
    return found


def destroy_plan(z: ZfsBackend, target: str | SnapRef, *, force: bool) -> Plan:
    name = check_target(target)
    if not exists(z.host, name):
        raise NotFound(name)
    native = ("type", "origin", "mounted", "createtxg", "userrefs", HOLDS_KEY)
    rows = read_rows(z.host, [pool_of(name)], recursive=True, native=native, user=False)
    order = destroy_order(rows, name)
    holds = _holds_of(z, rows, order)
    dependents = [n for n in order if n != name] + [str(h) for h in holds]
    if dependents and not force:
        raise HasDependents(name, dependents)
    if untracked := [h for h in holds if h.tag is None]:
        raise StorageError(
            f"{name}: cannot release {', '.join(str(h) for h in untracked)}",
            hint="this zfs cannot list hold tags; release them with 'zfs release TAG SNAP'",
        )
    steps = [
        z.step(["zfs", "release", h.tag, h.snapshot], f"release {h}")
        for h in holds
        if h.tag is not None
    ]
    for victim in order:
        if rows[victim].get("mounted") == "yes":
            # zfs-fuse: destroying a mounted dataset that was written to fails "busy"
            steps.append(z.step(["zfs", "unmount", victim], f"unmount {victim}"))
        steps.append(z.step(["zfs", "destroy", victim], f"destroy {victim}"))
    return Plan.of(f"destroy {name}", steps)


def rollback_plan(z: ZfsBackend, ref: SnapRef, *, destroy_newer: bool) -> Plan:
    check_target(ref)
    native = ("createtxg", "userrefs", HOLDS_KEY)
    rows = read_rows(z.host, [ref.volume], depth=1, native=native, user=False)
    if str(ref) not in rows:
        raise NotFound(str(ref))
    at = rows[str(ref)].number("createtxg") or 0
    snaps = sorted(
        (r for r in rows.values() if r.name.startswith(f"{ref.volume}@")),
        key=lambda r: r.number("createtxg") or 0,
    )
    newer = [r.name for r in snaps if (r.number("createtxg") or 0) > at]
    if newer and not destroy_newer:
        raise StorageError(
            f"{ref} is not the newest snapshot of {ref.volume}: {', '.join(newer)} came after it",
            hint="pass destroy_newer to destroy them with the rollback",
        )
    if newer:  # `rollback -r` destroys them: refuse if a clone or a hold needs one
        clones = origins(z.host, pool_of(ref.volume))
        blocking = [c for n in newer for c in sorted(clones) if clones[c] == n]
        blocking += [str(h) for h in _holds_of(z, rows, newer)]
        if blocking:
            raise HasDependents(
                str(ref),
                blocking,
                hint="the rollback would destroy snapshots these need; nothing was changed",
            )
    argv = ["zfs", "rollback", *(["-r"] if newer else []), str(ref)]  # -r: destroy newer
    why = f"roll {ref.volume} back to {ref}"
    if newer:
        why += f", destroying {', '.join(newer)}"
    return Plan.of(f"roll back to {ref}", [z.step(argv, why)])  # re-running it is harmless
