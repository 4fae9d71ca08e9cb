"""The steps of a replication's plan, and the one check made before it: the commands each
transfer runs (ZFS: from the caps and the read just made, no query per stream), the target
root's creation, and the refusal of a clone whose origin has a twin in the target pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from g2d.core.plan import Command, Step
from g2d.core.replication import (
    ReplicationError,
    ReplicationSet,
    Side,
    Transfer,
    TransferKind,
    leaf_of,
)
from g2d.storage.base import Backend, BackendKind, SnapRef


def refuse_guid_twins(
    src: Side, dst: Side, todo: ReplicationSet, pool: str,
    guids: Callable[[], Iterable[tuple[str, str]]],
) -> None:  # fmt: skip
    """zfs finds a clone stream's origin by guid; where the target pool holds another
    snapshot with that guid (an original and its copy), which one it takes is a guess. A
    lineage with a guessed parent is worse than none: refused before anything is sent.
    ``guids``: the target pool's (snapshot, guid) pairs, asked for only when a clone is sent."""
    from g2d.storage.zfs_recv import guid_twins

    wanted: dict[str, tuple[str, Transfer]] = {}
    by_ref = {str(s.ref): s.guid for snaps in src.snapshots.values() for s in snaps}
    for t in todo.transfers:
        if t.kind is TransferKind.clone and t.base is not None and str(t.base) in by_ref:
            leaf = leaf_of(src.root, t.base.volume) or ""
            wanted[by_ref[str(t.base)]] = (f"{dst.volume_name(leaf)}@{t.base.name}", t)
    if not wanted:
        return
    twins = guid_twins(guids(), {g: meant for g, (meant, _) in wanted.items()})
    for guid, others in twins.items():
        meant, t = wanted[guid]
        raise ReplicationError(
            f"cannot replicate {t.snap.ref} as a clone of {meant}: {', '.join(sorted(others))} "
            f"in pool {pool} has the same guid, and zfs cannot tell which one the stream means",
            hint="replicate the lineage to another pool or host",
        )


def make_root_step(target: Backend, root: str) -> Step:
    if target.kind is BackendKind.zfs:
        # atime=off is inherited by what is received below (replica_finish)
        argv = ["zfs", "create", "-p", "-o", "atime=off", root]
        return Step.run(target.host.name, argv, f"create {root}", done_if=_zfs_exists(root))
    return Step.run(target.host.name, ["mkdir", "-p", "--", root], f"create {root}",
                    done_if=["test", "-d", root])  # fmt: skip


def _zfs_exists(name: str) -> list[str]:
    return ["zfs", "list", "-H", "-o", "name", name]


def receive_argv(target: Backend, name: str) -> tuple[str, ...]:
    """The receiving command for ``name``, without the preparation ``receive_stage`` does
    on btrfs and plain (work directories), so a dry run changes nothing. ZFS: the command
    ``receive_stage`` makes, without its query (the plan's read answered it)."""
    if target.kind is BackendKind.zfs:
        from g2d.storage.zfs_recv import receive_argv as zfs_receive

        return tuple(zfs_receive(target.caps, name))
    if target.kind is BackendKind.btrfs:
        from g2d.storage.btrfs_layout import receiving_dir

        return ("btrfs", "receive", receiving_dir(name))
    from g2d.storage.plain_layout import VolPath
    from g2d.storage.plain_stream import receive_argv as tar_receive

    return tuple(tar_receive(VolPath(name).work("recv")))


def snapshot_exists_argv(target: Backend, ref: SnapRef) -> list[str]:
    """Exits 0 once ``ref`` is on the target under its final name."""
    if target.kind is BackendKind.zfs:
        return _zfs_exists(str(ref))
    if target.kind is BackendKind.btrfs:
        from g2d.storage.btrfs_layout import snap_path

        return ["test", "-d", snap_path(ref)]
    from g2d.storage.plain_layout import VolPath

    return ["test", "-d", VolPath(ref.volume).snap(ref.name)]


def send_argv(source: Backend, t: Transfer) -> tuple[str, ...]:
    """The sending command of ``t``; ZFS: from the caps, without asking whether the snapshot
    exists (the caller has just read it)."""
    if source.kind is BackendKind.zfs:  # the snapshot was just read: no second look
        from g2d.storage.zfs_recv import send_argv

        return tuple(send_argv(source.caps, t.snap.ref, t.base))
    return source.send_stage(t.snap.ref, base=t.base).argv


def transfer_step(source: Backend, target: Backend, t: Transfer) -> Step:
    pipeline = (
        Command(source.host.name, send_argv(source, t)),
        Command(target.host.name, receive_argv(target, t.target)),
    )
    done = Command.of(target.host.name, snapshot_exists_argv(target, t.target_ref))
    return Step(f"send {t}", pipeline, done)
