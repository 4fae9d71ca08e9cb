"""After ``zfs receive -u``: check what arrived, make it safe to mount, mount it.

Post-condition first (zfs_autobackup's lesson: exit codes have been wrong before): the
snapshot must exist on the receiver with the ``guid`` of the one sent. A cut-off full
stream leaves nothing on zfs-fuse and OpenZFS (without ``-s``); should a dataset with no
snapshot be left anyway, it is destroyed before raising.

A new clone is checked too: zfs finds its origin by guid, and within one pool an original
and its copy share that guid, so the one zfs picked may not be the one meant.

Then two properties, both explained in docs/storage-zfs.md:
- ``mountpoint``: ``send -p`` carries the sender's own mountpoint (``/`` for a system
  root), and zfs-fuse has no ``recv -x``; received, it would mount over the sender's path
  or collide with it ("directory is not empty"). ``zfs inherit mountpoint`` masks the
  received value, and later incremental receives do not bring it back.
- ``atime=off``: reading a file in a mounted copy updates atimes, which counts as a change
  "since the most recent snapshot" and makes the next incremental receive fail.
"""

from __future__ import annotations

from g2d.hosts.base import Host
from g2d.storage.base import NotFound, SnapRef, SnapshotInfo, StorageError
from g2d.storage.zfs_props import pool_of, read_rows, snapshot_info

_NATIVE = (
    "type", "guid", "creation", "createtxg", "used", "userrefs", "origin",
    "mountpoint", "mounted", "canmount", "atime",
)  # fmt: skip


def finish_receive(host: Host, name: str, sent: SnapshotInfo) -> SnapshotInfo:
    ref = SnapRef(name, sent.ref.name)
    try:
        rows = read_rows(host, [name], depth=1, native=_NATIVE)
    except NotFound:
        rows = {}
    if str(ref) not in rows:
        left = bool(rows) and not any("@" in n for n in rows)
        if left:  # a half-received dataset with no snapshot: nothing anyone can use
            host.run(["zfs", "destroy", name])
        raise StorageError(
            f"the receive into {name} did not complete: {ref} is missing"
            + (f"; removed the partial {name}" if left else ""),
            hint="the source is untouched; run the transfer again",
        )
    got = snapshot_info(rows[str(ref)], frozenset(), ())  # just made: no hold, no clone
    if got.guid != sent.guid:
        raise StorageError(
            f"{ref} has guid {got.guid}, but the snapshot sent ({sent.ref}) has guid {sent.guid}",
            hint="the receiver holds a different snapshot under that name",
        )
    row = rows[name]
    origin = row.get("origin")
    if origin and [n for n in rows if "@" in n] == [str(ref)]:  # a clone this receive made
        _refuse_ambiguous_origin(host, name, origin)
    if row.source("mountpoint") == "received":
        host.run(["zfs", "inherit", "mountpoint", name])
        row = read_rows(host, [name], native=_NATIVE, user=False)[name]
    if row.source("atime") != "local":
        host.run(["zfs", "set", "atime=off", name])
    mountable = row.get("canmount") == "on" and row.get("mountpoint") not in ("none", "legacy")
    if mountable and row.get("mounted") != "yes":
        host.run(["zfs", "mount", name])
    return got


def _refuse_ambiguous_origin(host: Host, name: str, origin: str) -> None:
    """zfs finds a clone stream's origin by guid; where two snapshots of the pool have that
    guid (an original and its copy), which one it took is a guess (zfs-fuse took the
    original in most runs here). A lineage with a guessed parent is worse than none."""
    guids = host.run(["zfs", "get", "-Hp", "-r", "-o", "name,value", "guid", pool_of(name)])
    pairs = [line.split("\t") for line in guids.lines() if line]
    wanted = next(guid for snap, guid in pairs if snap == origin)
    twins = [snap for snap, guid in pairs if guid == wanted and snap != origin and "@" in snap]
    if twins:
        host.run(["zfs", "destroy", "-r", name])  # -r: its one snapshot, just received
        raise StorageError(
            f"the receive made {name} a clone of {origin}, but {', '.join(twins)} has the same "
            f"guid: zfs cannot tell which one the stream meant; removed {name}",
            hint="replicate a lineage to another pool or host",
        )
