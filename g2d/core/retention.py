"""Which snapshots and generations a prune destroys, and why every other one stays.

Pure logic over a ``Lineage``. The policy keeps the newest N sealed snapshots of every
sealed generation (and optionally the newest M unsealed ones); retired generations go
whole. Then everything a kept item needs is kept too, to a fixed point:

- a kept volume needs its storage origin (a clone cannot outlive it) and the snapshot its
  generation was branched from (metadata parent);
- a kept snapshot needs the volume that holds it and its generation's parent snapshot, so
  a kept generation keeps its whole parent chain.

Never destroyed: anything held by another tag than the seal's own, anything in the protect
set (boot entries, the last common snapshot with a replica), volumes g2d does not manage,
generations whose state is unknown, and building or failed generations unless asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from g2d.core.lineage import Generation, GenState, Lineage, LineageError, Snap
from g2d.storage.base import SnapRef

Item = SnapRef | str  # a snapshot, or a volume by name


@dataclass(frozen=True)
class RetentionPolicy:
    keep_sealed: int = 3  # per generation; at least 1, so a generation never loses its seal
    keep_unsealed: int | None = None  # per generation; None keeps every unsealed snapshot
    drop_retired: bool = True  # destroy retired generations (what nothing kept needs)
    drop_failed: bool = False  # destroy failed generations too
    prune_building: bool = False  # apply the counts to building generations too

    def __post_init__(self) -> None:
        if (
            isinstance(self.keep_sealed, bool)
            or not isinstance(self.keep_sealed, int)
            or (self.keep_sealed < 1)
        ):
            raise LineageError(
                f"keep {self.keep_sealed!r} sealed snapshots: must be a whole number >= 1",
                hint="a generation always keeps its newest sealed snapshot",
            )
        if self.keep_unsealed is not None and (
            isinstance(self.keep_unsealed, bool)
            or not isinstance(self.keep_unsealed, int)
            or self.keep_unsealed < 0
        ):
            raise LineageError(
                f"keep {self.keep_unsealed!r} unsealed snapshots: must be a whole number >= 0"
            )


class Selection(NamedTuple):
    destroy: list[Item]  # in an order that can run: clones before origins, snapshots first
    keep: list[Item]
    reasons: dict[str, str]  # str(item) -> why it is destroyed or kept


def prune_selection(
    lineage: Lineage, policy: RetentionPolicy, protect: Iterable[str] = ()
) -> Selection:
    protected = set(protect)
    keep: dict[str, str] = {}
    drop: dict[str, str] = {}
    items: dict[str, Item] = {}
    for gen in lineage.generations:
        _judge(gen, policy, keep, drop, items)
    for snap in lineage.snapshots:
        if snap.held:
            keep[str(snap.ref)] = f"held by {', '.join(sorted(snap.held))}"
    for gen in lineage.generations:
        if gen.volume is not None and {gen.key, gen.volume.name} & protected:
            keep[gen.volume.name] = "protected"
        for snap in gen.snapshots:
            if {str(snap.ref), snap.name} & protected:
                keep[str(snap.ref)] = "protected"
    _close(lineage, keep)
    reasons = {k: keep.get(k) or drop[k] for k in items}
    kept = [items[k] for k in items if k in keep]
    destroyed = _order(lineage, [k for k in items if k not in keep])
    return Selection([items[k] for k in destroyed], kept, reasons)


def _judge(
    gen: Generation,
    policy: RetentionPolicy,
    keep: dict[str, str],
    drop: dict[str, str],
    items: dict[str, Item],
) -> None:
    """The policy's first word on one generation, before dependencies are followed."""
    if gen.volume is not None:
        items[gen.volume.name] = gen.volume.name
    for snap in gen.snapshots:
        items[str(snap.ref)] = snap.ref
    state = gen.state
    label = f"generation {gen.key}"
    whole = None
    if gen.gen is None:
        whole = f"{gen.key} is not a generation; g2d leaves it alone"
    elif gen.volume is not None and state is None:
        whole = f"{label} has no known state; g2d leaves it alone"
    elif state is GenState.failed and not policy.drop_failed:
        whole = f"{label} is failed (pruned only when asked)"
    elif state is GenState.building and not policy.prune_building:
        whole = f"{label} is building (pruned only when asked)"
    if whole is not None:
        for name in [gen.volume.name] if gen.volume else []:
            keep[name] = whole
        for snap in gen.snapshots:
            keep[str(snap.ref)] = whole
        return
    if (state is GenState.retired and policy.drop_retired) or state is GenState.failed:
        why = f"{label} is {state}"
        for name in [gen.volume.name] if gen.volume else []:
            drop[name] = why
        for snap in gen.snapshots:
            drop[str(snap.ref)] = f"snapshot of {why}"
        return
    if gen.volume is not None:
        keep[gen.volume.name] = f"volume of {label}, which is {state}"
    _count(gen.sealed, policy.keep_sealed, "sealed", label, keep, drop)
    unsealed = tuple(s for s in gen.snapshots if not s.sealed)
    if policy.keep_unsealed is None:
        for snap in unsealed:
            keep[str(snap.ref)] = "unsealed, and the policy keeps every unsealed snapshot"
    else:
        _count(unsealed, policy.keep_unsealed, "unsealed", label, keep, drop)


def _count(
    snaps: tuple[Snap, ...], n: int, what: str, label: str,
    keep: dict[str, str], drop: dict[str, str],
) -> None:  # fmt: skip
    newest = snaps[len(snaps) - n :] if n else ()
    for snap in snaps:
        if snap in newest:
            keep[str(snap.ref)] = f"{what}, one of the newest {n} of {label}"
        else:
            drop[str(snap.ref)] = f"{what}, older than the newest {n} of {label}"


def _close(lineage: Lineage, keep: dict[str, str]) -> None:
    """Keep what every kept item needs, until nothing more is added."""
    by_ref = {str(s.ref): s for s in lineage.snapshots}
    volumes = {g.volume.name: g for g in lineage.generations if g.volume}
    origin_of = {v: str(g.volume.origin) for v, g in volumes.items() if g.volume.origin}  # type: ignore[union-attr]
    for snap in lineage.snapshots:
        for clone in snap.info.clones:
            origin_of.setdefault(clone, str(snap.ref))
    work = deque(keep)  # first in, first out: the first reason found is the nearest one
    while work:
        item = work.popleft()
        needs: list[tuple[str, str]] = []
        if item in volumes:
            gen = volumes[item]
            if item in origin_of:
                needs.append((origin_of[item], f"origin of {item}"))
            parent = lineage.parent(gen) if gen.gen else None
            if parent is not None:
                needs.append((str(parent.ref), f"parent of {gen.key}, which is kept"))
        elif item in by_ref:
            snap = by_ref[item]
            needs.append((snap.ref.volume, f"holds {snap.ref}, which is kept"))
            owner = lineage.owner(snap)
            parent = lineage.parent(owner) if owner.gen else None
            if parent is not None:
                needs.append((str(parent.ref), f"parent of {owner.key}, whose {snap.name} is kept"))
        for need, why in needs:
            if (need in volumes or need in by_ref) and need not in keep:
                keep[need] = why
                work.append(need)


def _order(lineage: Lineage, doomed: list[str]) -> list[str]:
    """Clones before the snapshot they came from; a volume's snapshots before the volume."""
    doomed_set = set(doomed)
    before: dict[str, list[str]] = {k: [] for k in doomed}
    for gen in lineage.generations:
        if gen.volume is not None and gen.volume.origin is not None:
            origin = str(gen.volume.origin)
            if origin in doomed_set and gen.volume.name in doomed_set:
                before[origin].append(gen.volume.name)
    for snap in lineage.snapshots:
        ref = str(snap.ref)
        if ref in doomed_set:
            for clone in snap.info.clones:
                if clone in doomed_set and clone not in before[ref]:
                    before[ref].append(clone)
            if snap.ref.volume in doomed_set:
                before[snap.ref.volume].append(ref)
    out: list[str] = []
    seen: set[str] = set()

    def visit(item: str) -> None:
        if item in seen:
            return
        seen.add(item)
        for first in before[item]:
            visit(first)
        out.append(item)

    for item in doomed:
        visit(item)
    return out
