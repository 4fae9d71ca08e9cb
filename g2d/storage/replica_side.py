"""What one side of a replication holds below its root, read in as few commands as the
backend allows: an unchanged lineage is checked by reading both sides, over ssh too, where
every command is a round trip.

ZFS reads the root, its children and their snapshots in one ``zfs get -r -d 2`` pair (two
commands for the whole lineage, plus ``zfs holds`` where it works); the other backends go
through their ``volumes``/``snapshots`` queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from g2d.core.replication import Side, leaf_of
from g2d.storage.base import Backend, BackendKind, NotFound, SnapRef, SnapshotInfo, VolumeInfo

if TYPE_CHECKING:
    from g2d.storage.zfs import ZfsBackend


def read_side(backend: Backend, root: str) -> Side:
    """The volumes directly below ``root`` and their snapshots, oldest first; empty when
    ``root`` is missing."""
    if backend.kind is BackendKind.zfs:
        return _read_zfs(backend, root)  # type: ignore[arg-type]
    if not root_exists(backend, root):
        return Side(root, {}, {})
    volumes = {leaf: v for v in backend.volumes(root) if (leaf := leaf_of(root, v.name))}
    snapshots = {leaf: tuple(backend.snapshots(v.name)) for leaf, v in volumes.items()}
    return Side(root, volumes, snapshots)


def root_exists(backend: Backend, root: str) -> bool:
    if backend.kind.names_are_paths():
        return backend.host.run(["test", "-d", root], check=False).ok
    return backend.exists(root)


def _read_zfs(z: ZfsBackend, root: str) -> Side:
    from g2d.storage.zfs_holds import read_holds
    from g2d.storage.zfs_props import check_dataset, read_rows, snapshot_info

    try:
        rows = read_rows(z.host, [check_dataset(root)], depth=2)  # children and their snapshots
    except NotFound:
        return Side(root, {}, {})
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
    return Side(root, volumes, {leaf: tuple(found) for leaf, found in by_leaf.items()})
