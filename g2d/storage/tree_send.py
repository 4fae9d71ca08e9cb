"""A ZFS or btrfs snapshot's tree as a plain stream, for a target that takes no zfs or btrfs
stream (an install onto ext4 or xfs).

The stream is the plain backend's tar format (``plain_stream``) read from a directory that
holds the snapshot's tree on the source host:

- btrfs: the read-only snapshot subvolume itself;
- ZFS: ``<mountpoint>/.zfs/snapshot/<name>`` where the ZFS shows it (OpenZFS, the volume
  mounted); else a temporary read-only clone at ``<pool>/g2d-tree-<guid>``, mounted under
  ``/run/g2d/tree``, destroyed once the stream is read (zfs-fuse has no ``.zfs``).

The tree carries no ``g2d`` identity of its own: the receiver stamps the sent snapshot's
guid, time and metadata on it (``PlainBackend.receive_stage(..., foreign=True)``), and the
stream's end marker still tells a complete stream from a cut-off one.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from g2d.core.plan import Step
from g2d.hosts.pipeline import Stage
from g2d.storage import btrfs_layout
from g2d.storage.base import Backend, BackendKind, SnapshotInfo, StorageError
from g2d.storage.plain_stream import Header, send_argv
from g2d.storage.zfs_busy import waits, while_busy
from g2d.storage.zfs_props import exists

log = logging.getLogger("g2d.storage")

MOUNT_DIR = "/run/g2d/tree"
CLONE_PREFIX = "g2d-tree-"
_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_BUSY_WAITS = waits(30)  # zfs-fuse lets go of a dataset a moment after its last reader


@dataclass(frozen=True)
class TreeSend:
    """Where the tree is read on the source host, and what makes and removes it."""

    backend: Backend
    info: SnapshotInfo
    top: str  # the directory whose contents are the snapshot's tree
    clone: str | None  # the temporary ZFS clone made to read it; None: read in place

    @property
    def argv(self) -> list[str]:
        parent, name = posixpath.split(self.top)
        return send_argv(parent, name, Header(None))

    def stage(self) -> Stage:
        return Stage.of(self.backend.host, self.argv)

    def setup_argv(self) -> list[str] | None:
        if self.clone is None:
            return None
        return ["zfs", "clone", "-o", f"mountpoint={self.top}", "-o", "readonly=on",
                "-o", f"g2d:temporary=read {self.info.ref} as a tree",
                str(self.info.ref), self.clone]  # fmt: skip

    def teardown_argv(self) -> list[str] | None:
        return None if self.clone is None else ["zfs", "destroy", "-f", self.clone]

    def plan_steps(self, host: str) -> list[Step]:
        """The clone and its removal as plan steps (shown around the stream's step)."""
        made, gone = self.setup_argv(), self.teardown_argv()
        if made is None or gone is None:
            return []
        return [Step.run(host, made, f"a read-only clone of {self.info.ref} to read its tree"),
                Step.run(host, gone, "remove the temporary clone")]  # fmt: skip


def tree_send(backend: Backend, info: SnapshotInfo, mountpoint: str | None) -> TreeSend:
    """How to read ``info``'s tree on its host; ``mountpoint``: its volume's, as listed
    (None: not mounted). Asks the host at most once (whether ``.zfs`` shows it)."""
    ref = info.ref
    if backend.kind is BackendKind.btrfs:
        return TreeSend(backend, info, btrfs_layout.snap_path(ref), None)
    if backend.kind is not BackendKind.zfs:
        raise StorageError(f"{ref}: a {backend.kind} snapshot is sent by its own backend")
    if mountpoint:
        shown = posixpath.join(mountpoint, ".zfs", "snapshot", ref.name)
        if backend.host.run(["test", "-d", shown], check=False).ok:
            return TreeSend(backend, info, shown, None)
    pool = ref.volume.split("/", 1)[0]
    tag = _SAFE.sub("_", info.guid)
    return TreeSend(backend, info, f"{MOUNT_DIR}/{tag}", f"{pool}/{CLONE_PREFIX}{tag}")


@contextmanager
def reading(send: TreeSend) -> Iterator[Stage]:
    """The tree's send stage, its temporary clone there for as long as the block runs (a
    clone left by a crashed earlier run is replaced)."""
    host = send.backend.host
    made = send.setup_argv()
    if made is None:
        yield send.stage()
        return
    assert send.clone is not None
    if exists(host, send.clone):
        log.info("removing %s, left by an earlier run", send.clone)
        _destroy(send)
    host.run(made)
    try:
        yield send.stage()
    finally:
        _destroy(send)


def _destroy(send: TreeSend) -> None:
    argv = send.teardown_argv()
    assert argv is not None
    host = send.backend.host
    while_busy(lambda: host.run(argv), _BUSY_WAITS, f"destroy {send.clone}")
    host.run(["rmdir", "--", send.top], check=False)  # the ZFS leaves its mount point
