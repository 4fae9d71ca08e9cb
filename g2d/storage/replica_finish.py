"""After a replication's streams: check what arrived and bring the target up to date, from
one read of the target, with one command per kind of change rather than one per volume.

``finish_plan`` is planned from the target as read after the streams (or before them, when
nothing was sent), and so also finishes what an earlier run received but did not live to
finish: it looks at every volume of the lineage on the target, not only the new ones.

- the post-condition (ZFS; btrfs and plain check each stream in ``finish_receive``): every
  snapshot sent is on the target with the guid it was sent with, and a new clone's origin
  is the target's copy of its origin (zfs finds it by guid; docs/storage-zfs.md);
- ZFS volumes made safe to mount (``zfs_recv.replica_fixes``): a received ``mountpoint``
  masked, ``atime=off``; one ``zfs inherit`` and one ``zfs set`` for all of them;
- the ``g2d:*`` keys whose value differs from the source volume's now (ZFS: one ``zfs set
  key=value`` for all volumes with that pair);
- the ``g2d-sealed`` hold on sealed snapshots that lack it (ZFS: one ``zfs hold``, and
  where ``zfs holds`` cannot list, one ``zfs set g2d:holds`` before it);
- with ``mount``, every volume that can mount and is not mounted, mounted.

Every step is safe to run twice, except a hold (zfs refuses a tag twice), which a re-run
plans again from what it reads, so only where the hold is still missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from g2d.core.lineage import SEAL_HOLD, Meta
from g2d.core.plan import Plan, Step, chained
from g2d.core.replication import Side, Transfer, TransferKind, leaf_of
from g2d.storage.base import Backend, BackendKind, SnapRef, SnapshotInfo, StorageError

if TYPE_CHECKING:
    from g2d.storage.zfs import ZfsBackend
    from g2d.storage.zfs_props import Row


@dataclass(frozen=True)
class Finish:
    plan: Plan  # all on the target host
    held: tuple[SnapRef, ...]
    updated: tuple[str, ...]  # target volumes whose g2d metadata is brought up to date
    fixed: tuple[str, ...]  # ZFS volumes made safe to mount


def sealed(snap: SnapshotInfo) -> bool:
    return Meta.sealed in snap.meta or SEAL_HOLD in snap.holds


def meta_updates(source: Side, target: Side) -> dict[str, dict[str, str]]:
    """Per target volume, the ``g2d:*`` keys whose value differs from the source volume's
    now. A stream carries the metadata as it was at its snapshot: btrfs and plain carry
    the volume's keys of that moment (a seal marks the generation sealed after its
    snapshot), and nothing is sent for a change made after the newest snapshot (retire).
    Keys are set, never removed: a replica may carry more."""
    out: dict[str, dict[str, str]] = {}
    for leaf, vol in source.volumes.items():
        have = target.volumes.get(leaf)
        if have is not None:
            items = {k: v for k, v in vol.meta.items() if have.meta.get(k) != v}
            if items:
                out[have.name] = items
    return out


def unheld(source: Side, target: Side) -> list[SnapshotInfo]:
    """Target snapshots that are sealed (marked so, or their source snapshot is) and lack
    the seal's hold."""
    src = {s.guid: s for snaps in source.snapshots.values() for s in snaps}
    return [
        s for snaps in target.snapshots.values() for s in snaps
        if SEAL_HOLD not in s.holds
        and (Meta.sealed in s.meta or (s.guid in src and sealed(src[s.guid])))
    ]  # fmt: skip


def check_arrived(target: Side, sent: Sequence[Transfer], source_root: str) -> None:
    """Every snapshot sent is on the target with its guid; a new clone hangs off the copy
    of its origin. (ZFS: exit codes have been wrong before, zfs_autobackup's lesson.)"""
    have = {str(s.ref): s for snaps in target.snapshots.values() for s in snaps}
    for t in sent:
        got = have.get(str(t.target_ref))
        if got is None:
            raise StorageError(
                f"the receive into {t.target} did not complete: {t.target_ref} is missing",
                hint="the source is untouched; run the replication again",
            )
        if got.guid != t.snap.guid:
            raise StorageError(
                f"{t.target_ref} has guid {got.guid}, but the snapshot sent ({t.snap.ref}) "
                f"has guid {t.snap.guid}",
                hint="the receiver holds a different snapshot under that name",
            )
        if t.kind is TransferKind.clone and t.base is not None:
            leaf = leaf_of(target.root, t.target) or ""
            base_leaf = leaf_of(source_root, t.base.volume) or ""
            meant = SnapRef(target.volume_name(base_leaf), t.base.name)
            origin = target.volumes[leaf].origin
            if origin != meant:
                raise StorageError(
                    f"the receive made {t.target} a clone of {origin}, not of {meant}",
                    hint="another snapshot in the target pool has the same guid; replicate "
                    "to another pool or host",
                )


def finish_plan(
    target: Backend,
    source: Side,
    after: Side,
    rows: Mapping[str, Row],
    *,
    mount: bool = False,
) -> Finish:
    """The steps that bring the target (as read: ``after``, and for ZFS its ``rows``) up to
    date with the source. Changes nothing."""
    title = f"finish the replica {after.root} on {target.host.name}"
    steps: list[Step] = []
    fixed: list[str] = []
    names = [v.name for v in after.volumes.values()]
    if target.kind is BackendKind.zfs:
        from g2d.storage.zfs_recv import replica_fixes

        for argv in replica_fixes(rows, names):
            steps.append(Step.run(target.host.name, argv, _why(argv)))
            fixed += [n for n in argv[3:] if n not in fixed]
    updates = meta_updates(source, after)
    steps += _meta_steps(target, updates)
    todo = unheld(source, after)
    steps += _hold_steps(target, todo)  # last: a hold is the one change not safe to repeat
    if target.kind is BackendKind.zfs:
        steps = chained(steps)  # one command on the target, not one per change
    if mount and target.kind is BackendKind.zfs:
        steps += _mount_steps(target, rows, names)
    held = tuple(s.ref for s in todo)
    return Finish(Plan.of(title, steps), held, tuple(updates), tuple(fixed))


def _why(argv: Sequence[str]) -> str:
    if argv[1] == "inherit":
        return "mask the mountpoint the stream brought (it is the sender's)"
    return "atime=off: reading a copy must not change it before the next incremental"


def _meta_steps(target: Backend, updates: Mapping[str, Mapping[str, str]]) -> list[Step]:
    if target.kind is not BackendKind.zfs:
        return [s for name, items in updates.items()
                for s in target.set_meta_plan(name, items).steps]  # fmt: skip
    from g2d.storage.zfs_props import check_meta_values

    by_pair: dict[tuple[str, str], list[str]] = {}
    for name, items in updates.items():
        check_meta_values(items)
        for key, value in sorted(items.items()):
            by_pair.setdefault((key, value), []).append(name)
    return [Step.run(target.host.name, ["zfs", "set", f"{key}={value}", *names], f"set {key}")
            for (key, value), names in by_pair.items()]  # fmt: skip


def _hold_steps(target: Backend, snaps: Sequence[SnapshotInfo]) -> list[Step]:
    if not snaps:
        return []
    if target.kind is BackendKind.zfs:
        from g2d.storage.zfs_holds import hold_many_plan

        z: ZfsBackend = target  # type: ignore[assignment]
        return list(hold_many_plan(z, snaps, SEAL_HOLD).steps)
    return [s for snap in snaps for s in target.hold_plan(snap.ref, SEAL_HOLD).steps]


def _mount_steps(target: Backend, rows: Mapping[str, Row], names: Sequence[str]) -> list[Step]:
    steps = []
    for name in names:
        row = rows.get(name)
        if row is None or row.get("mounted") == "yes" or row.get("canmount") != "on":
            continue
        if row.get("mountpoint") in (None, "none", "legacy"):
            continue
        steps.append(Step.run(target.host.name, ["zfs", "mount", name], f"mount {name}",
                              done_if=["findmnt", "--source", name]))  # fmt: skip
    return steps
