"""One contract, every backend: zfs (zfs-fuse pool on files), btrfs (loop device) and plain
(xfs with reflink on a loop device), locally, and zfs and btrfs through ssh to 127.0.0.1.

Backend-specific behaviour (zfs-fuse fallbacks, btrfs received-uuid, reflink) is tested in
each backend's own test file; this file holds what every backend promises.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.ssh import SshHost
from g2d.lab.sshd import SshServer
from g2d.storage.base import (
    AlreadyExists,
    Backend,
    BackendKind,
    HasDependents,
    NotFound,
    SnapRef,
    StorageError,
)

CASES = ["zfs-local", "btrfs-local", "plain-local", "zfs-ssh", "btrfs-ssh"]


@dataclass
class Env:
    backend: Backend
    root: str  # where this test's volumes live: a dataset (zfs) or a directory

    def vol(self, leaf: str) -> str:
        return f"{self.root}/{leaf}"

    @property
    def host(self) -> Host:
        return self.backend.host

    def path(self, name: str) -> str:
        mounted = self.backend.mountpoint(name)
        assert mounted, f"{name} is not mounted"
        return mounted

    def write(self, name: str, rel: str, data: bytes) -> None:
        self.host.run(["tee", f"{self.path(name)}/{rel}"], stdin=data, stdout=Path("/dev/null"))

    def read(self, name: str, rel: str) -> bytes:
        return self.host.run(["cat", f"{self.path(name)}/{rel}"]).out

    def has(self, name: str, rel: str) -> bool:
        return self.host.run(["test", "-e", f"{self.path(name)}/{rel}"], check=False).ok

    def digest(self, name: str) -> str:
        """A digest of a volume's files (names, modes, contents), to compare copies."""
        listing = self.host.run(
            ["find", ".", "-path", "./.g2d-snap", "-prune", "-o", "-printf", "%p %m %s\n"],
            cwd=self.path(name),
        ).stdout
        return hashlib.sha256("\n".join(sorted(listing.splitlines())).encode()).hexdigest()

    def apply(self, plan: object) -> None:
        self.backend.apply(plan)  # type: ignore[arg-type]


def _backend(kind: BackendKind, host: Host) -> Backend:
    importlib.import_module(f"g2d.storage.{kind.value}")  # registers the implementation
    return Backend.registry[kind](host)


def _ssh_host(server: SshServer) -> SshHost:
    return SshHost(
        server.host,
        port=server.port,
        user=server.user,
        key=server.client_key,
        host_keys=[server.host_public_key],
    )


@pytest.fixture(params=CASES)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    kind_name, where = request.param.split("-")
    kind = BackendKind(kind_name)
    host: Host = LocalHost()
    if where == "ssh":
        host = _ssh_host(request.getfixturevalue("sshd"))
    if kind is BackendKind.zfs:
        pool = request.getfixturevalue("zfs_pool")
        root = f"{pool.name}/sys"
        LocalHost().run(["zfs", "create", root])
    else:
        mount = request.getfixturevalue("btrfs_mount" if kind is BackendKind.btrfs else "xfs_mount")
        root = f"{mount.mountpoint}/sys"
        Path(root).mkdir()
    yield Env(_backend(kind, host), root)
    if isinstance(host, SshHost):
        host.close()


def test_caps_are_probed_from_the_tool(env: Env) -> None:
    caps = env.backend.caps
    assert caps.version  # the tool's own version text
    assert caps.to_json()["version"] == caps.version


def test_create_with_metadata_and_exists(env: Env) -> None:
    g1 = env.vol("g1")
    assert not env.backend.exists(g1)
    env.apply(env.backend.create_plan(g1, {"g2d:gen": "1", "g2d:state": "building"}))
    assert env.backend.exists(g1)
    info = env.backend.volume(g1)
    assert (info.name, info.origin) == (g1, None)
    assert info.meta == {"g2d:gen": "1", "g2d:state": "building"}
    assert env.backend.get_meta(g1) == {"g2d:gen": "1", "g2d:state": "building"}


def test_create_refuses_an_existing_volume(env: Env) -> None:
    g1 = env.vol("g1")
    env.apply(env.backend.create_plan(g1))
    with pytest.raises(AlreadyExists) as info:
        env.backend.create_plan(g1)
    assert str(info.value) == f"{g1} already exists"


def test_queries_on_a_missing_volume_raise_not_found(env: Env) -> None:
    missing = env.vol("nope")
    with pytest.raises(NotFound) as info:
        env.backend.volume(missing)
    assert str(info.value) == f"{missing} does not exist"
    with pytest.raises(NotFound):
        env.backend.snapshots(missing)


def test_invalid_metadata_keys_are_refused(env: Env) -> None:
    with pytest.raises(StorageError) as info:
        env.backend.create_plan(env.vol("g1"), {"Parent": "x"})
    assert str(info.value) == "invalid metadata keys ['Parent']"


def test_snapshot_lists_with_metadata_guid_and_time(env: Env) -> None:
    g1 = env.vol("g1")
    env.apply(env.backend.create_plan(g1))
    env.write(g1, "hello", b"one\n")
    env.apply(env.backend.snapshot_plan([g1], "s1", {"g2d:sealed": "yes"}))
    env.apply(env.backend.snapshot_plan([g1], "s2"))
    snaps = env.backend.snapshots(g1)
    assert [s.ref for s in snaps] == [SnapRef(g1, "s1"), SnapRef(g1, "s2")]
    assert snaps[0].meta.get("g2d:sealed") == "yes"
    assert snaps[0].guid and snaps[0].guid != snaps[1].guid
    assert snaps[0].created > 1_700_000_000
    assert env.backend.snapshot(SnapRef(g1, "s1")).ref == SnapRef(g1, "s1")


def test_snapshot_plan_applied_twice_is_idempotent(env: Env) -> None:
    g1 = env.vol("g1")
    env.apply(env.backend.create_plan(g1))
    plan = env.backend.snapshot_plan([g1], "s1")
    env.apply(plan)
    env.apply(plan)  # a re-run after a crash: the finished step is skipped
    assert [s.ref.name for s in env.backend.snapshots(g1)] == ["s1"]


def test_clone_has_the_snapshot_content_and_its_origin(env: Env) -> None:
    g1, g2 = env.vol("g1"), env.vol("g2")
    env.apply(env.backend.create_plan(g1))
    env.write(g1, "f", b"from g1\n")
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.write(g1, "f", b"changed after the snapshot\n")
    env.apply(env.backend.clone_plan(SnapRef(g1, "s1"), g2, {"g2d:gen": "2"}))
    assert env.read(g2, "f") == b"from g1\n"
    assert env.backend.volume(g2).origin == SnapRef(g1, "s1")
    assert env.backend.get_meta(g2)["g2d:gen"] == "2"
    env.write(g2, "f", b"g2 changed\n")
    assert env.read(g1, "f") == b"changed after the snapshot\n"
    assert env.backend.snapshot(SnapRef(g1, "s1")).clones == (g2,)


def test_rollback_discards_changes_and_refuses_to_skip_newer_snapshots(env: Env) -> None:
    g1 = env.vol("g1")
    env.apply(env.backend.create_plan(g1))
    env.write(g1, "keep", b"k\n")
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.write(g1, "later", b"l\n")
    env.apply(env.backend.rollback_plan(SnapRef(g1, "s1")))
    assert env.has(g1, "keep") and not env.has(g1, "later")
    env.apply(env.backend.snapshot_plan([g1], "s2"))
    with pytest.raises(StorageError) as info:
        env.backend.rollback_plan(SnapRef(g1, "s1"))
    assert f"{g1}@s2" in str(info.value)
    env.apply(env.backend.rollback_plan(SnapRef(g1, "s1"), destroy_newer=True))
    assert [s.ref.name for s in env.backend.snapshots(g1)] == ["s1"]


def test_destroy_with_dependents_is_refused_then_planned_with_force(env: Env) -> None:
    g1, g2 = env.vol("g1"), env.vol("g2")
    env.apply(env.backend.create_plan(g1))
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.apply(env.backend.clone_plan(SnapRef(g1, "s1"), g2))
    with pytest.raises(HasDependents) as info:
        env.backend.destroy_plan(g1)
    assert info.value.name == g1
    assert set(info.value.dependents) >= {f"{g1}@s1", g2}
    assert env.backend.exists(g1) and env.backend.exists(g2)  # nothing changed
    plan = env.backend.destroy_plan(g1, force=True)
    assert plan.steps  # shown before anything happens
    env.apply(plan)
    assert not env.backend.exists(g1) and not env.backend.exists(g2)


def test_a_held_snapshot_cannot_be_destroyed_until_released(env: Env) -> None:
    g1 = env.vol("g1")
    ref = SnapRef(g1, "s1")
    env.apply(env.backend.create_plan(g1))
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.apply(env.backend.hold_plan(ref, "g2d-sealed"))
    assert env.backend.snapshot(ref).holds == frozenset({"g2d-sealed"})
    with pytest.raises(HasDependents) as info:
        env.backend.destroy_plan(ref)
    assert "hold g2d-sealed" in str(info.value)
    env.apply(env.backend.release_plan(ref, "g2d-sealed"))
    assert env.backend.snapshot(ref).holds == frozenset()
    env.apply(env.backend.destroy_plan(ref))
    assert env.backend.snapshots(g1) == []


def test_force_releases_holds_then_destroys(env: Env) -> None:
    """Held snapshots are refused unless asked; asked, the plan releases, then destroys."""
    g1 = env.vol("g1")
    env.apply(env.backend.create_plan(g1))
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.apply(env.backend.hold_plan(SnapRef(g1, "s1"), "g2d-sealed"))
    with pytest.raises(HasDependents):
        env.backend.destroy_plan(g1)
    env.apply(env.backend.destroy_plan(g1, force=True))
    assert not env.backend.exists(g1)


def test_metadata_set_and_removed_on_volumes_and_snapshots(env: Env) -> None:
    g1 = env.vol("g1")
    ref = SnapRef(g1, "s1")
    env.apply(env.backend.create_plan(g1, {"g2d:state": "building"}))
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.apply(env.backend.set_meta_plan(g1, {"g2d:state": "sealed", "g2d:profile": "plasma"}))
    env.apply(env.backend.set_meta_plan(ref, {"g2d:sealed": "2026-11-25T00:00:00Z"}))
    assert env.backend.get_meta(g1) == {"g2d:state": "sealed", "g2d:profile": "plasma"}
    assert env.backend.get_meta(ref)["g2d:sealed"] == "2026-11-25T00:00:00Z"
    env.apply(env.backend.set_meta_plan(g1, {"g2d:profile": None}))
    assert env.backend.get_meta(g1) == {"g2d:state": "sealed"}


def test_rename(env: Env) -> None:
    old, new = env.vol("g1"), env.vol("g9")
    env.apply(env.backend.create_plan(old))
    env.write(old, "f", b"x\n")
    env.apply(env.backend.snapshot_plan([old], "s1"))
    env.apply(env.backend.rename_plan(old, new))
    assert not env.backend.exists(old) and env.backend.exists(new)
    assert env.read(new, "f") == b"x\n"
    assert [s.ref for s in env.backend.snapshots(new)] == [SnapRef(new, "s1")]


def test_promote_moves_the_origin_snapshot_to_the_clone(env: Env) -> None:
    g1, g2 = env.vol("g1"), env.vol("g2")
    env.apply(env.backend.create_plan(g1))
    env.write(g1, "f", b"base\n")
    env.apply(env.backend.snapshot_plan([g1], "g1-s1"))
    env.apply(env.backend.clone_plan(SnapRef(g1, "g1-s1"), g2))
    env.apply(env.backend.promote_plan(g2))
    assert env.backend.volume(g2).origin is None
    assert env.backend.volume(g1).origin == SnapRef(g2, "g1-s1")
    env.apply(env.backend.destroy_plan(g1))  # no longer anyone's origin
    assert env.read(g2, "f") == b"base\n"


def test_volumes_lists_parents_first(env: Env) -> None:
    g1, g2 = env.vol("g1"), env.vol("g2")
    env.apply(env.backend.create_plan(g1))
    env.apply(env.backend.create_plan(g2))
    names = [v.name for v in env.backend.volumes(env.root)]
    assert names[-2:] == [g1, g2] or names[-2:] == [g2, g1]
    assert set(names) >= {g1, g2}


def test_full_and_incremental_send_receive(env: Env) -> None:
    g1, copy = env.vol("g1"), env.vol("copy")
    env.apply(env.backend.create_plan(g1))
    env.write(g1, "a", b"first\n")
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    s1 = env.backend.snapshot(SnapRef(g1, "s1"))
    run_pipeline([env.backend.send_stage(s1.ref), env.backend.receive_stage(copy)])
    got = env.backend.finish_receive(copy, s1)
    assert got.ref == SnapRef(copy, "s1")
    assert env.read(copy, "a") == b"first\n"
    env.write(g1, "b", b"second\n")
    env.apply(env.backend.snapshot_plan([g1], "s2"))
    s2 = env.backend.snapshot(SnapRef(g1, "s2"))
    run_pipeline([env.backend.send_stage(s2.ref, base=s1.ref), env.backend.receive_stage(copy)])
    env.backend.finish_receive(copy, s2)
    assert [s.ref.name for s in env.backend.snapshots(copy)] == ["s1", "s2"]
    assert env.read(copy, "b") == b"second\n"


def test_receive_never_lands_on_an_existing_volume(env: Env) -> None:
    g1, other = env.vol("g1"), env.vol("other")
    env.apply(env.backend.create_plan(g1))
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    env.apply(env.backend.create_plan(other))
    env.write(other, "mine", b"precious\n")
    with pytest.raises(AlreadyExists):
        env.backend.receive_stage(other)
    assert env.read(other, "mine") == b"precious\n"


def test_a_cut_off_receive_leaves_no_half_volume(env: Env) -> None:
    g1, copy = env.vol("g1"), env.vol("copy")
    env.apply(env.backend.create_plan(g1))
    env.host.run(
        ["dd", "if=/dev/urandom", f"of={env.path(g1)}/big", "bs=1M", "count=8", "status=none"]
    )
    env.apply(env.backend.snapshot_plan([g1], "s1"))
    s1 = env.backend.snapshot(SnapRef(g1, "s1"))
    cut = Stage.of(LocalHost(), ["head", "-c", "1000000"])
    with pytest.raises(CommandFailed):
        run_pipeline([env.backend.send_stage(s1.ref), cut, env.backend.receive_stage(copy)])
    with pytest.raises(StorageError):  # the caller's clean-up call: nothing half is kept
        env.backend.finish_receive(copy, s1)
    assert not env.backend.exists(copy)
    run_pipeline([env.backend.send_stage(s1.ref), env.backend.receive_stage(copy)])
    env.backend.finish_receive(copy, s1)  # the re-run completes
    assert env.digest(copy) == env.digest(g1)


def test_plans_print_the_exact_commands(env: Env) -> None:
    g1 = env.vol("g1")
    plan = env.backend.create_plan(g1, {"g2d:gen": "1"})
    text = plan.render()
    assert text.startswith("plan: ")
    assert all(c.host == env.host.name for s in plan.steps for c in s.pipeline)
    assert g1 in text
    assert not env.backend.exists(g1)  # planning changed nothing
