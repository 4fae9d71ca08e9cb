"""Where the btrfs backend keeps things: paths and xattr names, no I/O.

A volume is a subvolume named by its absolute path ``<dir>/<vol>``. Its snapshot ``name``
is the read-only subvolume ``<dir>/.g2d-snap/<vol>@<name>/<name>``: each snapshot sits in a
plain directory of its own (its *home*) because the kernel refuses to move a read-only
subvolume to another directory (EROFS: moving a directory rewrites its ``..``), while a plain
directory holding one moves freely. So rename, promote and receive move homes, never
snapshots; and a received snapshot is named ``<name>`` by the stream, as it should be.

Metadata, as xattrs:
- ``user.g2d.<key>`` on a volume's top directory: the volume's ``g2d:<key>``.
- ``user.g2d-snap.<key>`` on a snapshot's top directory, written in the short read-write
  window while the snapshot is made: the snapshot's own ``g2d:<key>``; travels with send.
- ``user.g2d-snap.<key>`` on a snapshot's home: later changes, ``=<value>`` or ``-`` for
  removed (a snapshot is never flipped back to read-write; see docs/storage-btrfs.md).
- ``user.g2d-hold.<tag>`` on a snapshot's home: holds.
- ``user.g2d-origin`` on a volume: the guid of the snapshot it was cloned from, so the
  origin survives rollback, promote and send/receive (parent_uuid does not).
"""

from __future__ import annotations

import posixpath
import re

from g2d.storage.base import SnapRef, StorageError

SNAP_DIR = ".g2d-snap"
VOL_META = "user.g2d."
SNAP_META = "user.g2d-snap."
HOLD = "user.g2d-hold."
ORIGIN = "user.g2d-origin"
ALL_ATTRS = r"^user\.g2d"  # getfattr -m: every attribute of ours

HOLD_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def check_volume_name(name: str) -> None:
    """An absolute, normalised path whose leaf can name snapshots."""
    leaf = posixpath.basename(name)
    if (
        not name.startswith("/")
        or posixpath.normpath(name) != name
        or name == "/"
        or leaf.startswith(".")
        or SNAP_DIR in name.split("/")
    ):
        raise StorageError(
            f"invalid btrfs volume name {name!r}",
            hint="a btrfs volume is an absolute path like /srv/sys/g1 (no '..', no leading dot)",
        )


def check_hold_tag(tag: str) -> None:
    if not HOLD_TAG.fullmatch(tag):
        raise StorageError(f"invalid hold tag {tag!r}", hint="tags look like g2d-sealed")


def parent_dir(name: str) -> str:
    return posixpath.dirname(name)


def leaf(name: str) -> str:
    return posixpath.basename(name)


def snap_dir(name: str) -> str:
    return posixpath.join(parent_dir(name), SNAP_DIR)


def snap_home(ref: SnapRef) -> str:
    return posixpath.join(snap_dir(ref.volume), f"{leaf(ref.volume)}@{ref.name}")


def snap_path(ref: SnapRef) -> str:
    return posixpath.join(snap_home(ref), ref.name)


def receiving_dir(name: str) -> str:
    """Where a stream for ``name`` lands before it is known good."""
    return posixpath.join(snap_dir(name), f".receiving-{leaf(name)}")


def aside_path(name: str, uuid: str) -> str:
    """Where a volume being replaced waits until its replacement is in place."""
    return posixpath.join(snap_dir(name), f".replaced-{leaf(name)}-{uuid}")


def ref_of(path: str) -> SnapRef | None:
    """The snapshot a subvolume path is, by the layout; None for anything else."""
    home = posixpath.dirname(path)
    homes = posixpath.dirname(home)
    if posixpath.basename(homes) != SNAP_DIR:
        return None
    vol_leaf, at, snap = posixpath.basename(home).rpartition("@")
    if not at or not vol_leaf or vol_leaf.startswith("."):
        return None
    try:
        return SnapRef(posixpath.join(posixpath.dirname(homes), vol_leaf), snap)
    except StorageError:
        return None


def is_volume_path(path: str) -> bool:
    return SNAP_DIR not in path.split("/")


def meta_attr(prefix: str, key: str) -> str:
    """``g2d:state`` -> ``user.g2d.state`` (or another prefix)."""
    return prefix + key.removeprefix("g2d:")


def meta_of(attrs: dict[str, str], prefix: str) -> dict[str, str]:
    """The ``g2d:*`` keys stored under ``prefix`` in an attribute dump."""
    return {f"g2d:{k[len(prefix) :]}": v for k, v in attrs.items() if k.startswith(prefix)}


def overlay(own: dict[str, str], later: dict[str, str]) -> dict[str, str]:
    """A snapshot's own keys with the later changes kept on its home applied."""
    meta = dict(own)
    for key, value in later.items():
        if value.startswith("="):
            meta[key] = value[1:]
        else:
            meta.pop(key, None)
    return meta
