"""Where a plain volume's pieces live on disk, and the xattr names that describe them.

A volume is a directory ``<dir>/<leaf>``. Everything g2d keeps beside it lives in
``<dir>/.g2d-snap/``: the snapshots ``<leaf>@<snap>``, and hidden work names (a leading
``.``) for copies being built, volumes set aside and trash being removed. Building under a
work name and renaming into place is what keeps a crash from leaving half a snapshot or
half a volume under a real name; ``rename(2)`` is atomic inside one file system, and the
work names share the volume's file system by living next to it.

Pure: no commands run here.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from g2d.storage.base import SnapRef, StorageError

SNAPDIR = ".g2d-snap"

# user metadata: g2d:<key> <-> user.g2d.<key>, on the top directory
USER_PREFIX = "user.g2d."
# the backend's own bookkeeping, never shown as metadata
OWN_PREFIX = "user.g2d-plain."
VOLUME = OWN_PREFIX + "volume"  # "1": this directory is a g2d volume (volumes() lists it)
ORIGIN = OWN_PREFIX + "origin"  # a clone's "vol@snap"; a directory has no origin of its own
GUID = OWN_PREFIX + "guid"  # a snapshot's identity, random, travels in the stream
CREATED = OWN_PREFIX + "created"  # a snapshot's creation time in epoch nanoseconds
SNAPKEYS = OWN_PREFIX + "snapkeys"  # keys set on the snapshot itself (not copied from the volume)
FORCE = OWN_PREFIX + "force"  # on a receive directory: the receive may replace the target
FOREIGN = OWN_PREFIX + "foreign"  # on a receive directory: a tree with no g2d identity (tree_send)
HOLD_PREFIX = OWN_PREFIX + "hold."  # one xattr per hold tag on a snapshot
SWAP_PREFIX = OWN_PREFIX + "swap."  # a finished rollback's token on the volume (for done_if)
XATTR_MATCH = r"^user\.g2d[.-]"  # getfattr -m: both families

_LEAF = re.compile(r"[A-Za-z0-9_+:][A-Za-z0-9_.:+-]{0,199}")
_SNAP = re.compile(r"[A-Za-z0-9_+:][A-Za-z0-9_.:+-]{0,199}")
TAG = re.compile(r"[A-Za-z0-9_.:+-]{1,100}")
_HINT_NAME = (
    "a plain volume is an absolute path whose last part takes letters, digits and _ . : + -"
)


def meta_to_xattr(key: str) -> str:
    return USER_PREFIX + key.removeprefix("g2d:")


def xattr_to_meta(name: str) -> str | None:
    if name.startswith(USER_PREFIX):
        return "g2d:" + name[len(USER_PREFIX) :]
    return None


def check_snap_name(snap: str) -> None:
    if not _SNAP.fullmatch(snap):
        raise StorageError(
            f"invalid snapshot name {snap!r}",
            hint="snapshot names take letters, digits and _.:+- and start with no '.' or '-'",
        )


def check_tag(tag: str) -> None:
    if not TAG.fullmatch(tag):
        raise StorageError(
            f"invalid hold tag {tag!r}", hint="tags take letters, digits and _ . : + -"
        )


@dataclass(frozen=True, slots=True)
class VolPath:
    """A volume's path and the paths of everything g2d keeps beside it."""

    path: str

    def __post_init__(self) -> None:
        p = self.path
        if not p.startswith("/") or p == "/" or posixpath.normpath(p) != p:
            raise StorageError(
                f"invalid plain volume name {p!r}: not a normalized absolute path", hint=_HINT_NAME
            )
        if "\n" in p or "\0" in p:
            raise StorageError(
                f"invalid plain volume name {p!r}: control characters", hint=_HINT_NAME
            )
        if not _LEAF.fullmatch(self.leaf):
            raise StorageError(
                f"invalid plain volume name {p!r}: last part {self.leaf!r} is not allowed",
                hint=_HINT_NAME,
            )

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def leaf(self) -> str:
        return posixpath.basename(self.path)

    @property
    def snapdir(self) -> str:
        return posixpath.join(self.parent, SNAPDIR)

    def snap(self, name: str) -> str:
        check_snap_name(name)
        return posixpath.join(self.snapdir, f"{self.leaf}@{name}")

    def work(self, purpose: str, snap: str | None = None) -> str:
        """A hidden work name in .g2d-snap: ``.<purpose>.<leaf>[@<snap>]``."""
        tail = f"{self.leaf}@{snap}" if snap is not None else self.leaf
        return posixpath.join(self.snapdir, f".{purpose}.{tail}")

    def ref(self, snap: str) -> SnapRef:
        return SnapRef(self.path, snap)


def snap_path(ref: SnapRef) -> str:
    return VolPath(ref.volume).snap(ref.name)


def in_snapdir(path: str) -> bool:
    """True for a path directly inside some ``.g2d-snap``: the only places g2d removes."""
    return (
        posixpath.normpath(path) == path
        and path.startswith("/")
        and posixpath.basename(posixpath.dirname(path)) == SNAPDIR
        and posixpath.basename(path) not in ("", ".", "..")
    )
