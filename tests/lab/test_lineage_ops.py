"""Lineage operations on real backends: ZFS (a zfs-fuse pool on a file), btrfs and plain
(xfs with reflink) on loop devices.

g1 -> seal -> branch g2 -> seal -> branch g3, then the tree, @safe, rollback, promote (the
parent links in metadata survive it), prune; one writer per pool; and a runner killed with
SIGKILL between two steps of a plan, finished by running the same command again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed, InvalidTarget
from g2d.core.lineage import SEAL_HOLD, GenName, GenState, Lineage, Meta, Origin, SnapName
from g2d.core.lineage_tree import human_size, render_tree
from g2d.core.plan import Plan
from g2d.core.retention import RetentionPolicy
from g2d.core.uri import parse_target
from g2d.hosts.local import LocalHost
from g2d.hosts.ssh import SshHost
from g2d.lab.loopdev import LoopMount
from g2d.lab.sshd import SshServer
from g2d.lab.zfs_fuse import ZfsPool
from g2d.storage.base import Backend, BackendKind, SnapRef
from g2d.storage.lineage import (
    branch_op,
    create_op,
    load_lineage,
    promote_op,
    prune_op,
    rollback_op,
    seal_op,
    set_state_op,
)
from g2d.storage.lineage_run import LineageWriter, Outcome, Phases
from g2d.storage.sense import backend_class, backend_for, pool_of

G2D = Path(sys.executable).parent / "g2d"
ORIGIN = Origin(stage3="stage3-amd64-20261124", profile="default/linux/amd64/23.0")
SCHEME = {BackendKind.zfs: "zfs://", BackendKind.btrfs: "btrfs://", BackendKind.plain: "dir://"}


@dataclass
class Env:
    backend: Backend
    root: str
    state_dir: Path

    @property
    def writer(self) -> LineageWriter:
        return LineageWriter(self.backend, self.root, pool_of(self.backend, self.root),
                             self.state_dir)  # fmt: skip

    def run(self, intent: str, phases: Phases) -> Outcome:
        return self.writer.run(intent, phases)

    def vol(self, gen: str) -> str:
        return f"{self.root}/{gen}"

    def uri(self, gen: str | None = None) -> str:
        return SCHEME[self.backend.kind] + (self.vol(gen) if gen else self.root)

    def lineage(self) -> Lineage:
        return load_lineage(self.backend, self.root)

    def path(self, gen: str) -> Path:
        mounted = self.backend.mountpoint(self.vol(gen))
        assert mounted, f"{self.vol(gen)} is not mounted"
        return Path(mounted)

    def seal(self, gen: str) -> str:
        """Seal ``gen``; returns the new snapshot's name."""
        self.run(f"seal {gen}", seal_op(self.backend, self.vol(gen), datetime.now(UTC)))
        newest = self.lineage().generation(gen).newest_sealed
        assert newest is not None
        return newest.name

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "G2D_STATE_DIR": str(self.state_dir)}
        done = subprocess.run([G2D, "lineage", *args], env=env, capture_output=True, text=True)
        if check:
            assert done.returncode == 0, done.stderr
        return done


@pytest.fixture(params=["zfs", "btrfs", "plain"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    kind = BackendKind(request.param)
    if kind is BackendKind.zfs:
        pool = request.getfixturevalue("zfs_pool")
        root = f"{pool.name}/sys"
        LocalHost().run(["zfs", "create", root])
    else:
        mount = request.getfixturevalue("btrfs_mount" if kind is BackendKind.btrfs else "xfs_mount")
        root = f"{mount.mountpoint}/sys"
        Path(root).mkdir()
    yield Env(backend_class(kind)(LocalHost()), root, tmp_path / "state")
    if kind is BackendKind.zfs:
        _destroy_lineage(root)


def _destroy_lineage(root: str) -> None:
    """Before the pool goes, through the backend (it unmounts each dataset first): zfs-fuse
    calls a mounted dataset "busy" for a while after writes."""
    backend = backend_class(BackendKind.zfs)(LocalHost())
    deadline = time.monotonic() + 60
    while True:
        try:
            backend.apply(backend.destroy_plan(root, force=True))
            backend.apply(backend.unmount_plan(root.split("/")[0]))  # less for zpool destroy
            return
        except CommandFailed as e:
            if "is busy" not in e.tail or time.monotonic() > deadline:
                raise
            time.sleep(1)


def stamp(snapshot: str) -> str:
    parsed = SnapName.parse(snapshot)
    assert parsed is not None, snapshot
    return parsed.stamp


def run_through_busy(env: Env, intent: str, phases: Phases) -> None:
    """zfs-fuse refuses a destroy with "dataset is busy" for a moment after an unmount; the
    journal then keeps the plan, and running the same operation again finishes it."""
    for _ in range(5):
        try:
            env.run(intent, phases)
            return
        except CommandFailed as e:
            if env.backend.kind is not BackendKind.zfs or "is busy" not in e.tail:
                raise
            time.sleep(1)
    env.run(intent, phases)


def three_generations(env: Env) -> tuple[str, str]:
    """g1 (sealed s1) -> g2 (sealed s2) -> g3 (building); returns (s1, s2)."""
    now = datetime.now(UTC)
    env.run("create", create_op(env.backend, None, ORIGIN, now))
    (env.path("g1") / "os-release").write_text("g1\n")
    s1 = env.seal("g1")
    env.run("branch g1", branch_op(env.backend, f"{env.vol('g1')}@safe", None, Origin(), now))
    (env.path("g2") / "os-release").write_text("g2\n")
    s2 = env.seal("g2")
    g3_origin = Origin(kernel="6.12.1")
    env.run("branch g2", branch_op(env.backend, f"{env.vol('g2')}@safe", None, g3_origin, now))
    (env.path("g3") / "os-release").write_text("g3\n")
    return s1, s2


def test_a_lineage_of_three_generations(env: Env) -> None:
    s1, s2 = three_generations(env)
    lineage = env.lineage()
    assert [stamp(s1)[:2], stamp(s2)[:2]] == ["20", "20"]
    origin = "stage3=stage3-amd64-20261124  profile=default/linux/amd64/23.0"
    assert render_tree(lineage, sizes=False) == textwrap.dedent(f"""\
        {env.root}
        └── g1  sealed  {origin}
            └── @{s1}  sealed {stamp(s1)}  <- @safe
                └── g2  sealed  {origin}
                    └── @{s2}  sealed {stamp(s2)}  <- @safe
                        └── g3  building  {origin}  kernel=6.12.1
    """)
    assert s1.startswith("g1-") and s2.startswith("g2-")
    assert str(lineage.resolve(f"{env.vol('g2')}@safe").ref) == f"{env.vol('g2')}@{s2}"
    sealed = env.backend.snapshot(lineage.resolve(f"{env.vol('g1')}@safe").ref)
    assert SEAL_HOLD in sealed.holds and sealed.meta[Meta.sealed] == stamp(s1)
    g3 = env.backend.get_meta(env.vol("g3"))
    assert g3[Meta.parent] == f"{env.vol('g2')}@{s2}" and g3[Meta.gen] == "g3"
    assert (env.path("g3") / "os-release").read_text() == "g3\n"
    assert (env.path("g2") / "os-release").read_text() == "g2\n"


def test_rollback_to_the_last_seal(env: Env) -> None:
    _, s2 = three_generations(env)
    (env.path("g2") / "junk").write_text("an update that went wrong\n")
    env.run("fail g2", set_state_op(env.backend, env.vol("g2"), GenState.failed))
    env.run("rollback g2", rollback_op(env.backend, env.vol("g2")))
    assert not (env.path("g2") / "junk").exists()
    assert (env.path("g2") / "os-release").read_text() == "g2\n"
    assert env.lineage().generation("g2").state is GenState.sealed
    assert env.lineage().generation("g3").volume.origin.name == s2  # type: ignore[union-attr]


def test_promote_keeps_parent_links_and_prune_keeps_what_is_needed(env: Env) -> None:
    s1, s2 = three_generations(env)
    env.run("promote g3", promote_op(env.backend, env.vol("g3")))
    lineage = env.lineage()
    g3 = lineage.generation("g3")
    # storage origins reversed: g3 took g2's origin, g2 is now a clone of g3's snapshot
    assert g3.volume.origin == SnapRef(env.vol("g1"), s1)  # type: ignore[union-attr]
    assert lineage.generation("g2").volume.origin == SnapRef(env.vol("g3"), s2)  # type: ignore[union-attr]
    assert lineage.parent(g3).name == s2  # type: ignore[union-attr]
    assert lineage.parent(lineage.generation("g2")).name == s1  # type: ignore[union-attr]
    assert env.backend.get_meta(env.vol("g3"))[Meta.parent] == f"{env.vol('g2')}@{s2}"
    assert [s.name for s in lineage.generation("g2").snapshots] == [s2]  # still g2's
    # more seals on g1, then g2 retired: prune keeps g1's newest, and g1@s1 and g2@s2 for g3
    newer = [env.seal("g1"), env.seal("g1")]
    env.run("retire g2", set_state_op(env.backend, env.vol("g2"), GenState.retired))
    run_through_busy(env, "prune", prune_op(env.backend, RetentionPolicy(keep_sealed=1)))
    after = env.lineage()
    names = sorted(s.name for s in after.snapshots)
    assert names == sorted([s1, s2, newer[1]])
    assert not env.backend.exists(env.vol("g2")) and after.generation("g2").volume is None
    g3 = after.generation("g3")
    assert after.parent(g3).name == s2  # type: ignore[union-attr]
    assert after.parent(after.generation("g2")) is None  # g2's volume went with its link
    assert (env.path("g3") / "os-release").read_text() == "g3\n"
    assert (env.path("g1") / "os-release").read_text() == "g1\n"
    origin = "stage3=stage3-amd64-20261124  profile=default/linux/amd64/23.0"
    assert render_tree(after, sizes=False) == textwrap.dedent(f"""\
        {env.root}
        ├── g1  sealed  {origin}
        │   ├── @{s1}  sealed {stamp(s1)}
        │   └── @{newer[1]}  sealed {stamp(newer[1])}  <- @safe
        └── g2  state unknown  (volume destroyed)
            └── @{s2}  sealed {stamp(s2)}  on {env.vol("g3")}
                └── g3  building  origin {env.vol("g1")}@{s1}  {origin}  kernel=6.12.1
    """)


def test_dry_run_changes_nothing(env: Env) -> None:
    three_generations(env)
    before = render_tree(env.lineage(), sizes=False)
    shown = env.cli("branch", "--dry-run", env.uri("g2") + "@safe")
    assert shown.stdout.startswith(f"plan: branch {env.uri('g2')}@safe\n  1. local: ")
    assert shown.stdout.endswith("dry run: nothing changed\n")
    env.cli("seal", "--dry-run", env.uri("g3"))
    assert render_tree(env.lineage(), sizes=False) == before
    listed = env.cli("list", "--no-sizes", env.uri())
    assert listed.stdout == before


KILLER = """\
import logging, os, sys, time
from pathlib import Path

marker, kill_at = Path(sys.argv[1]), int(sys.argv[2])


class StopBeforeStep(logging.Handler):
    seen = 0

    def emit(self, record):
        if record.msg.startswith("step %d/%d: "):  # a step is about to run
            StopBeforeStep.seen += 1
            if StopBeforeStep.seen == kill_at:
                marker.write_text(str(os.getpid()))
                time.sleep(600)  # until the test kills this process


log = logging.getLogger("g2d.plan")
log.addHandler(StopBeforeStep())
log.setLevel(logging.INFO)
sys.argv = ["g2d", *sys.argv[3:]]
from g2d.cli import main

main()
"""


@pytest.mark.parametrize("kill_at", [2, 3])
def test_sigkill_between_steps_then_the_same_command_finishes(
    env: Env, tmp_path: Path, kill_at: int
) -> None:
    env.run("create", create_op(env.backend, GenName(1), ORIGIN, datetime.now(UTC)))
    (env.path("g1") / "os-release").write_text("g1\n")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    marker = tmp_path / "stopped"
    args = ["lineage", "seal", env.uri("g1")]
    runner = subprocess.Popen(
        [sys.executable, script, marker, str(kill_at), *args],
        env={**os.environ, "G2D_STATE_DIR": str(env.state_dir)},
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert runner.poll() is None, "the runner ended before the step it should stop at"
        assert time.monotonic() < deadline, "the runner never reached the step"
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)
    assert runner.wait() == -signal.SIGKILL
    journal = env.writer.journal_path
    assert journal.exists()

    other = env.cli("branch", env.uri("g1") + "@safe", check=False)
    assert other.returncode == 1
    assert other.stderr == (
        f"error: pool {env.writer.pool} on local has an unfinished operation: "
        f"seal {env.uri('g1')} ({_progress(env)})\n"
        f"(run `g2d lineage seal {env.uri('g1')}` again to finish it, "
        f"or delete {journal} to abandon it)\n"
    )

    again = env.cli("seal", env.uri("g1"))
    assert again.stdout.startswith(f"finished the interrupted `g2d lineage seal {env.uri('g1')}`\n")
    assert not journal.exists()
    gen = env.lineage().generation("g1")
    assert len(gen.snapshots) == 1 and gen.snapshots[0].sealed  # one seal, not two
    assert SEAL_HOLD in gen.snapshots[0].info.holds
    assert gen.state is GenState.sealed
    assert (env.path("g1") / "os-release").read_text() == "g1\n"


def _progress(env: Env) -> str:
    from g2d.storage.lineage_run import Journal

    journal = Journal.read(env.writer.journal_path)
    assert journal is not None
    _, index, count = journal.part
    steps = f"{len(journal.done)} of {len(journal.plan.steps)} steps of part {index + 1}"
    return f"{steps} of {count} done"


def test_a_second_writer_gets_a_clear_error(env: Env, tmp_path: Path) -> None:
    env.run("create", create_op(env.backend, GenName(1), ORIGIN, datetime.now(UTC)))
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""\
            import sys, time
            from pathlib import Path
            from g2d.storage.lock import pool_lock
            with pool_lock(Path({str(env.state_dir)!r}), "local", {env.writer.pool!r},
                           purpose="seal elsewhere"):
                print("locked", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"  # type: ignore[union-attr]
        refused = env.cli("seal", env.uri("g1"), check=False)
        assert refused.returncode == 1
        assert refused.stderr == (
            f"error: pool {env.writer.pool} on local is locked by another g2d writer: "
            f"pid {holder.pid}: seal elsewhere\n"
            "(wait for it to finish, or pass --wait SECONDS)\n"
        )
        assert env.lineage().generation("g1").snapshots == ()  # nothing changed
        waiting = subprocess.Popen(
            [G2D, "lineage", "seal", "--wait", "60", env.uri("g1")],
            env={**os.environ, "G2D_STATE_DIR": str(env.state_dir)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1)
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        holder.communicate("")  # releases the lock
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.startswith(f"plan: seal {env.uri('g1')} [part 1 of 2]\n")
    assert len(env.lineage().generation("g1").sealed) == 1


def test_show_names_what_safe_resolves_to(env: Env) -> None:
    s1, _ = three_generations(env)
    info = env.lineage().generation("g1")
    used = human_size(info.volume.used)  # type: ignore[union-attr]
    meta = [f"{k}: {v}" for k, v in sorted(info.meta.items())]
    shown = env.cli("show", env.uri("g1"))
    assert shown.stdout == "\n".join([
        "generation: g1", f"volume: {env.vol('g1')}", "state: sealed", "parent: -",
        f"origin: -  used: {used}", *meta, f"@safe: {env.vol('g1')}@{s1}",
        f"  {env.vol('g1')}@{s1} sealed holds={SEAL_HOLD}",
    ]) + "\n"  # fmt: skip


# --- sensing the backend ---------------------------------------------------------------------


def test_the_scheme_names_the_backend_without_asking_the_host() -> None:
    host = LocalHost()
    kinds = [backend_for(parse_target(t), host).kind
             for t in ("zfs://nopool/x", "btrfs:///nowhere/x", "dir:///nowhere/x")]  # fmt: skip
    assert kinds == [BackendKind.zfs, BackendKind.btrfs, BackendKind.plain]


def test_a_path_is_sensed_from_its_file_system(
    btrfs_mount: LoopMount, xfs_mount: LoopMount
) -> None:
    host = LocalHost()
    on_btrfs = parse_target(f"{btrfs_mount.mountpoint}/sys/g1")  # not there yet: its parent is
    assert backend_for(on_btrfs, host).kind is BackendKind.btrfs
    on_xfs = parse_target(f"{xfs_mount.mountpoint}/sys/g1")
    backend = backend_for(on_xfs, host)
    assert backend.kind is BackendKind.plain
    assert pool_of(backend, on_xfs.name) == str(xfs_mount.mountpoint)


def test_a_bare_dataset_name_is_sensed_from_zfs(zfs_pool: ZfsPool) -> None:
    host = LocalHost()
    backend = backend_for(parse_target(f"{zfs_pool.name}/sys/g9"), host)  # the pool answers
    assert backend.kind is BackendKind.zfs
    assert pool_of(backend, f"{zfs_pool.name}/sys/g9") == zfs_pool.name
    with pytest.raises(InvalidTarget) as info:
        backend_for(parse_target("g2dnopool/sys"), host)
    assert str(info.value) == (
        "invalid target 'g2dnopool/sys': no ZFS dataset of that name (or of a parent) exists"
    )
    assert info.value.hint == "write zfs://, btrfs:// or dir://, or an absolute path"


# --- over ssh --------------------------------------------------------------------------------


def test_the_same_operations_over_ssh(zfs_pool: ZfsPool, sshd: SshServer, tmp_path: Path) -> None:
    root = f"{zfs_pool.name}/sys"
    LocalHost().run(["zfs", "create", root])
    host = SshHost(sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
                   host_keys=[sshd.host_public_key])  # fmt: skip
    try:
        env = Env(backend_class(BackendKind.zfs)(host), root, tmp_path / "state")
        now = datetime.now(UTC)
        env.run("create", create_op(env.backend, None, ORIGIN, now))
        s1 = env.seal("g1")
        env.run("branch", branch_op(env.backend, f"{root}/g1@safe", None, Origin(), now))
        lineage = env.lineage()
        assert lineage.parent(lineage.generation("g2")).name == s1  # type: ignore[union-attr]
        assert all(c.host == host.name for s in _seal_plan(env).steps for c in s.pipeline)
    finally:
        host.close()
        _destroy_lineage(root)


def _seal_plan(env: Env) -> Plan:
    return env.writer.preview(
        "seal g2", seal_op(env.backend, env.vol("g2"), datetime.now(UTC))
    ).plans[0]
