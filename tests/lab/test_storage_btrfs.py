"""The btrfs backend's own behaviour, on a real btrfs on a loop device (and a second one,
reached through ssh, as a receiver): the received-UUID pitfall, cut-off streams, metadata
through send/receive, the subvolume tree, crash-resumable plans.

The contract every backend keeps is in test_backend_contract.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.plan import Plan
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.ssh import SshHost
from g2d.lab.loopdev import FsType, LoopMount, mount_loop
from g2d.lab.sshd import SshServer
from g2d.storage.base import AlreadyExists, HasDependents, SnapRef, StorageError, Unsupported
from g2d.storage.btrfs import BtrfsBackend

local = LocalHost()


@dataclass
class Lab:
    backend: BtrfsBackend
    mnt: Path
    root: Path  # mnt/sys, where the test's volumes live

    def vol(self, leaf: str) -> str:
        return str(self.root / leaf)

    def snap_path(self, volume: str, snap: str) -> Path:
        return self.root / ".g2d-snap" / f"{Path(volume).name}@{snap}" / snap

    def show(self, path: Path | str) -> dict[str, str]:
        """``btrfs subvolume show`` as a dict of its ``Key: value`` lines."""
        out = local.run(["btrfs", "subvolume", "show", str(path)]).stdout
        pairs = (line.strip().partition(":") for line in out.splitlines()[1:])
        return {k: v.strip() for k, _, v in pairs if v.strip()}

    def tree(self) -> str:
        """The file system's subvolumes as ``<id> <path>`` lines (paths from the fs top)."""
        out = local.run(["btrfs", "subvolume", "list", str(self.mnt)]).stdout
        rows = (
            re.fullmatch(r"ID (\d+) gen \d+ top level \d+ path (.*)", x) for x in out.splitlines()
        )
        return "\n".join(f"{m.group(1)} {m.group(2)}" for m in rows if m)

    def apply(self, plan: Plan) -> None:
        self.backend.apply(plan)

    def make(self, leaf: str, files: dict[str, bytes], meta: dict[str, str] | None = None) -> str:
        name = self.vol(leaf)
        self.apply(self.backend.create_plan(name, meta))
        for rel, data in files.items():
            Path(name, rel).write_bytes(data)
        return name

    def send(self, ref: SnapRef, into: str, base: SnapRef | None = None, **kw: Any) -> None:
        b = self.backend
        run_pipeline([b.send_stage(ref, base=base), b.receive_stage(into, **kw)])
        b.finish_receive(into, b.snapshot(ref))


@pytest.fixture
def lab(btrfs_mount: LoopMount) -> Lab:
    root = btrfs_mount.mountpoint / "sys"
    root.mkdir()
    return Lab(BtrfsBackend(local), btrfs_mount.mountpoint, root)


@pytest.fixture
def second_btrfs(
    tmp_path: Path, start_component: Callable[[str, Callable[[], Any]], Any]
) -> Iterator[LoopMount]:
    mounted = start_component(
        "btrfs on a loop device", lambda: mount_loop(tmp_path / "second", FsType.btrfs)
    )
    with mounted:
        yield mounted


def test_caps_come_from_the_tool_and_the_kernel(lab: Lab) -> None:
    caps = lab.backend.caps
    assert caps.version == local.run(["btrfs", "--version"]).stdout.strip()
    kernel = Path("/sys/fs/btrfs/features/send_stream_version").read_text().strip()
    assert caps.extra["kernel_send_proto"] == int(kernel)
    assert (caps.incremental_send, caps.resumable_send, caps.raw_send, caps.bookmarks) == (
        True,
        False,
        False,
        False,
    )
    assert caps.compression[0] == "zlib"


def test_the_subvolume_tree_after_snapshot_clone_and_promote(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {"f": b"base\n"})
    lab.apply(b.snapshot_plan([g1], "s1"))
    g2 = lab.vol("g2")
    lab.apply(b.clone_plan(SnapRef(g1, "s1"), g2))
    assert lab.tree() == "\n".join(["256 sys/g1", "257 sys/.g2d-snap/g1@s1/s1", "258 sys/g2"])
    lab.apply(b.promote_plan(g2))
    # the snapshot moved with its home directory; the read-only subvolume itself never moves
    assert lab.tree() == "\n".join(["256 sys/g1", "257 sys/.g2d-snap/g2@s1/s1", "258 sys/g2"])
    assert b.volume(g1).origin == SnapRef(g2, "s1")
    with pytest.raises(HasDependents) as info:
        b.destroy_plan(SnapRef(g2, "s1"))
    assert str(info.value) == f"{g2}@s1 has dependents: {g1}"


def test_a_received_snapshot_is_never_flipped_and_stays_a_parent(lab: Lab) -> None:
    b = lab.backend
    g1, copy = lab.make("g1", {"a": b"1\n"}), lab.vol("copy")
    lab.apply(b.snapshot_plan([g1], "s1"))
    lab.send(SnapRef(g1, "s1"), copy)
    received = lab.show(lab.snap_path(copy, "s1"))
    assert received["Received UUID"] == lab.show(lab.snap_path(g1, "s1"))["UUID"]
    assert received["Flags"] == "readonly"
    # the volume is a writable snapshot of the received one, not the received one flipped
    assert lab.show(copy)["Parent UUID"] == received["UUID"]
    assert lab.show(copy)["Flags"] == "-"
    # metadata and a clone afterwards leave it untouched
    lab.apply(b.set_meta_plan(SnapRef(copy, "s1"), {"g2d:sealed": "yes"}))
    lab.apply(b.clone_plan(SnapRef(copy, "s1"), lab.vol("branch")))
    assert b.get_meta(SnapRef(copy, "s1")) == {"g2d:sealed": "yes"}
    kept = ("UUID", "Received UUID", "Flags", "Receive transid")
    after = lab.show(lab.snap_path(copy, "s1"))
    assert [after[k] for k in kept] == [received[k] for k in kept]
    # so the next incremental still finds its parent by received_uuid
    Path(g1, "b").write_bytes(b"2\n")
    lab.apply(b.snapshot_plan([g1], "s2"))
    lab.send(SnapRef(g1, "s2"), copy, base=SnapRef(g1, "s1"))
    assert Path(copy, "b").read_bytes() == b"2\n"
    assert [s.guid for s in b.snapshots(copy)] == [s.guid for s in b.snapshots(g1)]


def test_flipping_a_sent_snapshot_to_add_metadata_breaks_the_next_incremental(lab: Lab) -> None:
    """Why the backend keeps later snapshot metadata on the snapshot's home: the btrfs fact."""
    b = lab.backend
    g1, copy = lab.make("g1", {"a": b"1\n"}), lab.vol("copy")
    lab.apply(b.snapshot_plan([g1], "s1"))
    lab.send(SnapRef(g1, "s1"), copy)
    s1 = str(lab.snap_path(g1, "s1"))
    local.run(["btrfs", "property", "set", "-ts", s1, "ro", "false"])
    local.run(["setfattr", "-n", "user.g2d-snap.sealed", "-v", "yes", s1])
    local.run(["btrfs", "property", "set", "-ts", s1, "ro", "true"])
    lab.apply(b.snapshot_plan([g1], "s2"))
    with pytest.raises(CommandFailed) as info:
        run_pipeline(
            [b.send_stage(SnapRef(g1, "s2"), base=SnapRef(g1, "s1")), b.receive_stage(copy)]
        )
    assert "ERROR: lremovexattr  user.g2d-snap.sealed failed: No data available" in info.value.tail


def test_a_cut_off_stream_leaves_a_partial_that_finish_deletes(lab: Lab) -> None:
    b = lab.backend
    g1, copy = lab.make("g1", {}), lab.vol("copy")
    local.run(["dd", "if=/dev/urandom", f"of={g1}/big", "bs=1M", "count=8", "status=none"])
    lab.apply(b.snapshot_plan([g1], "s1"))
    s1 = b.snapshot(SnapRef(g1, "s1"))
    cut = Stage.of(local, ["head", "-c", "1000000"])
    with pytest.raises(CommandFailed):
        run_pipeline([b.send_stage(s1.ref), cut, b.receive_stage(copy)])
    partial = lab.root / ".g2d-snap" / ".receiving-copy" / "s1"
    # the pitfall itself: a read-write subvolume without received_uuid
    assert (lab.show(partial)["Received UUID"], lab.show(partial)["Flags"]) == ("-", "-")
    with pytest.raises(StorageError) as info:
        b.finish_receive(copy, s1)
    assert str(info.value) == f"the receive into {copy} was cut off; deleted the partial {partial}"
    assert not partial.exists() and not b.exists(copy)
    assert lab.tree() == "256 sys/g1\n257 sys/.g2d-snap/g1@s1/s1"


def test_the_next_receive_clears_what_a_cut_off_one_left(lab: Lab) -> None:
    b = lab.backend
    g1, copy = lab.make("g1", {}), lab.vol("copy")
    local.run(["dd", "if=/dev/urandom", f"of={g1}/big", "bs=1M", "count=8", "status=none"])
    lab.apply(b.snapshot_plan([g1], "s1"))
    cut = Stage.of(local, ["head", "-c", "1000000"])
    with pytest.raises(CommandFailed):
        run_pipeline([b.send_stage(SnapRef(g1, "s1")), cut, b.receive_stage(copy)])
    lab.send(SnapRef(g1, "s1"), copy)  # no finish_receive in between: receive_stage cleans
    assert Path(copy, "big").read_bytes() == Path(g1, "big").read_bytes()
    assert lab.tree() == "\n".join(
        ["256 sys/g1", "257 sys/.g2d-snap/g1@s1/s1", "259 sys/.g2d-snap/copy@s1/s1", "260 sys/copy"]
    )


def test_metadata_travels_with_the_stream_and_marks_stay_local(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {"f": b"x\n"}, {"g2d:gen": "1", "g2d:state": "sealed"})
    lab.apply(b.snapshot_plan([g1], "s1", {"g2d:stamp": "20261125T000000Z"}))
    lab.apply(b.set_meta_plan(SnapRef(g1, "s1"), {"g2d:sealed": "yes", "g2d:stamp": None}))
    at_s1 = {"g2d:gen": "1", "g2d:state": "sealed"}  # a snapshot inherits, as on ZFS
    assert b.get_meta(SnapRef(g1, "s1")) == at_s1 | {"g2d:sealed": "yes"}
    copy = lab.vol("copy")
    lab.send(SnapRef(g1, "s1"), copy)
    assert b.get_meta(copy) == at_s1
    # what was written into the snapshot travels; a later mark lives beside it and does not
    assert b.get_meta(SnapRef(copy, "s1")) == at_s1 | {"g2d:stamp": "20261125T000000Z"}


def test_values_setfattr_would_decode_read_back_unchanged(lab: Lab) -> None:
    odd = ["0x41", "0sQQ==", '"quoted"', "two words", "line\nbreak\\", "ünïcode\n", ""]
    values = {f"g2d:v{i}": v for i, v in enumerate(odd)}
    g1 = lab.make("g1", {}, values)
    lab.apply(lab.backend.snapshot_plan([g1], "s1"))
    lab.apply(lab.backend.set_meta_plan(SnapRef(g1, "s1"), {"g2d:later": "0x42 x"}))
    assert lab.backend.get_meta(g1) == values
    assert lab.backend.get_meta(SnapRef(g1, "s1")) == values | {"g2d:later": "0x42 x"}


def test_snapshot_metadata_does_not_leak_into_clones_or_their_snapshots(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {}, {"g2d:gen": "1"})
    lab.apply(b.snapshot_plan([g1], "s1", {"g2d:sealed": "yes"}))
    g2 = lab.vol("g2")
    lab.apply(b.clone_plan(SnapRef(g1, "s1"), g2, {"g2d:gen": "2"}))
    assert b.get_meta(g2) == {"g2d:gen": "2"}
    lab.apply(b.snapshot_plan([g2], "t1"))
    assert b.get_meta(SnapRef(g2, "t1")) == {"g2d:gen": "2"}
    assert b.get_meta(SnapRef(g1, "s1")) == {"g2d:gen": "1", "g2d:sealed": "yes"}


@pytest.mark.parametrize("crash_after", range(8))
def test_a_rollback_cut_short_finishes_when_applied_again(lab: Lab, crash_after: int) -> None:
    b = lab.backend
    g1 = lab.make("g1", {"keep": b"k\n"}, {"g2d:state": "building"})
    lab.apply(b.snapshot_plan([g1], "s1", {"g2d:sealed": "yes"}))
    lab.apply(b.snapshot_plan([g1], "s2"))
    Path(g1, "later").write_bytes(b"l\n")
    lab.apply(b.set_meta_plan(g1, {"g2d:state": "failed"}))
    plan = b.rollback_plan(SnapRef(g1, "s1"), destroy_newer=True)
    assert len(plan.steps) == 8, plan.render()
    lab.apply(Plan.of(plan.title, plan.steps[:crash_after]))  # the runner died here
    lab.apply(plan)
    assert sorted(p.name for p in Path(g1).iterdir()) == ["keep"]
    assert [s.ref.name for s in b.snapshots(g1)] == ["s1"]
    assert b.get_meta(g1) == {"g2d:state": "failed"}  # metadata is not rolled back
    assert lab.tree() == "257 sys/.g2d-snap/g1@s1/s1\n259 sys/g1"


@pytest.mark.parametrize("crash_after", range(5))
def test_a_snapshot_cut_short_is_sealed_when_applied_again(lab: Lab, crash_after: int) -> None:
    b = lab.backend
    g1 = lab.make("g1", {"f": b"x\n"})
    plan = b.snapshot_plan([g1], "s1", {"g2d:sealed": "yes"})
    assert [s.pipeline[0].argv[:3] for s in plan.steps] == [
        ("mkdir", "-p", f"{lab.root}/.g2d-snap/g1@s1"),
        ("btrfs", "subvolume", "snapshot"),
        ("setfattr", "-n", "user.g2d-snap.sealed"),
        ("btrfs", "property", "set"),
    ]
    lab.apply(Plan.of(plan.title, plan.steps[:crash_after]))
    lab.apply(plan)
    assert lab.show(lab.snap_path(g1, "s1"))["Flags"] == "readonly"
    assert b.get_meta(SnapRef(g1, "s1")) == {"g2d:sealed": "yes"}


def test_rename_to_another_directory_moves_the_snapshots_along(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {"f": b"x\n"})
    lab.apply(b.snapshot_plan([g1], "s1"))
    (lab.root / "elsewhere").mkdir()
    moved = lab.vol("elsewhere/g1")
    lab.apply(b.rename_plan(g1, moved))
    assert [s.ref for s in b.snapshots(moved)] == [SnapRef(moved, "s1")]
    assert lab.tree() == "256 sys/elsewhere/g1\n257 sys/elsewhere/.g2d-snap/g1@s1/s1"
    Path(moved, "g").write_bytes(b"y\n")
    lab.apply(b.snapshot_plan([moved], "s2"))
    copy = lab.vol("copy")
    lab.send(SnapRef(moved, "s1"), copy)
    lab.send(SnapRef(moved, "s2"), copy, base=SnapRef(moved, "s1"))
    assert Path(copy, "g").read_bytes() == b"y\n"


def test_a_changed_replica_is_not_received_into_unless_forced(lab: Lab) -> None:
    b = lab.backend
    g1, copy = lab.make("g1", {"a": b"1\n"}), lab.vol("copy")
    lab.apply(b.snapshot_plan([g1], "s1"))
    lab.send(SnapRef(g1, "s1"), copy)
    Path(copy, "local-edit").write_bytes(b"mine\n")
    lab.apply(b.snapshot_plan([g1], "s2"))
    with pytest.raises(StorageError) as info:
        b.receive_stage(copy)
    assert str(info.value) == f"{copy} was changed since it was received: local-edit"
    lab.send(SnapRef(g1, "s2"), copy, base=SnapRef(g1, "s1"), force=True)
    assert sorted(p.name for p in Path(copy).iterdir()) == ["a"]


def test_destroy_takes_nested_subvolumes_only_when_forced(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {})
    nested = lab.make("g1/var", {})  # a subvolume inside a volume
    with pytest.raises(HasDependents) as info:
        b.destroy_plan(g1)
    assert str(info.value) == f"{g1} has dependents: {nested}"
    lab.apply(b.destroy_plan(g1, force=True))
    assert lab.tree() == ""


def test_rollback_refuses_to_lose_nested_subvolumes(lab: Lab) -> None:
    b = lab.backend
    g1 = lab.make("g1", {})
    lab.apply(b.snapshot_plan([g1], "s1"))
    lab.make("g1/var", {})
    with pytest.raises(Unsupported) as info:
        b.rollback_plan(SnapRef(g1, "s1"))
    assert str(info.value) == (
        f"cannot roll {g1} back: it holds subvolumes {g1}/var that a rollback would lose"
    )


def test_a_lineage_replicated_over_ssh_arrives_as_clones(
    lab: Lab, second_btrfs: LoopMount, sshd: SshServer
) -> None:
    """g1@s1 -> g2 sent to another btrfs through ssh: g2 arrives as a clone of g1@s1 there."""
    b = lab.backend
    g1 = lab.make("g1", {"base": b"b\n"})
    lab.apply(b.snapshot_plan([g1], "s1"))
    g2 = lab.vol("g2")
    lab.apply(b.clone_plan(SnapRef(g1, "s1"), g2, {"g2d:gen": "2"}))
    Path(g2, "update").write_bytes(b"u\n")
    lab.apply(b.snapshot_plan([g2], "t1"))
    remote = SshHost(
        sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
        host_keys=[sshd.host_public_key],
    )  # fmt: skip
    try:
        there = BtrfsBackend(remote)
        r1, r2 = str(second_btrfs.mountpoint / "g1"), str(second_btrfs.mountpoint / "g2")
        s1, t1 = b.snapshot(SnapRef(g1, "s1")), b.snapshot(SnapRef(g2, "t1"))
        run_pipeline([b.send_stage(s1.ref), there.receive_stage(r1)])
        there.finish_receive(r1, s1)
        run_pipeline([b.send_stage(t1.ref, base=s1.ref), there.receive_stage(r2)])
        there.finish_receive(r2, t1)
        assert there.volume(r2).origin == SnapRef(r1, "s1")
        assert there.snapshot(SnapRef(r1, "s1")).clones == (r2,)
        assert there.get_meta(r2) == {"g2d:gen": "2"}
        assert Path(r2, "update").read_bytes() == b"u\n"
        # the same snapshot again: refused after the stream, and nothing of it is left
        run_pipeline([b.send_stage(t1.ref, base=s1.ref), there.receive_stage(r2)])
        with pytest.raises(AlreadyExists) as info:
            there.finish_receive(r2, t1)
        assert str(info.value) == f"{r2}@t1 already exists"
        assert not (second_btrfs.mountpoint / ".g2d-snap" / ".receiving-g2" / "t1").exists()
    finally:
        remote.close()
