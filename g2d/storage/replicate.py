"""Replicate a lineage to another pool or host: clones arrive as clones, later runs send
only what is new, an unchanged lineage costs a few listings.

``plan_replication`` reads both sides and returns a ``Replication``: the transfers
``g2d.core.replication.plan_transfers`` chose and a ``Plan`` with one step per transfer,
``<source host>: zfs send ... | <target host>: zfs receive ...`` (``btrfs send -p`` /
``btrfs receive``; tar streams for plain directories), each with a ``done_if`` that sees the
snapshot on the target. ``run_replication`` applies it under the target pool's lock with
its journal, one transfer at a time through ``apply_plan``, each followed by the target
backend's ``finish_receive`` (the post-condition: the snapshot is there with the sent
guid; a cut-off stream's leftovers are removed), then holds the target's sealed snapshots
with the seal's tag, as the source holds them.

A run that dies, or a stream cut off mid-way, leaves the journal; running the same
replication again plans from what the target holds now, so it sends the rest (nothing is
sent twice) and other writers of that pool are refused until it did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from g2d.core.lineage import SEAL_HOLD, Meta
from g2d.core.plan import Command, Plan, Step
from g2d.core.replication import (
    ReplicationError,
    ReplicationSet,
    Side,
    Transfer,
    plan_transfers,
)
from g2d.hosts.base import Host
from g2d.storage.apply import apply_plan, is_done
from g2d.storage.base import Backend, BackendKind, SnapRef, SnapshotInfo, StorageError
from g2d.storage.lineage_run import LineageWriter, title
from g2d.storage.lock import pool_lock
from g2d.storage.replica_side import read_side, root_exists
from g2d.storage.sense import pool_of

Logger = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class Replication:
    """What a replication will do: the transfers, and the plan that runs them."""

    source: Backend
    source_root: str
    target: Backend
    target_root: str
    todo: ReplicationSet
    plan: Plan  # a step making the target root if missing, then one step per transfer
    unheld: tuple[SnapRef, ...]  # sealed snapshots on the target still without the hold
    source_side: Side  # both sides as read when planning
    target_side: Side

    @property
    def transfer_steps(self) -> tuple[Step, ...]:
        return self.plan.steps[len(self.plan.steps) - len(self.todo.transfers) :]

    def render(self) -> str:
        lines = [self.plan.render()]
        lines += [f"  then: hold {ref} with {SEAL_HOLD}" for ref in self.unheld]
        sealed = [t.target_ref for t in self.todo.transfers if _sealed(t.snap)]
        lines += [f"  then: hold {ref} with {SEAL_HOLD} (sealed)" for ref in sealed]
        for name, items in meta_updates(self.source_side, self.target_side).items():
            keys = ", ".join(f"{k}={v}" for k, v in sorted(items.items()))
            lines.append(f"  then: set {keys} on {name}")
        if self.todo.transfers:
            lines.append("  then: set the g2d metadata the streams did not carry (read after them)")
        lines += [f"  skipped: {why}" for why in self.todo.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class Sent:
    """A transfer that ran. No byte count: the sending process's own counter misses the
    stream where zfs-fuse's daemon or the btrfs kernel ioctl writes it into the pipe."""

    transfer: Transfer
    seconds: float


@dataclass(frozen=True)
class ReplicationResult:
    replication: Replication
    sent: tuple[Sent, ...]
    held: tuple[SnapRef, ...]
    updated: tuple[str, ...]  # target volumes whose g2d metadata was brought up to date
    seconds: float


# --- reading and planning ---------------------------------------------------------------------


def _sealed(snap: SnapshotInfo) -> bool:
    return Meta.sealed in snap.meta or SEAL_HOLD in snap.holds


def check_pair(source: Backend, source_root: str, target: Backend, target_root: str) -> None:
    """Same kind of storage on both sides, and never into the lineage itself."""
    if source.kind is not target.kind:
        raise ReplicationError(
            f"cannot replicate {source.kind} {source_root} to {target.kind} {target_root}",
            hint="streams of one backend are received only by the same backend",
        )
    if source.host.name != target.host.name:
        return
    if source.kind is BackendKind.zfs and pool_of(source, source_root) == pool_of(
        target, target_root
    ):
        # within one pool a received clone's origin is found by guid among the original
        # and its copy (docs/storage-zfs.md): the receiver may attach it to the original
        raise ReplicationError(
            f"cannot replicate {source_root} to {target_root}: both are in pool "
            f"{pool_of(source, source_root)}",
            hint="replicate a lineage to another pool or host",
        )
    a, b = source_root.rstrip("/") + "/", target_root.rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        raise ReplicationError(f"cannot replicate {source_root} into {target_root}: they overlap")


def plan_replication(
    source: Backend, source_root: str, target: Backend, target_root: str
) -> Replication:
    """Read both sides; plan what the target lacks. Changes nothing."""
    check_pair(source, source_root, target, target_root)
    src, dst = read_side(source, source_root), read_side(target, target_root)
    todo = plan_transfers(src, dst)
    steps: list[Step] = []
    if todo.transfers and not root_exists(target, target_root):
        steps.append(_make_root(target, target_root))
    steps += [_transfer_step(source, target, t) for t in todo.transfers]
    unheld = tuple(
        s.ref for snaps in dst.snapshots.values() for s in snaps
        if Meta.sealed in s.meta and SEAL_HOLD not in s.holds
    )  # fmt: skip
    plan = Plan.of(f"replicate {source_root} on {source.host.name} to {target_root} on "
                   f"{target.host.name}", steps)  # fmt: skip
    return Replication(source, source_root, target, target_root, todo, plan, unheld, src, dst)


def _make_root(target: Backend, root: str) -> Step:
    if target.kind is BackendKind.zfs:
        argv = ["zfs", "create", "-p", root]
        return Step.run(target.host.name, argv, f"create {root}", done_if=_zfs_exists(root))
    return Step.run(target.host.name, ["mkdir", "-p", "--", root], f"create {root}",
                    done_if=["test", "-d", root])  # fmt: skip


def _zfs_exists(name: str) -> list[str]:
    return ["zfs", "list", "-H", "-o", "name", name]


def receive_argv(target: Backend, name: str) -> tuple[str, ...]:
    """The receiving command for ``name``, without the preparation ``receive_stage`` does
    on btrfs and plain (work directories), so a dry run changes nothing."""
    if target.kind is BackendKind.zfs:
        return target.receive_stage(name).argv  # zfs: only reads
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


def _transfer_step(source: Backend, target: Backend, t: Transfer) -> Step:
    send = source.send_stage(t.snap.ref, base=t.base)
    pipeline = (
        Command(source.host.name, send.argv),
        Command(target.host.name, receive_argv(target, t.target)),
    )
    done = Command.of(target.host.name, snapshot_exists_argv(target, t.target_ref))
    return Step(f"send {t}", pipeline, done)


# --- running ------------------------------------------------------------------------------------


def _hosts(rep: Replication) -> dict[str, Host]:
    return {rep.source.host.name: rep.source.host, rep.target.host.name: rep.target.host}


def run_replication(
    rep: Replication,
    *,
    journal: Path | None = None,
    intent: str | None = None,
    logger: Logger | None = None,
) -> ReplicationResult:
    """Apply the plan one transfer at a time, each checked by ``finish_receive``; then hold
    the sealed snapshots on the target. The caller holds the target pool's lock."""
    started = time.monotonic()
    hosts = _hosts(rep)
    intent = intent or rep.plan.title
    steps = rep.plan.steps
    first = len(steps) - len(rep.todo.transfers)
    sent: list[Sent] = []
    if first:  # the target root
        apply_plan(Plan(title(intent, 0, len(steps)), steps[:first]), hosts, journal=journal,
                   logger=logger)  # fmt: skip
    for i, (transfer, step) in enumerate(zip(rep.todo.transfers, steps[first:], strict=True)):
        if is_done(step, hosts):  # an earlier, interrupted run got this far
            continue
        _prepare_receive(rep.target, transfer, step)
        began = time.monotonic()
        # its check ran just now: no second round trip for it
        part = Plan(title(intent, first + i, len(steps)), (replace(step, done_if=None),))
        apply_plan(part, hosts, journal=journal, logger=logger)
        rep.target.finish_receive(transfer.target, transfer.snap)
        sent.append(Sent(transfer, time.monotonic() - began))
    after = read_side(rep.target, rep.target_root) if sent else rep.target_side
    updated = _sync_meta(rep, after, logger)
    held = _hold_seals(rep, logger)
    return ReplicationResult(rep, tuple(sent), held, updated, time.monotonic() - started)


def meta_updates(source: Side, target: Side) -> dict[str, dict[str, str]]:
    """Per target volume, the ``g2d:*`` keys whose value differs from the source volume's
    now. A stream carries the metadata as it was at its snapshot: btrfs and plain carry
    the volume's keys of that moment (a seal marks the generation sealed after its
    snapshot), and nothing is sent for a change made after the newest snapshot (retire).
    Keys are set, never removed: a replica may carry more."""
    out: dict[str, dict[str, str]] = {}
    for leaf, vol in source.volumes.items():
        have = target.volumes.get(leaf)
        if have is not None:
            items = {k: v for k, v in vol.meta.items() if have.meta.get(k) != v}
            if items:
                out[have.name] = items
    return out


def _sync_meta(rep: Replication, target: Side, logger: Logger | None) -> tuple[str, ...]:
    updates = meta_updates(rep.source_side, target)
    hosts = {rep.target.host.name: rep.target.host}
    for name, items in updates.items():
        apply_plan(rep.target.set_meta_plan(name, items), hosts, logger=logger)
    return tuple(updates)


def _prepare_receive(target: Backend, transfer: Transfer, step: Step) -> None:
    """``receive_stage`` readies the target (clears what a cut-off stream left, makes the
    work directory); its command must be the one the plan shows."""
    stage = target.receive_stage(transfer.target)
    if stage.argv != step.pipeline[-1].argv:
        raise StorageError(
            f"the target changed since the replication was planned: {transfer.target} now "
            f"receives with {' '.join(stage.argv)}",
            hint="run the replication again; it plans from what the target holds now",
        )


def _hold_seals(rep: Replication, logger: Logger | None) -> tuple[SnapRef, ...]:
    refs = [*rep.unheld, *(t.target_ref for t in rep.todo.transfers if _sealed(t.snap))]
    held = []
    for ref in dict.fromkeys(refs):
        plan = rep.target.hold_plan(ref, SEAL_HOLD)
        if plan.steps:
            apply_plan(plan, {rep.target.host.name: rep.target.host}, logger=logger)
            held.append(ref)
    return tuple(held)


def replicate(
    source: Backend,
    source_root: str,
    target: Backend,
    target_root: str,
    *,
    state_dir: Path,
    intent: str | None = None,
    wait: float = 0.0,
    logger: Logger | None = None,
) -> ReplicationResult:
    """Plan and run under the target pool's lock; refuses while another operation on that
    pool is unfinished, and finishes its own interrupted run (``intent`` names it)."""
    check_pair(source, source_root, target, target_root)
    pool = pool_of(target, target_root)
    intent = intent or f"replicate {source.host.name}:{source_root} {target_root}"
    writer = LineageWriter(target, target_root, pool, state_dir, wait, logger)
    with pool_lock(state_dir, target.host.name, pool, purpose=intent, wait=wait):
        writer.pending(intent)  # another operation's unfinished journal refuses
        rep = plan_replication(source, source_root, target, target_root)
        journal = writer.journal_path
        journal.parent.mkdir(parents=True, exist_ok=True)
        result = run_replication(rep, journal=journal, intent=intent, logger=logger)
        journal.unlink(missing_ok=True)
        return result


def stream_size(rep: Replication, transfer: Transfer) -> int:
    """Bytes of the stream ``transfer`` sends: its planned send command into ``wc -c``
    (a second send, for measuring: tests, benchmarks, capacity estimates)."""
    from g2d.hosts.pipeline import Stage, run_pipeline

    send = rep.transfer_steps[rep.todo.transfers.index(transfer)].pipeline[0]
    host = _hosts(rep)[send.host]
    done = run_pipeline([Stage.of(host, send.argv), Stage.of(host, ["wc", "-c"])], count=False)
    return int(done.stdout.strip())


def describe(result: ReplicationResult) -> Sequence[str]:
    """One line per transfer and a summary, for the command line and flow artifacts."""
    lines = [f"sent {s.transfer} in {s.seconds:.2f} s" for s in result.sent]
    lines += [f"held {ref} with {SEAL_HOLD}" for ref in result.held]
    lines += [f"updated the g2d metadata of {name}" for name in result.updated]
    rep = result.replication
    if not result.sent:
        lines.append(f"{rep.target_root} on {rep.target.host.name} is up to date: nothing sent")
    else:
        lines.append(f"{len(result.sent)} stream(s) in {result.seconds:.2f} s")
    return lines
