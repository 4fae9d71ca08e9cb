"""Replicate a lineage to another pool or host: clones arrive as clones, later runs send
only what is new, an unchanged lineage costs a few listings.

``plan_replication`` reads both sides and returns a ``Replication``: the transfers
``g2d.core.replication.plan_transfers`` chose and a ``Plan`` with one step per transfer,
``<source host>: zfs send ... | <target host>: zfs receive -u ...`` (``btrfs send -p`` /
``btrfs receive``; tar streams for plain directories), each with a ``done_if`` that sees the
snapshot on the target. ``run_replication`` applies it under the target pool's lock with
its journal, one transfer at a time, then reads the target once and applies the finishing
plan (``replica_finish``: the post-condition, a received mountpoint masked, atime off,
metadata, the seal's holds), also under the journal, as the run's last part.

Fixed cost matters over ssh, where every command is a round trip (and a login shell): the
target is read once before and once after the streams, with its ``g2d:*`` keys named so
each read is one ``zfs get``; the steps' ``done_if`` checks are not run when the read just
made answers them (the plan is made under the lock, so nothing else changed the target);
ZFS streams need no per-stream command besides themselves (btrfs and plain prepare and
finish each receive, ``receive_stage``/``finish_receive``); the finishing plan has one
command per kind of change. Received volumes stay unmounted, as ``receive -u`` leaves
them, unless ``mount`` is asked.

A run that dies, or a stream cut off mid-way, leaves the journal; running the same
replication again plans from what the target holds now, so it sends the rest (nothing is
sent twice), finishes what was received but not finished (the finishing plan is made from
the whole target), and other writers of that pool are refused until it did.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from g2d.core.errors import CommandFailed
from g2d.core.lineage import SEAL_HOLD, Meta
from g2d.core.plan import Plan, Step
from g2d.core.replication import (
    ReplicationError,
    ReplicationSet,
    Side,
    Transfer,
    TransferKind,
    plan_transfers,
)
from g2d.hosts.base import Host
from g2d.hosts.together import beside
from g2d.storage.apply import apply_plan
from g2d.storage.base import Backend, BackendKind, SnapRef, StorageError
from g2d.storage.lineage_run import LineageWriter, title
from g2d.storage.lock import pool_lock
from g2d.storage.replica_finish import check_arrived, finish_plan, meta_updates, sealed
from g2d.storage.replica_side import read_side, read_zfs, root_exists
from g2d.storage.replica_steps import make_root_step, refuse_guid_twins, transfer_step
from g2d.storage.sense import pool_of

if TYPE_CHECKING:
    from g2d.storage.zfs_props import Row

Logger = logging.Logger | logging.LoggerAdapter
log = logging.getLogger("g2d.replicate")


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
    target_rows: Mapping[str, Row] = field(default_factory=dict)  # ZFS: the target's read

    @property
    def transfer_steps(self) -> tuple[Step, ...]:
        return self.plan.steps[len(self.plan.steps) - len(self.todo.transfers) :]

    def render(self) -> str:
        lines = [self.plan.render()]
        lines += [f"  then: hold {ref} with {SEAL_HOLD}" for ref in self.unheld]
        sealed_now = [t.target_ref for t in self.todo.transfers if sealed(t.snap)]
        lines += [f"  then: hold {ref} with {SEAL_HOLD} (sealed)" for ref in sealed_now]
        for name, items in meta_updates(self.source_side, self.target_side).items():
            keys = ", ".join(f"{k}={v}" for k, v in sorted(items.items()))
            lines.append(f"  then: set {keys} on {name}")
        if self.target.kind is BackendKind.zfs:  # what an earlier run left unfinished
            from g2d.storage.zfs_recv import replica_fixes

            names = [v.name for v in self.target_side.volumes.values()]
            lines += [f"  then: {shlex.join(a)}" for a in replica_fixes(self.target_rows, names)]
        if self.todo.transfers:
            lines.append("  then: set the g2d metadata the streams did not carry (read after them)")
            if self.target.kind is BackendKind.zfs:
                lines.append("  then: mask a received mountpoint, atime=off (read after them)")
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
    fixed: tuple[str, ...] = ()  # ZFS volumes whose received mountpoint/atime were fixed


# --- reading and planning ---------------------------------------------------------------------


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


def source_keys(side: Side) -> set[str]:
    """The ``g2d:*`` keys the source has, which the target read names (and ``g2d:sealed``,
    which marks a sealed snapshot there)."""
    keys = {str(Meta.sealed)}
    keys.update(k for v in side.volumes.values() for k in v.meta)
    keys.update(k for snaps in side.snapshots.values() for s in snaps for k in s.meta)
    return keys


def read_target(target: Backend, root: str, keys: set[str]) -> tuple[Side, Mapping[str, Row]]:
    if target.kind is BackendKind.zfs:
        return read_zfs(target, root, keys)  # type: ignore[arg-type]
    return read_side(target, root), {}


def plan_replication(
    source: Backend, source_root: str, target: Backend, target_root: str,
    source_side: Side | None = None,
) -> Replication:  # fmt: skip
    """Read both sides (the source unless ``source_side`` is its read); plan what the
    target lacks. Changes nothing."""
    check_pair(source, source_root, target, target_root)
    src = source_side if source_side is not None else read_side(source, source_root)
    from g2d.storage.zfs_recv import read_guids

    zfs = target.kind is BackendKind.zfs
    pool = pool_of(target, target_root) if zfs else ""
    # ZFS: the pool's guids read beside the target's read, a round trip less
    with beside(read_guids, target.host, pool) if zfs else nullcontext() as guids:
        dst, rows = read_target(target, target_root, source_keys(src))
        todo = plan_transfers(src, dst)
        if guids is not None:
            refuse_guid_twins(src, dst, todo, pool, guids.result)
    steps: list[Step] = []
    present = dst.present if dst.present is not None else root_exists(target, target_root)
    if todo.transfers and not present:
        steps.append(make_root_step(target, target_root))
    steps += [transfer_step(source, target, t) for t in todo.transfers]
    unheld = tuple(
        s.ref for snaps in dst.snapshots.values() for s in snaps
        if Meta.sealed in s.meta and SEAL_HOLD not in s.holds
    )  # fmt: skip
    plan = Plan.of(f"replicate {source_root} on {source.host.name} to {target_root} on "
                   f"{target.host.name}", steps)  # fmt: skip
    return Replication(source, source_root, target, target_root, todo, plan, unheld, src, dst,
                       rows)  # fmt: skip


# --- running ------------------------------------------------------------------------------------


def _hosts(rep: Replication) -> dict[str, Host]:
    return {rep.source.host.name: rep.source.host, rep.target.host.name: rep.target.host}


def run_replication(
    rep: Replication,
    *,
    journal: Path | None = None,
    intent: str | None = None,
    logger: Logger | None = None,
    mount: bool = False,
) -> ReplicationResult:
    """Apply the plan one step at a time (each its own part of the journal), then read the
    target and apply the finishing plan as the last part. The caller holds the target
    pool's lock, and planned under it: the steps' ``done_if`` checks are not run again,
    the read answered them."""
    started = time.monotonic()
    hosts = _hosts(rep)
    intent = intent or rep.plan.title
    steps = rep.plan.steps
    parts = len(steps) + 1  # the finishing plan is the last part
    first = len(steps) - len(rep.todo.transfers)
    sent: list[Sent] = []
    zfs = rep.target.kind is BackendKind.zfs
    for i, step in enumerate(steps):
        transfer = rep.todo.transfers[i - first] if i >= first else None
        if transfer is not None and not zfs:
            _prepare_receive(rep.target, transfer, step)
        began = time.monotonic()
        part = Plan(title(intent, i, parts), (replace(step, done_if=None),))
        try:
            apply_plan(part, hosts, journal=journal, logger=logger)
        except CommandFailed:
            if transfer is not None and zfs and transfer.kind is not TransferKind.incremental:
                _clear_cut_off(rep.target, transfer.target, logger)
            raise  # the stream's own error
        if transfer is not None:
            if not zfs:  # ZFS: checked for all streams at once, from the read below
                rep.target.finish_receive(transfer.target, transfer.snap)
            sent.append(Sent(transfer, time.monotonic() - began))
    after, rows = rep.target_side, rep.target_rows
    if sent:
        after, rows = read_target(rep.target, rep.target_root, _keys(rep))
        if zfs:
            check_arrived(after, [s.transfer for s in sent], rep.source_root)
    finish = finish_plan(rep.target, rep.source_side, after, rows, mount=mount)
    if finish.plan.steps or steps:
        last = Plan(title(intent, len(steps), parts), finish.plan.steps)
        apply_plan(last, {rep.target.host.name: rep.target.host}, journal=journal,
                   logger=logger)  # fmt: skip
    return ReplicationResult(rep, tuple(sent), finish.held, finish.updated,
                             time.monotonic() - started, finish.fixed)  # fmt: skip


def _clear_cut_off(target: Backend, name: str, logger: Logger | None) -> None:
    """Remove what a cut-off stream into the new volume ``name`` left; a failure to do so
    is logged, not raised over the stream's own error (the re-run's plan refuses a volume
    without snapshots, naming it)."""
    from g2d.storage.zfs_recv import clear_cut_off

    try:
        if clear_cut_off(target.host, name):
            (logger or log).warning("removed %s, left without a snapshot by the stream", name)
    except (CommandFailed, StorageError) as e:
        (logger or log).warning("could not check or remove what the stream left in %s: %s",
                                name, e)  # fmt: skip


def _keys(rep: Replication) -> set[str]:
    return source_keys(rep.source_side)


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
    mount: bool = False,
    source_side: Side | None = None,
) -> ReplicationResult:
    """Plan and run under the target pool's lock; refuses while another operation on that
    pool is unfinished, and finishes its own interrupted run (``intent`` names it).
    ``source_side``: the source as the caller has just read it (``read_side``)."""
    check_pair(source, source_root, target, target_root)
    pool = pool_of(target, target_root)
    intent = intent or f"replicate {source.host.name}:{source_root} {target_root}"
    writer = LineageWriter(target, target_root, pool, state_dir, wait, logger)
    with pool_lock(state_dir, target.host.name, pool, purpose=intent, wait=wait):
        writer.pending(intent)  # another operation's unfinished journal refuses
        rep = plan_replication(source, source_root, target, target_root, source_side)
        journal = writer.journal_path
        journal.parent.mkdir(parents=True, exist_ok=True)
        result = run_replication(rep, journal=journal, intent=intent, logger=logger,
                                 mount=mount)  # fmt: skip
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
    lines += [f"made {name} safe to mount (mountpoint, atime)" for name in result.fixed]
    rep = result.replication
    if not result.sent:
        lines.append(f"{rep.target_root} on {rep.target.host.name} is up to date: nothing sent")
    else:
        lines.append(f"{len(result.sent)} stream(s) in {result.seconds:.2f} s")
    return lines
