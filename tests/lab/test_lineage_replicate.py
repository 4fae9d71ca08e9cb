"""Replicating a lineage (g1@sealed -> g2 -> g3) to another pool: zfs-fuse pool to pool,
pool to a pool reached over ssh (the lab sshd on 127.0.0.1; the zfs-fuse daemon is shared,
so "remote" is the same daemon through ssh), btrfs file system to file system.

Checked on the receiver: the clone structure (``zfs get origin``), the g2d metadata with the
parent links and seals, the holds; a second run sends only the new snapshot (bytes counted
by the pipeline), an unchanged run sends nothing, and a stream cut off mid-way leaves no
half volume and is completed by running the replication again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.lineage import SEAL_HOLD, Lineage, Meta, Origin
from g2d.core.lineage_tree import render_tree
from g2d.core.plan import Command, Plan, Step
from g2d.core.replication import ReplicationError, TransferKind
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.lab.sshd import SshServer
from g2d.lab.zfs_fuse import ZfsFuse, ZfsPool, create_pool
from g2d.storage.apply import apply_plan
from g2d.storage.base import Backend, BackendKind
from g2d.storage.lineage import branch_op, create_op, load_lineage, seal_op
from g2d.storage.lineage_run import LineageWriter, Phases, UnfinishedPlan, title
from g2d.storage.replicate import (
    ReplicationResult,
    plan_replication,
    replicate,
    run_replication,
    stream_size,
)
from g2d.storage.sense import backend_class, pool_of

G2D = Path(sys.executable).parent / "g2d"
ORIGIN = Origin(stage3="stage3-amd64-20261124", profile="default/linux/amd64/23.0")
MIB = 1 << 20


@dataclass
class Side:
    backend: Backend
    root: str

    def vol(self, gen: str) -> str:
        return f"{self.root}/{gen}"

    def lineage(self) -> Lineage:
        return load_lineage(self.backend, self.root)

    def path(self, gen: str) -> Path:
        """Where the volume is mounted; a replica is mounted first (it arrives unmounted)."""
        if self.backend.mountpoint(self.vol(gen)) is None:
            self.backend.apply(self.backend.mount_plan(self.vol(gen)))
        mounted = self.backend.mountpoint(self.vol(gen))
        assert mounted, f"{self.vol(gen)} is not mounted"
        return Path(mounted)


@dataclass
class Pair:
    source: Side
    target: Side
    state_dir: Path

    def run(self, intent: str, phases: Phases) -> None:
        b, root = self.source.backend, self.source.root
        LineageWriter(b, root, pool_of(b, root), self.state_dir).run(intent, phases)

    def seal(self, gen: str) -> str:
        self.run(f"seal {gen}", seal_op(self.source.backend, self.source.vol(gen), _now()))
        newest = self.source.lineage().generation(gen).newest_sealed
        assert newest is not None
        return newest.name

    def replicate(self) -> ReplicationResult:
        s, t = self.source, self.target
        return replicate(s.backend, s.root, t.backend, t.root, state_dir=self.state_dir)

    def three_generations(self, size: int = MIB) -> tuple[str, str, str]:
        """g1 -> g2 -> g3, each sealed once, with ``size`` bytes of its own; their seals."""
        b = self.source.backend
        self.run("create", create_op(b, None, ORIGIN, _now()))
        (self.source.path("g1") / "data").write_bytes(os.urandom(size))
        seals = [self.seal("g1")]
        for parent, gen in (("g1", "g2"), ("g2", "g3")):
            self.run(f"branch {parent}", branch_op(b, f"{self.source.vol(parent)}@safe", None,
                                                   Origin(kernel=gen), _now()))  # fmt: skip
            (self.source.path(gen) / gen).write_bytes(os.urandom(size))
            seals.append(self.seal(gen))
        return seals[0], seals[1], seals[2]


def _now() -> datetime:
    return datetime.now(UTC)


def _zfs_origin(host: Host, name: str) -> str:
    return host.run(["zfs", "get", "-H", "-o", "value", "origin", name]).stdout.strip()


def _second_pool(tmp_path: Path) -> ZfsPool:
    return create_pool(tmp_path / "zfs-vdevs-2", mountpoint=tmp_path / "zfs-mnt-2")


def _zfs_pair(source_pool: ZfsPool, target_pool: ZfsPool, host: Host, tmp_path: Path) -> Pair:
    LocalHost().run(["zfs", "create", f"{source_pool.name}/sys"])
    zfs = backend_class(BackendKind.zfs)
    return Pair(Side(zfs(LocalHost()), f"{source_pool.name}/sys"),
                Side(zfs(host), f"{target_pool.name}/sys"), tmp_path / "state")  # fmt: skip


def _tree(side: Side) -> str:
    return render_tree(side.lineage(), sizes=False).replace(side.root, "ROOT")


def _check_replica(pair: Pair, seals: tuple[str, ...]) -> None:
    """Same tree, clones of the copies, metadata and seals (with their holds) on the target."""
    s1, s2, _ = seals
    src, dst = pair.source, pair.target
    assert _tree(dst) == _tree(src)
    if dst.backend.kind is BackendKind.zfs:
        host = dst.backend.host
        assert _zfs_origin(host, dst.vol("g1")) == "-"
        assert _zfs_origin(host, dst.vol("g2")) == f"{dst.vol('g1')}@{s1}"
        assert _zfs_origin(host, dst.vol("g3")) == f"{dst.vol('g2')}@{s2}"
    for gen, parent in (("g2", f"{src.vol('g1')}@{s1}"), ("g3", f"{src.vol('g2')}@{s2}")):
        assert str(dst.backend.volume(dst.vol(gen)).origin) == parent.replace(src.root, dst.root)
        meta = dst.backend.get_meta(dst.vol(gen))
        assert meta[Meta.parent] == parent  # the source's name; the guid finds the copy
        assert meta[Meta.kernel] == gen and meta[Meta.state] == "sealed"
    lineage = dst.lineage()
    for gen in ("g1", "g2", "g3"):
        sealed = lineage.generation(gen).sealed
        assert [s.name for s in sealed] == [s for s in seals if s.startswith(f"{gen}-")]
        assert all(SEAL_HOLD in s.info.holds for s in sealed)
    parent = lineage.parent(lineage.generation("g3"))
    assert parent is not None and str(parent.ref) == f"{dst.vol('g2')}@{s2}"
    assert (dst.path("g3") / "g3").read_bytes() == (src.path("g3") / "g3").read_bytes()


def _kinds(result: ReplicationResult) -> list[tuple[str, TransferKind]]:
    return [(s.transfer.target_ref.volume.rpartition("/")[2], s.transfer.kind) for s in result.sent]


def _nbytes(result: ReplicationResult) -> int:
    """The size of the streams a run sent: its planned send commands into ``wc -c`` (the
    sending process's own byte counter misses what zfs-fuse and btrfs write for it)."""
    return sum(stream_size(result.replication, s.transfer) for s in result.sent)


def _replicate_twice_then_unchanged(pair: Pair, seals: tuple[str, str, str]) -> None:
    first = pair.replicate()
    assert _kinds(first) == [("g1", TransferKind.full), ("g2", TransferKind.clone),
                             ("g3", TransferKind.clone)]  # fmt: skip
    if pair.target.backend.kind is BackendKind.zfs:  # as `zfs receive -u` leaves them
        assert [pair.target.backend.mountpoint(pair.target.vol(g)) for g in ("g1", "g2", "g3")
                ] == [None, None, None]  # fmt: skip
    _check_replica(pair, seals)
    full = _nbytes(first)
    assert 3 * MIB < full < 4 * MIB, full  # clones: each generation's own 1 MiB, once
    # only the new snapshot goes: 256 KiB of new data, not the 3 MiB of the lineage
    (pair.source.path("g3") / "update").write_bytes(os.urandom(256 << 10))
    s4 = pair.seal("g3")
    second = pair.replicate()
    assert _kinds(second) == [("g3", TransferKind.incremental)]
    assert second.sent[0].transfer.base is not None
    assert second.sent[0].transfer.base.name == seals[2]
    delta = _nbytes(second)
    assert 256 << 10 < delta < full / 4, (delta, full)
    assert (pair.target.path("g3") / "update").read_bytes() == (
        pair.source.path("g3") / "update"
    ).read_bytes()
    assert s4 in [s.name for s in pair.target.lineage().generation("g3").sealed]
    # unchanged: nothing to send, nothing sent
    third = pair.replicate()
    assert third.sent == () and third.held == () and third.updated == ()
    assert third.replication.plan.steps == ()


# --- zfs ----------------------------------------------------------------------------------------


@pytest.fixture
def zfs_target(zfs_fuse: ZfsFuse, tmp_path: Path) -> Iterator[ZfsPool]:
    with _second_pool(tmp_path) as pool:
        yield pool


def test_zfs_pool_to_pool_arrives_as_clones_then_only_deltas(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    seals = pair.three_generations()
    _replicate_twice_then_unchanged(pair, seals)


def test_zfs_to_a_pool_over_ssh_from_the_command_line(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, sshd: SshServer, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)  # checks: the local view
    seals = pair.three_generations()
    name = f"{sshd.user}@{sshd.host}:{sshd.port}"
    remote = f"zfs://{name}:/{pair.target.root}"
    source = f"zfs://{pair.source.root}"
    env = {**os.environ, "G2D_STATE_DIR": str(pair.state_dir),
           "G2D_SSH_KNOWN_HOSTS": str(sshd.known_hosts),
           "G2D_SSH_IDENTITY": str(sshd.client_key)}  # fmt: skip

    def g2d(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([G2D, "lineage", *args], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    dry = g2d("replicate", source, remote, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    s1, s2, s3 = seals
    src, dst = pair.source.root, pair.target.root
    assert dry.stdout == textwrap.dedent(f"""\
        plan: replicate {src} on local to {dst} on {name}
          1. {name}: zfs create -p -o atime=off {dst}  # create {dst}
          2. local: zfs send -p {src}/g1@{s1} | {name}: zfs receive -u {dst}/g1  # send {src}/g1@{s1} -> {dst}/g1@{s1} (full stream)
          3. local: zfs send -p -i {src}/g1@{s1} {src}/g2@{s2} | {name}: zfs receive -u {dst}/g2  # send {src}/g2@{s2} -> {dst}/g2@{s2} (clone from its origin from {src}/g1@{s1})
          4. local: zfs send -p -i {src}/g2@{s2} {src}/g3@{s3} | {name}: zfs receive -u {dst}/g3  # send {src}/g3@{s3} -> {dst}/g3@{s3} (clone from its origin from {src}/g2@{s2})
          then: hold {dst}/g1@{s1} with g2d-sealed (sealed)
          then: hold {dst}/g2@{s2} with g2d-sealed (sealed)
          then: hold {dst}/g3@{s3} with g2d-sealed (sealed)
          then: set the g2d metadata the streams did not carry (read after them)
          then: mask a received mountpoint, atime=off (read after them)
        dry run: nothing changed
    """)  # noqa: E501
    assert not pair.target.backend.exists(dst)
    done = g2d("replicate", source, remote)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("3 stream(s) in ")
    _check_replica(pair, seals)
    listed = g2d("list", "--no-sizes", remote)  # a remote target for the other verbs too
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == render_tree(pair.target.lineage(), sizes=False)

    # and back: from the remote copy into a third pool here, again as clones of the copies
    with create_pool(tmp_path / "zfs-vdevs-3", mountpoint=tmp_path / "zfs-mnt-3") as third:
        back = f"{third.name}/sys"
        done = g2d("replicate", remote, f"zfs://{back}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith("3 stream(s) in ")
        home = Side(pair.source.backend, back)
        assert _tree(home) == _tree(pair.source)
        host = home.backend.host
        assert _zfs_origin(host, home.vol("g1")) == "-"
        assert _zfs_origin(host, home.vol("g2")) == f"{home.vol('g1')}@{s1}"
        assert _zfs_origin(host, home.vol("g3")) == f"{home.vol('g2')}@{s2}"
        lineage = home.lineage()
        for gen, seal in (("g1", s1), ("g2", s2), ("g3", s3)):
            sealed = lineage.generation(gen).sealed
            assert [s.name for s in sealed] == [seal]
            assert SEAL_HOLD in sealed[0].info.holds
        # g2d:parent keeps the first source's name over both trips; the guid finds the copy
        assert home.backend.get_meta(home.vol("g3"))[Meta.parent] == f"{src}/g2@{s2}"
        parent = lineage.parent(lineage.generation("g3"))
        assert parent is not None and str(parent.ref) == f"{back}/g2@{s2}"
        assert (home.path("g3") / "g3").read_bytes() == (pair.source.path("g3") / "g3").read_bytes()


def test_a_remote_target_needs_its_host_key_pinned(
    zfs_pool: ZfsPool, sshd: SshServer, tmp_path: Path
) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"[{sshd.host}]:{sshd.port + 1} {sshd.host_public_key}\n")  # another port
    env = {**os.environ, "G2D_STATE_DIR": str(tmp_path / "state"),
           "G2D_SSH_IDENTITY": str(sshd.client_key)}  # fmt: skip
    remote = f"zfs://{sshd.user}@{sshd.host}:{sshd.port}:/{zfs_pool.name}"
    done = subprocess.run([G2D, "lineage", "--known-hosts", str(other), "list", remote],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"error: {sshd.user}@{sshd.host}:{sshd.port}: host key SHA256:")
    assert first.endswith(
        f"refused: unknown host: no key is pinned for [{sshd.host}]:{sshd.port} in {other}"
    )


def test_a_cut_off_stream_leaves_nothing_and_the_rerun_completes(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    seals = pair.three_generations()
    s, t = pair.source, pair.target
    rep = plan_replication(s.backend, s.root, t.backend, t.root)
    # the fake: a network drop after 64 KiB, made deterministic by `head -c` in the pipe
    cut = [_cut(step) for step in rep.plan.steps]
    writer = LineageWriter(t.backend, t.root, pool_of(t.backend, t.root), pair.state_dir)
    writer.journal_path.parent.mkdir(parents=True, exist_ok=True)
    intent = "replicate test"
    broken = dataclasses.replace(rep, plan=dataclasses.replace(rep.plan, steps=tuple(cut)))
    with pytest.raises(CommandFailed):
        run_replication(broken, journal=writer.journal_path, intent=intent)
    listed = t.backend.host.run(["zfs", "list", "-H", "-o", "name", "-r", "-t", "all", t.root])
    assert listed.lines() == [t.root]  # no half g1
    with pytest.raises(UnfinishedPlan):  # other writers wait for the replication
        writer.run("seal g1", seal_op(t.backend, t.vol("g1"), _now()))
    result = replicate(s.backend, s.root, t.backend, t.root, state_dir=pair.state_dir,
                       intent=intent)  # fmt: skip
    assert len(result.sent) == 3 and not writer.journal_path.exists()
    _check_replica(pair, seals)


def test_a_run_killed_after_its_streams_is_finished_by_running_it_again(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    seals = pair.three_generations()
    s, t = pair.source, pair.target
    # a system root carries its own mountpoint; `send -p` brings it to the receiver
    own = tmp_path / "g1-own-mountpoint"
    LocalHost().run(["zfs", "set", f"mountpoint={own}", s.vol("g1")])
    rep = plan_replication(s.backend, s.root, t.backend, t.root)
    writer = LineageWriter(t.backend, t.root, pool_of(t.backend, t.root), pair.state_dir)
    writer.journal_path.parent.mkdir(parents=True, exist_ok=True)
    intent = "replicate test"
    # the run as run_replication makes it, killed before its last part (the finishing):
    # each step is a journaled part, the finishing plan would be part n + 1
    parts = len(rep.plan.steps) + 1
    for i, step in enumerate(rep.plan.steps):
        part = Plan(title(intent, i, parts), (step,))
        apply_plan(part, _hosts(pair), journal=writer.journal_path)
    host = t.backend.host
    assert host.run(["zfs", "get", "-H", "-o", "value,source", "mountpoint", t.vol("g1")]
                    ).stdout == f"{own}\treceived\n"  # fmt: skip
    assert host.run(["zfs", "get", "-H", "-o", "value", "userrefs", f"{t.vol('g1')}@{seals[0]}"]
                    ).stdout == "0\n"  # fmt: skip
    with pytest.raises(UnfinishedPlan):  # other writers wait for the replication
        writer.run("seal g1", seal_op(t.backend, t.vol("g1"), _now()))
    shown = plan_replication(s.backend, s.root, t.backend, t.root).render().splitlines()
    assert shown[:2] == [f"plan: replicate {s.root} on local to {t.root} on local",
                         "  (nothing to do)"]  # fmt: skip
    assert f"  then: zfs inherit mountpoint {t.vol('g1')}" in shown  # what a re-run finishes
    result = replicate(s.backend, s.root, t.backend, t.root, state_dir=pair.state_dir,
                       intent=intent, mount=True)  # fmt: skip
    assert result.sent == () and not writer.journal_path.exists()
    assert result.fixed == (t.vol("g1"),)
    assert [str(r) for r in result.held] == [
        f"{t.vol(g)}@{seal}" for g, seal in zip(("g1", "g2", "g3"), seals, strict=True)
    ]
    mounted = host.run(["zfs", "get", "-H", "-o", "value,source", "mountpoint", t.vol("g1")])
    below = t.vol("g1").removeprefix(zfs_target.name)  # the receiver's own place for it
    assert mounted.stdout == f"{zfs_target.mountpoint}{below}\tinherited from {zfs_target.name}\n"
    assert all(t.backend.mountpoint(t.vol(g)) for g in ("g1", "g2", "g3"))  # mount=True
    _check_replica(pair, seals)
    again = pair.replicate()
    assert (again.sent, again.held, again.updated, again.fixed) == ((), (), (), ())


def test_an_unchanged_lineage_costs_one_read_of_the_target(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    pair.three_generations(size=4096)
    pair.replicate()
    caplog.set_level(logging.INFO, logger="g2d.cmd")
    caplog.clear()
    assert pair.replicate().sent == ()
    ran = [r.getMessage() for r in caplog.records if r.name == "g2d.cmd"]
    src, dst = pair.source.root, pair.target.root
    # run two at a time (each pair started together), so their order in the log may vary
    assert sorted((line.split(" -o ")[0], line.rsplit(" ", 1)[1]) for line in ran) == sorted([
        ("local$ zfs get -Hp -r -d 2", src),  # the source: native properties,
        ("local$ zfs get -Hp -r -d 2", src),  # beside them its user properties
        ("local$ zfs get -Hp -r -d 2", dst),  # the target: both, its keys named,
        ("local$ zfs get -Hp -r", zfs_target.name),  # beside it the pool's guids (twins)
    ])  # fmt: skip


def test_a_clone_whose_origin_has_a_twin_in_the_target_pool_is_refused_before_sending(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    s1, _, _ = pair.three_generations(size=4096)
    pair.replicate()
    s, t = pair.source, pair.target
    other = f"{zfs_target.name}/other"
    with pytest.raises(ReplicationError) as info:
        plan_replication(s.backend, s.root, t.backend, other)
    g2 = pair.source.lineage().generation("g2").snapshots[0].ref
    assert str(info.value) == (
        f"cannot replicate {g2} as a clone of {other}/g1@{s1}: {t.vol('g1')}@{s1} in pool "
        f"{zfs_target.name} has the same guid, and zfs cannot tell which one the stream means"
    )
    assert not t.backend.exists(other)


def _hosts(pair: Pair) -> dict[str, Host]:
    s, t = pair.source.backend.host, pair.target.backend.host
    return {s.name: s, t.name: t}


def _cut(step: Step) -> Step:
    if len(step.pipeline) == 1:
        return step
    send, receive = step.pipeline
    head = Command(send.host, ("head", "-c", str(64 << 10)))
    return dataclasses.replace(step, pipeline=(send, head, receive))


def test_refused_within_one_pool_and_over_a_diverged_target(
    zfs_pool: ZfsPool, zfs_target: ZfsPool, tmp_path: Path
) -> None:
    pair = _zfs_pair(zfs_pool, zfs_target, LocalHost(), tmp_path)
    pair.three_generations(size=4096)
    s, t = pair.source, pair.target
    with pytest.raises(ReplicationError) as info:
        plan_replication(s.backend, s.root, s.backend, f"{zfs_pool.name}/copy")
    assert str(info.value) == (
        f"cannot replicate {s.root} to {zfs_pool.name}/copy: both are in pool {zfs_pool.name}"
    )
    pair.replicate()
    # a snapshot taken on the replica itself: the next replication must not overwrite it
    t.backend.apply(t.backend.snapshot_plan([t.vol("g3")], "local-change"))
    with pytest.raises(ReplicationError) as info:
        pair.replicate()
    newest = pair.target.lineage().generation("g3").sealed[-1].ref
    assert str(info.value) == (
        f"{t.vol('g3')}@local-change on the target is not a snapshot of {s.vol('g3')}: the "
        f"target diverged; the last common snapshot is {newest}"
    )


# --- btrfs --------------------------------------------------------------------------------------


@pytest.fixture
def btrfs_pair(tmp_path: Path) -> Iterator[Pair]:
    from g2d.lab.loopdev import FsType, mount_loop

    with (
        mount_loop(tmp_path / "src-loop", FsType.btrfs) as a,
        mount_loop(tmp_path / "dst-loop", FsType.btrfs) as b,
    ):
        Path(a.mountpoint, "sys").mkdir()
        btrfs = backend_class(BackendKind.btrfs)
        yield Pair(Side(btrfs(LocalHost()), f"{a.mountpoint}/sys"),
                   Side(btrfs(LocalHost()), f"{b.mountpoint}/sys"), tmp_path / "state")  # fmt: skip


def test_btrfs_file_system_to_file_system(btrfs_pair: Pair) -> None:
    seals = btrfs_pair.three_generations()
    _replicate_twice_then_unchanged(btrfs_pair, seals)


# --- the plan form replication's clean-ups need ----------------------------------------------


def test_done_unless_skips_a_step_only_when_its_check_says_absent(tmp_path: Path) -> None:
    from g2d.storage.apply import apply_plan

    there, gone = tmp_path / "there", tmp_path / "gone"
    there.write_text("x")
    log = tmp_path / "ran"

    def remove(path: Path, check: list[str]) -> Step:
        argv = ["sh", "-c", f'echo {path.name} >> {log}; rm -f "$0"', str(path)]  # test only
        return Step.run("local", argv, f"remove {path.name}", done_unless=check)

    steps = [
        remove(there, ["test", "-e", str(there)]),  # exits 0: still there, so it runs
        remove(gone, ["test", "-e", str(gone)]),
    ]  # exits 1: absent, done: skipped
    assert apply_plan(Plan.of("clean", steps), {"local": LocalHost()}) == [0]
    assert log.read_text() == "there\n" and not there.exists()
    # any other exit is no answer: the step runs (here: and succeeds)
    odd = remove(gone, ["sh", "-c", "exit 2"])
    assert apply_plan(Plan.of("clean", [odd]), {"local": LocalHost()}) == [0]
