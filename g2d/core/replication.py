"""Which snapshots a replication sends, from which base, in which order. Pure logic.

A lineage is replicated volume by volume, each volume's snapshots oldest first:

- the first snapshot of a volume that is a clone goes as an incremental stream from its
  origin (``zfs send -i origin``, ``btrfs send -p origin``), so the receiver makes it a
  clone of its own copy of that origin: ``g1@s -> g2 -> g3`` arrives as clones, not as
  independent full copies. A volume is therefore sent after the volume holding its origin;
- the first snapshot of any other volume goes as a full stream;
- every later snapshot goes as an incremental from the one before it.

What the target holds already is matched by *guid* (ZFS guid; on btrfs the received
uuid, which ``SnapshotInfo.guid`` reports): a target volume continues from its newest
snapshot, which must be one of the source volume's snapshots, so a second replication
sends only what is newer, and an unchanged lineage sends nothing. A target that changed
on its own (a snapshot the source does not have, a volume without snapshots) is refused,
never overwritten. The storage origin decides the clone structure, not the lineage's
``g2d:parent`` (which is metadata and travels with the data), because ``send`` works on
storage; after a ``promote`` the origins are reversed and the order follows them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from g2d.core.errors import G2dUserError
from g2d.storage.base import SnapRef, SnapshotInfo, VolumeInfo


class ReplicationError(G2dUserError):
    """A replication refused: the target diverged, or the source cannot be sent as asked."""


class TransferKind(enum.StrEnum):
    full = enum.auto()  # a whole snapshot, no base
    incremental = enum.auto()  # from the volume's previous snapshot
    clone = enum.auto()  # from the volume's origin: arrives as a clone of its copy

    def describe(self) -> str:
        return {"full": "full stream", "incremental": "incremental",
                "clone": "clone from its origin"}[self.value]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Transfer:
    """One stream: ``snap`` (on the source) into the volume ``target``, from ``base``."""

    kind: TransferKind
    snap: SnapshotInfo
    base: SnapRef | None  # on the source; None for a full stream
    target: str  # the volume on the target that receives it

    def __post_init__(self) -> None:
        if (self.base is None) != (self.kind is TransferKind.full):
            raise ValueError(f"a {self.kind} transfer of {self.snap.ref} with base {self.base}")

    @property
    def target_ref(self) -> SnapRef:
        return SnapRef(self.target, self.snap.ref.name)

    def __str__(self) -> str:
        base = f" from {self.base}" if self.base else ""
        return f"{self.snap.ref} -> {self.target_ref} ({self.kind.describe()}{base})"


@dataclass(frozen=True, slots=True)
class Side:
    """What one side holds directly below its root: volumes and their snapshots."""

    root: str
    volumes: Mapping[str, VolumeInfo]  # by leaf name ("g2")
    snapshots: Mapping[str, Sequence[SnapshotInfo]]  # by leaf name, oldest first
    present: bool | None = None  # whether the root itself exists, where the read told

    def volume_name(self, leaf: str) -> str:
        return f"{self.root.rstrip('/')}/{leaf}"


@dataclass(frozen=True, slots=True)
class ReplicationSet:
    """The transfers in the order they must run, and the volumes left out (with why)."""

    transfers: tuple[Transfer, ...]
    skipped: tuple[str, ...]


def leaf_of(root: str, name: str) -> str | None:
    """``g2`` for ``root/g2``; None for anything not directly below ``root``."""
    head, _, leaf = name.rpartition("/")
    return leaf if head == root.rstrip("/") and leaf and not leaf.startswith(".") else None


def plan_transfers(source: Side, target: Side) -> ReplicationSet:
    """Everything ``target`` lacks of ``source``, parents' snapshots before their clones."""
    order = _by_origin(source)
    transfers: list[Transfer] = []
    skipped: list[str] = []
    for leaf in order:
        snaps = list(source.snapshots.get(leaf, ()))
        name = source.volume_name(leaf)
        if not snaps:
            skipped.append(f"{name}: no snapshot to send (seal it to replicate it)")
            continue
        start = _continue_from(source, target, leaf, snaps)
        into = target.volume_name(leaf)
        for i in range(start, len(snaps)):
            snap = snaps[i]
            if i > 0:
                transfers.append(Transfer(TransferKind.incremental, snap, snaps[i - 1].ref, into))
                continue
            origin = source.volumes[leaf].origin
            if origin is not None and leaf_of(source.root, origin.volume) in source.volumes:
                transfers.append(Transfer(TransferKind.clone, snap, origin, into))
            else:  # no origin, or one outside the lineage: the volume arrives whole
                transfers.append(Transfer(TransferKind.full, snap, None, into))
    return ReplicationSet(tuple(transfers), tuple(skipped))


def _continue_from(source: Side, target: Side, leaf: str, snaps: list[SnapshotInfo]) -> int:
    """Index of the first snapshot the target's copy of ``leaf`` lacks (0: no copy yet)."""
    if leaf not in target.volumes:
        return 0
    name, have = target.volume_name(leaf), list(target.snapshots.get(leaf, ()))
    if not have:
        raise ReplicationError(
            f"{name} exists on the target but holds no snapshot: it is no replica of "
            f"{source.volume_name(leaf)}",
            hint="replicate into another root, or destroy it first",
        )
    guids = [s.guid for s in snaps]
    newest = have[-1]
    if newest.guid not in guids:
        common = [s for s in have if s.guid in guids]
        last = f"; the last common snapshot is {common[-1].ref}" if common else ""
        raise ReplicationError(
            f"{newest.ref} on the target is not a snapshot of {source.volume_name(leaf)}: "
            f"the target diverged{last}",
            hint="roll the target back to the last common snapshot (or destroy it), "
            "then replicate again",
        )
    return guids.index(newest.guid) + 1


def _by_origin(source: Side) -> list[str]:
    """Volume leaves, each after the volume holding its origin (storage origins form a
    forest); otherwise by name, so the order is stable."""
    placed: list[str] = []
    seen: set[str] = set()

    def place(leaf: str, path: tuple[str, ...]) -> None:
        if leaf in seen:
            return
        if leaf in path:
            raise ReplicationError(f"origins of {', '.join(path)} form a cycle")
        origin = source.volumes[leaf].origin
        parent = leaf_of(source.root, origin.volume) if origin else None
        if parent is not None and parent in source.volumes:
            place(parent, (*path, leaf))
        seen.add(leaf)
        placed.append(leaf)

    for leaf in sorted(source.volumes, key=_natural):
        place(leaf, ())
    return placed


def _natural(leaf: str) -> tuple[int, int, str]:
    """g2 before g10; generations before other volumes."""
    digits = leaf[1:]
    if leaf.startswith("g") and digits.isdigit():
        return (0, int(digits), leaf)
    return (1, 0, leaf)
