"""Holds: ``zfs hold``/``release``, and where ``zfs holds`` cannot list them, their tags.

zfs-fuse can hold and release, and counts holds in ``userrefs``, but ``zfs holds`` dies
("pyzfs.py not found"). There the tags are also written to ``g2d:holds`` on the snapshot
(comma-separated, set locally). The tag is recorded before the hold and forgotten after
the release, so a crash in between leaves a stale tag, never a hold g2d cannot name; and
while ``userrefs`` is 0 the property is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from g2d.core.plan import Plan
from g2d.storage.base import SnapRef, SnapshotInfo
from g2d.storage.zfs_props import HOLDS_KEY, Row, check_snapname

if TYPE_CHECKING:
    from g2d.storage.zfs import ZfsBackend


def read_holds(z: ZfsBackend, snaps: Sequence[Row]) -> dict[str, frozenset[str]]:
    """Hold tags per snapshot (rows need ``userrefs``, and ``g2d:holds`` on zfs-fuse)."""
    held = [r for r in snaps if r.number("userrefs")]
    if not z.caps.list_holds:
        return {r.name: r.tracked_holds() for r in held}
    if not held:
        return {}
    tags: dict[str, set[str]] = {}
    for line in z.host.run(["zfs", "holds", "-H", *(r.name for r in held)]).lines():
        snap, tag, *_ = line.split("\t")  # name, tag, timestamp
        tags.setdefault(snap.strip(), set()).add(tag.strip())
    return {name: frozenset(found) for name, found in tags.items()}


def hold_plan(z: ZfsBackend, ref: SnapRef, tag: str) -> Plan:
    check_snapname(tag, "hold tag")
    held = z.snapshot(ref).holds
    title = f"hold {ref} as {tag}"
    if tag in held:
        return Plan(title)
    steps = [z.step(["zfs", "hold", tag, str(ref)], f"hold {ref} with tag {tag}")]
    if not z.caps.list_holds:
        tags = ",".join(sorted(held | {tag}))
        why = f"record hold tag {tag} in {HOLDS_KEY} (zfs holds cannot list it here)"
        steps.insert(0, z.step(["zfs", "set", f"{HOLDS_KEY}={tags}", str(ref)], why))
    return Plan.of(title, steps)


def hold_many_plan(z: ZfsBackend, snaps: Sequence[SnapshotInfo], tag: str) -> Plan:
    """``hold_plan`` for several snapshots whose holds the caller has just read: one
    ``zfs hold`` for all of them (and where ``zfs holds`` cannot list, one ``zfs set`` of
    ``g2d:holds`` per distinct tag list, before it)."""
    check_snapname(tag, "hold tag")
    todo = [s for s in snaps if tag not in s.holds]
    title = f"hold {len(todo)} snapshot(s) as {tag}"
    if not todo:
        return Plan(title)
    names = [str(s.ref) for s in todo]
    steps = [z.step(["zfs", "hold", tag, *names], f"hold {', '.join(names)} with tag {tag}")]
    if not z.caps.list_holds:
        by_tags: dict[str, list[str]] = {}
        for s in todo:
            by_tags.setdefault(",".join(sorted(s.holds | {tag})), []).append(str(s.ref))
        why = f"record hold tag {tag} in {HOLDS_KEY} (zfs holds cannot list it here)"
        sets = [z.step(["zfs", "set", f"{HOLDS_KEY}={tags}", *refs], why)
                for tags, refs in by_tags.items()]  # fmt: skip
        steps = [*sets, *steps]
    return Plan.of(title, steps)


def release_plan(z: ZfsBackend, ref: SnapRef, tag: str) -> Plan:
    check_snapname(tag, "hold tag")
    held = z.snapshot(ref).holds
    title = f"release hold {tag} on {ref}"
    if tag not in held:
        return Plan(title)
    steps = [z.step(["zfs", "release", tag, str(ref)], title)]
    if not z.caps.list_holds:
        rest = ",".join(sorted(held - {tag}))
        argv = ["zfs", "set", f"{HOLDS_KEY}={rest}", str(ref)]
        if not rest:
            argv = ["zfs", "inherit", HOLDS_KEY, str(ref)]
        steps.append(z.step(argv, f"forget hold tag {tag} in {HOLDS_KEY}"))
    return Plan.of(title, steps)
