"""The stream commands, and after ``zfs receive -u``: check what arrived, make it safe to
mount (``finish_receive``, one volume; or, for a replication, ``replica_fixes`` on what one
read of the target shows, every volume in one command per fix).

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

from collections.abc import Iterable, Mapping

from g2d.hosts.base import Host
from g2d.storage.base import Caps, NotFound, SnapRef, SnapshotInfo, StorageError
from g2d.storage.zfs_props import Row, pool_of, read_rows, snapshot_info

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


# --- for a replication: the same commands and checks, from reads it makes anyway -------------


def send_argv(caps: Caps, ref: SnapRef, base: SnapRef | None = None) -> list[str]:
    """``ZfsBackend.send_stage``'s command, for a snapshot the caller has just read."""
    return [
        "zfs", "send",
        *(["-p"] if caps.extra.get("send_props") else []),  # carry g2d:* properties
        *(["-i", str(base)] if base is not None else []),  # a clone: from its origin
        str(ref),
    ]  # fmt: skip


def receive_argv(caps: Caps, name: str) -> list[str]:
    """``ZfsBackend.receive_stage``'s command (no force), for a name the caller has just
    read: a new volume, or one whose newest snapshot the stream starts from."""
    return [
        "zfs", "receive",
        "-u",  # mount nothing: the mountpoint a stream brings is masked first
        *(["-x", "mountpoint"] if caps.extra.get("recv_exclude") else []),
        name,
    ]  # fmt: skip


def clear_cut_off(host: Host, name: str) -> bool:
    """After a failed receive into the new volume ``name``: destroy it if it was left
    without a snapshot (zfs-fuse and OpenZFS without ``-s`` leave nothing; this makes
    sure). True if something was removed."""
    try:
        rows = read_rows(host, [name], depth=1, native=("type",), user=False)
    except NotFound:
        return False
    if any("@" in n for n in rows):
        return False
    host.run(["zfs", "destroy", name])
    return True


def read_guids(host: Host, pool: str) -> list[tuple[str, str]]:
    """(snapshot, guid) for every snapshot of ``pool`` (one command)."""
    # every dataset, not only snapshots: zfs-fuse's `get` has no `-t`
    done = host.run(["zfs", "get", "-Hp", "-r", "-o", "name,value", "guid", pool])
    pairs = (line.split("\t") for line in done.lines() if line)
    return [(name, guid) for name, guid in pairs if "@" in name]


def guid_twins(guids: Iterable[tuple[str, str]], wanted: Mapping[str, str]) -> dict[str, list[str]]:
    """For each ``guid -> the snapshot meant`` in ``wanted``: the other snapshots (of
    ``read_guids``) with that guid. A clone stream names its origin by guid only, so with a
    twin in the pool which one zfs attaches the clone to is a guess."""
    out: dict[str, list[str]] = {}
    for snap, guid in guids:
        if guid in wanted and snap != wanted[guid]:
            out.setdefault(guid, []).append(snap)
    return out


def replica_fixes(rows: Mapping[str, Row], names: Iterable[str]) -> list[list[str]]:
    """The commands that make received volumes safe to mount (see the module docstring),
    each for all of ``names`` that need it: a received ``mountpoint`` masked, ``atime``
    off unless it is off already or set on the replica."""
    masked, atime = [], []
    for name in names:
        row = rows.get(name)
        if row is None:
            continue
        if row.source("mountpoint") == "received":
            masked.append(name)
        if row.get("atime") != "off" and row.source("atime") != "local":
            atime.append(name)
    return [
        *([["zfs", "inherit", "mountpoint", *masked]] if masked else []),
        *([["zfs", "set", "atime=off", *atime]] if atime else []),
    ]
