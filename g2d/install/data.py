"""The installed generation's bytes: the source snapshot sent into the new pool or file system.

ZFS and btrfs arrive by their own send/receive, ext4 and xfs by the plain backend's tar
stream (xattrs, ACLs, numeric owners, device nodes kept): a plain generation's own stream,
or a ZFS or btrfs snapshot's tree read on its host (``g2d.storage.tree_send``: in place, or
from a temporary read-only clone), all through the storage backends, from this machine or
from a source host over ssh (the stream then runs ``ssh host zfs send | zfs receive`` with
no byte through Python). By default only the one snapshot is sent; with ``lineage`` the
whole lineage arrives through ``g2d.storage.replicate`` (clones as clones, under their own
names), and a re-run sends only what the target still lacks.

A stream cut off half way leaves nothing under the target's name: the backend's
``finish_receive`` removes what arrived and raises; running the install again sends it anew.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from g2d.core.errors import CommandFailed, G2dUserError
from g2d.core.lineage import Lineage, Snap
from g2d.core.plan import Command, Step
from g2d.core.replication import Side, leaf_of, plan_transfers
from g2d.core.uri import FsKind, Target
from g2d.hosts.base import Host
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.storage.base import (
    Backend,
    BackendKind,
    NotFound,
    SnapRef,
    SnapshotInfo,
    StorageError,
    VolumeInfo,
)
from g2d.storage.btrfs_layout import receiving_dir
from g2d.storage.lineage import load_lineage
from g2d.storage.plain import PlainBackend
from g2d.storage.plain_layout import VolPath
from g2d.storage.plain_stream import receive_argv
from g2d.storage.replica_side import read_side
from g2d.storage.replica_steps import send_argv
from g2d.storage.replicate import replicate
from g2d.storage.sense import backend_class, backend_for
from g2d.storage.tree_send import TreeSend, reading, tree_send

log = logging.getLogger("g2d.install")


class SourceRefused(G2dUserError):
    """The source cannot be installed: no snapshot named, not sealed, or of the wrong kind."""


@dataclass(frozen=True)
class Source:
    """The snapshot to install, where it lives, and what the lineage says of it."""

    target: Target
    backend: Backend
    snap: Snap
    lineage: Lineage  # as read when the source was resolved

    @property
    def volume(self) -> VolumeInfo | None:
        """The generation's volume as the lineage listed it."""
        return self.lineage.owner(self.snap).volume

    @cached_property
    def send(self) -> Stage:
        """The send stage, made once: making it asks the host whether the snapshot exists."""
        return self.backend.send_stage(self.ref)

    @cached_property
    def tree(self) -> TreeSend:
        """A ZFS or btrfs snapshot read as a tree (for ext4, xfs); made once: on ZFS it may
        ask the host whether ``.zfs`` shows the snapshot."""
        mounted = self.volume.mountpoint if self.volume is not None else None
        return tree_send(self.backend, self.info, mounted)

    @property
    def ref(self) -> SnapRef:
        return self.snap.ref

    @property
    def info(self) -> SnapshotInfo:
        return self.snap.info

    @property
    def host(self) -> Host:
        return self.backend.host

    def __str__(self) -> str:
        return f"{self.host.name}:{self.ref}"


def resolve_source(target: Target, host: Host, *, force: bool = False) -> Source:
    """``work=`` to its snapshot (``@safe``: the newest sealed); refuse an unsealed one
    unless ``force``."""
    if target.snapshot is None:
        raise SourceRefused(
            f"{target} names no snapshot",
            hint=f"install a sealed snapshot, like {target.with_snapshot('safe')}",
        )
    backend = backend_for(target, host)
    volume = target.name
    # what the install reads of it: the snapshot, seals, sizes, origins; never its clones
    lineage = load_lineage(backend, posixpath.dirname(volume) or volume, clones=False)
    snap = lineage.resolve_ref(volume, target.snapshot)
    if not snap.sealed and not force:
        raise SourceRefused(
            f"{host.name}:{snap.ref} is not sealed",
            hint="seal it first (g2d lineage seal), or pass force to install it anyway",
        )
    return Source(target, backend, snap, lineage)


def lineage_size(source: Source) -> int:
    """Bytes the whole lineage holds (its volumes' ``used``), for a lineage install."""
    used = [g.volume.used for g in source.lineage.generations if g.volume is not None]
    return sum(u for u in used if u) or source_size(source)


def source_size(source: Source) -> int:
    """Bytes to make room for: the volume's ``used`` where the lineage listed it (on ZFS
    that counts its snapshots too: an upper bound), else ``referenced`` or ``du``."""
    if source.volume is not None and source.volume.used:
        return source.volume.used
    if source.backend.kind is BackendKind.zfs:
        done = source.host.run(["zfs", "get", "-Hp", "-o", "value", "referenced", str(source.ref)])
        return int(done.stdout.strip())
    done = source.host.run(["du", "-s", "-x", "--block-size=1", "--", source.ref.volume])
    return int(done.stdout.split()[0])


def target_kind(fs: FsKind, source: BackendKind) -> BackendKind:
    """The backend that receives: ZFS into ZFS, btrfs into btrfs; a plain generation
    arrives as a directory on any file system, btrfs included."""
    if fs is FsKind.zfs:
        return BackendKind.zfs
    if fs is FsKind.btrfs and source is BackendKind.btrfs:
        return BackendKind.btrfs
    return BackendKind.plain


def is_tree(source: Source, kind: BackendKind) -> bool:
    """A ZFS or btrfs snapshot into a plain target: its tree, not its own stream."""
    return kind is BackendKind.plain and source.backend.kind is not BackendKind.plain


def check_kinds(source: Source, fs: FsKind) -> BackendKind:
    """The receiving backend; refuses a stream the target cannot take (a plain tree into a
    ZFS or btrfs volume, a btrfs stream into ZFS and back)."""
    kind = target_kind(fs, source.backend.kind)
    if source.backend.kind is not kind and kind is not BackendKind.plain:
        raise SourceRefused(
            f"{source} is on {source.backend.kind}; a {fs} install receives a {kind} stream",
            hint=f"install a {kind} generation onto {fs}, or deploy this one onto {kind} first",
        )
    return kind


def target_backend(kind: BackendKind, host: Host, top: str) -> Backend:
    if kind is BackendKind.plain:
        return backend_class(kind)(host, top)  # type: ignore[call-arg]  # reflinks probed there
    return backend_class(kind)(host)


def _predicted_receive(kind: BackendKind, name: str) -> list[str]:
    """The receive argv the backend will give once the file system exists (for the plan
    shown before anything is written; ``receive`` checks it got the same)."""
    if kind is BackendKind.zfs:
        return ["zfs", "receive", "-u", name]
    if kind is BackendKind.btrfs:
        return ["btrfs", "receive", receiving_dir(name)]
    return receive_argv(VolPath(name).work("recv"))


def data_steps(
    source: Source, kind: BackendKind, name: str, local: str, stream_filter: Sequence[str] = ()
) -> list[Step]:
    """The send/receive as plan steps (shown in the plan; run by ``receive``): one stream,
    between a tree's temporary clone and its removal where one is needed."""
    tree = source.tree if is_tree(source, kind) else None
    send = Command.of(source.host.name, tree.argv if tree else source.send.argv)
    recv = _predicted_receive(kind, name)
    pipeline = (
        send,
        *((Command.of(local, stream_filter),) if stream_filter else ()),
        Command.of(local, recv),
    )
    what = f"the tree of {source}" if tree else str(source)
    stream = Step(f"send {what} into {name}", pipeline)
    around = tree.plan_steps(source.host.name) if tree else []
    return [*around[:1], stream, *around[1:]]


def already_received(dest: Backend, name: str, sent: SnapshotInfo) -> bool:
    try:
        got = dest.snapshot(SnapRef(name, sent.ref.name))
    except (NotFound, StorageError):
        return False
    return got.guid == sent.guid


def receive(
    source: Source, dest: Backend, name: str, stream_filter: Sequence[str] = ()
) -> SnapshotInfo:
    """Send ``source`` into ``name`` on ``dest``; a finished earlier run is not repeated."""
    if already_received(dest, name, source.info):
        log.info("%s already holds %s", name, source.ref)
        return dest.snapshot(SnapRef(name, source.ref.name))
    if not is_tree(source, dest.kind):
        _stream(source, source.send, dest, dest.receive_stage(name), name, stream_filter)
    else:
        assert isinstance(dest, PlainBackend)
        with reading(source.tree) as send:  # the temporary clone gone once the tree is read
            recv = dest.receive_stage(name, foreign=True)
            _stream(source, send, dest, recv, name, stream_filter)
    return dest.finish_receive(name, source.info)


def _stream(source: Source, send: Stage, dest: Backend, recv: Stage, name: str,
            stream_filter: Sequence[str]) -> None:  # fmt: skip
    """The stream; cut off, what arrived is removed (``finish_receive`` raises)."""
    extra = [Stage.of(dest.host, stream_filter)] if stream_filter else []
    try:
        run_pipeline([send, *extra, recv])
    except CommandFailed as cut:
        try:
            dest.finish_receive(name, source.info)  # removes what arrived, and raises
        except StorageError as e:
            raise StorageError(
                f"the stream of {source} into {name} was cut off ({cut.host}: "
                f"{cut.argv[0]} {cut.describe_exit()}); {e}",
                hint="nothing of it was kept; run the install again to send it anew",
            ) from cut
        raise


# --- the whole lineage, clones as clones (g2d.storage.replicate) ------------------------------


def lineage_roots(source: Source, name: str) -> tuple[str, str]:
    """(source lineage root, target root): the generation keeps its name below both."""
    src_root, _, leaf = source.ref.volume.rpartition("/")
    dst_root, _, want = name.rpartition("/")
    if leaf != want:
        raise SourceRefused(
            f"a lineage arrives under its own names: {source.ref.volume} would be "
            f"{dst_root}/{leaf}, not {name}",
            hint=f"install into {dst_root}/{leaf}, or without the lineage",
        )
    gen = source.lineage.owner(source.snap)  # no second round of queries to the source
    if gen.snapshots[-1].ref != source.ref:
        raise SourceRefused(
            f"{source} is not the newest snapshot of {leaf}; the lineage brings "
            f"{gen.snapshots[-1].ref} and {name} would hold that",
            hint="install the newest snapshot, or without the lineage",
        )
    return src_root, dst_root


def lineage_side(lineage: Lineage) -> Side:
    """The lineage as a replication side (``read_side`` reads the same), from the read that
    resolved the source: no second round of queries to the source host."""
    volumes = {
        leaf: g.volume for g in lineage.generations
        if g.volume is not None and (leaf := leaf_of(lineage.root, g.volume.name))
    }  # fmt: skip
    snapshots: dict[str, list[SnapshotInfo]] = {leaf: [] for leaf in volumes}
    for g in lineage.generations:
        for snap in g.snapshots:
            leaf = leaf_of(lineage.root, snap.ref.volume)
            if leaf in snapshots:
                snapshots[leaf].append(snap.info)
    return Side(lineage.root, volumes, {k: tuple(v) for k, v in snapshots.items()}, True)


def lineage_steps(source: Source, dest: Backend, name: str) -> list[Step]:
    """The transfers a replication into an empty target would run (for the plan shown; the
    replication reads both sides and plans again once the target exists)."""
    _, dst_root = lineage_roots(source, name)
    todo = plan_transfers(lineage_side(source.lineage), Side(dst_root, {}, {}))
    steps = []
    for t in todo.transfers:
        recv = _predicted_receive(dest.kind, t.target)
        pipeline = (Command(source.host.name, send_argv(source.backend, t)),
                    Command(dest.host.name, tuple(recv)))  # fmt: skip
        steps.append(Step(f"send {t}", pipeline))
    return steps


def read_source_side(source: Source) -> Side:
    """The source lineage as the replication reads it (``read_side``)."""
    return read_side(source.backend, source.ref.volume.rpartition("/")[0])  # lineage_roots' root


def receive_lineage(source: Source, dest: Backend, name: str, state_dir: Path,
                    source_side: Side | None = None) -> None:  # fmt: skip
    """Replicate the source's lineage to the target root (resumable: a re-run sends what
    the target still lacks). ``source_side``: ``read_source_side`` made by the caller."""
    src_root, dst_root = lineage_roots(source, name)
    replicate(source.backend, src_root, dest, dst_root, state_dir=state_dir,
              intent=f"install lineage {source} {name}", source_side=source_side)  # fmt: skip
