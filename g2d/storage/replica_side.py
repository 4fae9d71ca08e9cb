"""What one side of a replication holds below its root, read in as few commands as the
backend allows: an unchanged lineage is checked by reading both sides, over ssh too, where
every command is a round trip.

ZFS reads the root, its children and their snapshots in one ``zfs get -r -d 2`` pair (two
commands for the whole lineage, plus ``zfs holds`` where it works). User properties appear
only under ``get all``, unless named: a side read for the ``keys`` the other side has (the
target of a replication: the source's ``g2d:*`` keys) is one ``zfs get``, a round trip
less. The other backends go through their ``volumes``/``snapshots`` queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from g2d.core.replication import Side, leaf_of
from g2d.storage.base import Backend, BackendKind, NotFound, SnapRef, SnapshotInfo, VolumeInfo

if TYPE_CHECKING:
    from g2d.storage.zfs import ZfsBackend
    from g2d.storage.zfs_props import Row


def read_side(backend: Backend, root: str, *, keys: Iterable[str] | None = None) -> Side:
    """The volumes directly below ``root`` and their snapshots, oldest first; empty when
    ``root`` is missing. With ``keys``, ZFS reads only those user properties (and
    ``g2d:holds``), in one command."""
    if backend.kind is BackendKind.zfs:
        return read_zfs(backend, root, keys)[0]  # type: ignore[arg-type]
    if not root_exists(backend, root):
        return Side(root, {}, {}, present=False)
    volumes = {leaf: v for v in backend.volumes(root) if (leaf := leaf_of(root, v.name))}
    snapshots = {leaf: tuple(backend.snapshots(v.name)) for leaf, v in volumes.items()}
    return Side(root, volumes, snapshots, present=True)


def root_exists(backend: Backend, root: str) -> bool:
    if backend.kind.names_are_paths():
        return backend.host.run(["test", "-d", root], check=False).ok
    return backend.exists(root)


def read_zfs(
    z: ZfsBackend, root: str, keys: Iterable[str] | None = None
) -> tuple[Side, dict[str, Row]]:
    """The side, and the rows it was made from (the native properties of ``NATIVE``)."""
    from g2d.storage.zfs_holds import read_holds
    from g2d.storage.zfs_props import HOLDS_KEY, NATIVE, check_dataset, read_rows, snapshot_info

    named = {} if keys is None else {"native": (*NATIVE, *sorted({*keys, HOLDS_KEY})),
                                     "user": False}  # fmt: skip
    try:  # children and their snapshots
        rows = read_rows(z.host, [check_dataset(root)], depth=2, **named)  # type: ignore[arg-type]
    except NotFound:
        return Side(root, {}, {}, present=False), {}
    volumes: dict[str, VolumeInfo] = {}
    for row in rows.values():
        leaf = None if row.is_snapshot else leaf_of(root, row.name)
        if leaf is not None:
            origin = row.get("origin")
            volumes[leaf] = VolumeInfo(row.name, SnapRef.parse(origin) if origin else None,
                                       row.number("used"), row.mounted_at, row.meta())  # fmt: skip
    snaps = [r for r in rows.values() if r.is_snapshot and leaf_of(root, r.name.split("@")[0])]
    snaps.sort(key=lambda r: r.number("createtxg") or 0)
    holds = read_holds(z, snaps)
    by_leaf: dict[str, list[SnapshotInfo]] = {leaf: [] for leaf in volumes}
    for row in snaps:
        leaf = leaf_of(root, row.name.split("@")[0])
        if leaf in by_leaf:
            by_leaf[leaf].append(snapshot_info(row, holds.get(row.name, frozenset()), ()))
    side = Side(root, volumes, {leaf: tuple(f) for leaf, f in by_leaf.items()}, present=True)
    return side, rows
