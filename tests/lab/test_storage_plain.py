"""Plain volumes on real file systems: xfs with reflink and ext4 on loop devices, GNU tar,
getfattr/setfacl, and an OpenSSH server on 127.0.0.1.

What every backend promises is in test_backend_contract.py; this file holds what is plain's
own: blocks really shared (or really copied), what the tar stream keeps, incrementals with
deletions, and plans that finish after a crash at any step. Results are read back with
Python's os calls and the tools themselves, not through the backend under test.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.plan import Plan
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.ssh import SshHost
from g2d.lab.loopdev import LoopMount
from g2d.lab.sshd import SshServer
from g2d.storage.apply import run_step
from g2d.storage.base import AlreadyExists, HasDependents, NotFound, SnapRef, StorageError
from g2d.storage.plain import PlainBackend
from g2d.storage.plain_layout import VolPath, check_snap_name
from g2d.storage.plain_steps import Steps

MiB = 1 << 20
local = LocalHost()


@dataclass
class Place:
    backend: PlainBackend
    root: Path

    def vol(self, leaf: str) -> str:
        return str(self.root / leaf)

    def make(self, leaf: str, files: dict[str, bytes] | None = None) -> str:
        name = self.vol(leaf)
        self.backend.apply(self.backend.create_plan(name))
        for rel, data in (files or {}).items():
            Path(name, rel).write_bytes(data)
        return name

    def snap(self, name: str, snap: str) -> SnapRef:
        self.backend.apply(self.backend.snapshot_plan([name], snap))
        return SnapRef(name, snap)

    def send(self, ref: SnapRef, into: str, base: SnapRef | None = None) -> None:
        b = self.backend
        run_pipeline([b.send_stage(ref, base=base), b.receive_stage(into)])
        b.finish_receive(into, b.snapshot(ref))

    def hidden(self) -> list[str]:
        snapdir = self.root / ".g2d-snap"
        return sorted(p.name for p in snapdir.iterdir() if p.name.startswith("."))


def _place(mount: LoopMount, sub: str = "sys") -> Place:
    root = mount.mountpoint / sub
    root.mkdir()
    return Place(PlainBackend(local, root=str(root)), root)


@pytest.fixture
def xfs(xfs_mount: LoopMount) -> Place:
    return _place(xfs_mount)


def used_bytes(path: Path) -> int:
    os.sync()
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def extent_flags(path: str) -> list[str]:
    """The flags column of ``filefrag -v``, one entry per extent."""
    out = local.run(["filefrag", "-v", path]).lines()
    rows = [line for line in out if line.strip()[:1].isdigit() and ":" in line]
    return [row.split()[-1] if row.split()[-1][:1].isalpha() else "" for row in rows]


def random_file(path: str, mib: int) -> None:
    local.run(["dd", "if=/dev/urandom", f"of={path}", "bs=1M", f"count={mib}", "status=none"])


# --- blocks: shared on xfs, copied on ext4 ----------------------------------------------------


def test_a_snapshot_on_xfs_shares_the_blocks_of_a_64_mib_file(xfs: Place) -> None:
    g1 = xfs.make("g1")
    random_file(f"{g1}/big", 64)
    before = used_bytes(xfs.root)
    xfs.snap(g1, "s1")
    grew = used_bytes(xfs.root) - before
    assert grew < 2 * MiB, f"the snapshot took {grew} bytes"
    copy = str(xfs.root / ".g2d-snap" / "g1@s1" / "big")
    assert all("shared" in flags for flags in extent_flags(copy))
    assert Path(copy).read_bytes() == Path(g1, "big").read_bytes()
    assert xfs.backend.caps.reflink is True
    assert xfs.backend.reflink_at(str(xfs.root)) is True


def test_a_snapshot_on_ext4_is_a_full_copy(ext4_mount: LoopMount) -> None:
    ext4 = _place(ext4_mount)
    g1 = ext4.make("g1")
    random_file(f"{g1}/big", 16)
    before = used_bytes(ext4.root)
    ext4.snap(g1, "s1")
    grew = used_bytes(ext4.root) - before
    assert grew >= 16 * MiB, f"a full copy should take 16 MiB, took {grew} bytes"
    copy = str(ext4.root / ".g2d-snap" / "g1@s1" / "big")
    assert not any("shared" in flags for flags in extent_flags(copy))
    assert Path(copy).read_bytes() == Path(g1, "big").read_bytes()
    assert ext4.backend.caps.reflink is False
    assert ext4.backend.caps.to_json()["reflink"] is False


# --- the stream -------------------------------------------------------------------------------


def _special_tree(name: str) -> None:
    """A file with an xattr, a directory with a POSIX ACL, a file owned by uid 12345 (which
    has no name here), a character device 1:3, a hard link, a symlink and a hole."""
    local.run(["setfattr", "-n", "user.origin", "-v", "lab", "--", f"{name}/file"])
    os.mkdir(f"{name}/shared")
    local.run(["setfacl", "-m", "u:12345:rwx", "--", f"{name}/shared"])
    os.chown(f"{name}/file", 12345, 23456)
    os.mknod(f"{name}/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.link(f"{name}/file", f"{name}/file-link")
    os.symlink("../etc/hostname", f"{name}/link")
    with open(f"{name}/sparse", "wb") as f:
        f.truncate(8 * MiB)


def _check_special_tree(name: str) -> None:
    getfattr = ["getfattr", "--only-values", "-n", "user.origin", "--", f"{name}/file"]
    assert local.run(getfattr).stdout == "lab"
    acl = local.run(["getfacl", "--omit-header", "--numeric", "--", f"{name}/shared"]).lines()
    assert "user:12345:rwx" in acl
    st = os.lstat(f"{name}/file")
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    dev = os.lstat(f"{name}/null")
    assert stat.S_ISCHR(dev.st_mode) and (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)
    assert os.lstat(f"{name}/file-link").st_ino == st.st_ino
    assert os.readlink(f"{name}/link") == "../etc/hostname"
    sparse = os.stat(f"{name}/sparse")
    assert (sparse.st_size, sparse.st_blocks) == (8 * MiB, 0)


def test_the_stream_keeps_xattrs_acls_numeric_owners_devices_and_links(
    xfs: Place, ext4_mount: LoopMount
) -> None:
    assert local.run(["getent", "passwd", "12345"], check=False).returncode == 2  # no name
    g1 = xfs.make("g1", {"file": b"data\n"})
    _special_tree(g1)
    s1 = xfs.snap(g1, "s1")
    ext4 = _place(ext4_mount, "other")  # another file system: only the stream carries it
    copy = ext4.vol("copy")
    run_pipeline([xfs.backend.send_stage(s1), ext4.backend.receive_stage(copy)])
    got = ext4.backend.finish_receive(copy, xfs.backend.snapshot(s1))
    assert got.guid == xfs.backend.snapshot(s1).guid
    _check_special_tree(copy)
    _check_special_tree(str(ext4.root / ".g2d-snap" / "copy@s1"))
    assert ext4.hidden() == []


def test_an_incremental_carries_deletions_modes_and_metadata(xfs: Place) -> None:
    g1 = xfs.make("g1", {"gone": b"1\n", "kept": b"2\n", "chmod": b"3\n"})
    s1 = xfs.snap(g1, "s1")
    copy = xfs.vol("copy")
    xfs.send(s1, copy)
    os.unlink(f"{g1}/gone")
    os.chmod(f"{g1}/chmod", 0o600)
    local.run(["setfattr", "-n", "user.new", "-v", "x", "--", f"{g1}/kept"])
    Path(g1, "added").write_bytes(b"4\n")
    xfs.backend.apply(xfs.backend.set_meta_plan(g1, {"g2d:state": "sealed"}))
    s2 = xfs.snap(g1, "s2")
    xfs.send(s2, copy, base=s1)
    assert sorted(os.listdir(copy)) == ["added", "chmod", "kept"]
    assert stat.S_IMODE(os.stat(f"{copy}/chmod").st_mode) == 0o600
    assert local.run(["getfattr", "--only-values", "-n", "user.new", f"{copy}/kept"]).stdout == "x"
    assert xfs.backend.get_meta(copy) == {"g2d:state": "sealed"}
    snaps = xfs.backend.snapshots(copy)
    assert [(s.ref.name, s.guid) for s in snaps] == [
        (s.ref.name, s.guid) for s in xfs.backend.snapshots(g1)
    ]
    assert sorted(os.listdir(xfs.root / ".g2d-snap" / "copy@s1")) == ["chmod", "gone", "kept"]
    assert xfs.hidden() == []


def test_an_incremental_whose_base_the_receiver_lacks_is_refused_and_removed(xfs: Place) -> None:
    g1 = xfs.make("g1", {"f": b"1\n"})
    s1, s2 = xfs.snap(g1, "s1"), xfs.snap(g1, "s2")
    s3 = xfs.snap(g1, "s3")
    copy = xfs.vol("copy")
    xfs.send(s1, copy)
    run_pipeline([xfs.backend.send_stage(s3, base=s2), xfs.backend.receive_stage(copy)])
    sent = xfs.backend.snapshot(s3)
    with pytest.raises(StorageError) as info:
        xfs.backend.finish_receive(copy, sent)
    guid2 = xfs.backend.snapshot(s2).guid
    assert str(info.value) == f"{copy} has no snapshot with guid {guid2}, the base of {g1}@s3"
    assert [s.ref.name for s in xfs.backend.snapshots(copy)] == ["s1"]
    assert xfs.hidden() == []


def test_a_full_stream_is_not_received_over_a_volume_with_snapshots(xfs: Place) -> None:
    g1 = xfs.make("g1", {"f": b"new\n"})
    s1 = xfs.snap(g1, "s1")
    other = xfs.make("other", {"mine": b"precious\n"})
    xfs.snap(other, "o1")
    run_pipeline([xfs.backend.send_stage(s1), xfs.backend.receive_stage(other)])
    with pytest.raises(StorageError) as info:
        xfs.backend.finish_receive(other, xfs.backend.snapshot(s1))
    assert str(info.value) == f"{other} already exists"
    assert Path(other, "mine").read_bytes() == b"precious\n"
    assert xfs.hidden() == []


def test_a_cut_off_stream_is_removed_by_finish_receive(xfs: Place) -> None:
    g1 = xfs.make("g1")
    random_file(f"{g1}/big", 4)
    s1 = xfs.snap(g1, "s1")
    copy = xfs.vol("copy")
    cut = Stage.of(local, ["head", "-c", "100000"])
    with pytest.raises(CommandFailed) as failed:
        run_pipeline([xfs.backend.send_stage(s1), cut, xfs.backend.receive_stage(copy)])
    assert failed.value.argv[0] == "tar" and "Unexpected EOF in archive" in failed.value.tail
    assert xfs.hidden() == [".recv.copy"]  # out of sight until finish_receive looks at it
    with pytest.raises(StorageError) as info:
        xfs.backend.finish_receive(copy, xfs.backend.snapshot(s1))
    assert str(info.value) == f"the stream into {copy} was cut off; nothing of it was kept"
    assert xfs.hidden() == [] and not os.path.exists(copy)


def test_an_incremental_into_a_modified_volume_needs_force(xfs: Place) -> None:
    g1 = xfs.make("g1", {"f": b"1\n"})
    s1 = xfs.snap(g1, "s1")
    copy = xfs.vol("copy")
    xfs.send(s1, copy)
    Path(copy, "extra").write_bytes(b"local change\n")
    s2 = xfs.snap(g1, "s2")
    with pytest.raises(StorageError) as info:
        xfs.send(s2, copy, base=s1)
    assert str(info.value) == f"{copy} was modified since its newest snapshot {copy}@s1: ./, extra"
    assert info.value.hint == "pass force to discard the changes"
    assert Path(copy, "extra").exists() and xfs.hidden() == []
    b = xfs.backend
    run_pipeline([b.send_stage(s2, base=s1), b.receive_stage(copy, force=True)])
    b.finish_receive(copy, b.snapshot(s2))
    assert sorted(os.listdir(copy)) == ["f"]
    assert [s.ref.name for s in b.snapshots(copy)] == ["s1", "s2"]


def test_an_incremental_over_newer_snapshots_needs_force(xfs: Place) -> None:
    g1 = xfs.make("g1", {"f": b"1\n"})
    s1, s2 = xfs.snap(g1, "s1"), xfs.snap(g1, "s2")
    copy = xfs.vol("copy")
    xfs.send(s1, copy)
    xfs.send(s2, copy, base=s1)
    s3 = xfs.snap(g1, "s3")
    with pytest.raises(StorageError) as info:
        xfs.send(s3, copy, base=s1)
    assert str(info.value) == (
        f"{copy} has snapshots newer than {copy}@s1, the base of {g1}@s3: {copy}@s2"
    )
    b = xfs.backend
    run_pipeline([b.send_stage(s3, base=s1), b.receive_stage(copy, force=True)])
    b.finish_receive(copy, b.snapshot(s3))
    assert [s.ref.name for s in b.snapshots(copy)] == ["s1", "s3"]


def test_a_finish_receive_that_failed_half_way_is_completed_by_calling_it_again(
    xfs: Place,
) -> None:
    g1 = xfs.make("g1", {"f": b"1\n"})
    s1 = xfs.snap(g1, "s1")
    copy = xfs.vol("copy")
    xfs.send(s1, copy)
    Path(g1, "f").write_bytes(b"2\n")
    s2 = xfs.snap(g1, "s2")
    b = xfs.backend
    run_pipeline([b.send_stage(s2, base=s1), b.receive_stage(copy)])
    # a mount point cannot be renamed: the swap fails after the snapshot is in place
    local.run(["mount", "--bind", copy, copy])
    try:
        with pytest.raises(CommandFailed) as failed:
            b.finish_receive(copy, b.snapshot(s2))
        assert failed.value.argv[:3] == ("mv", "--no-target-directory", "--")
        with pytest.raises(StorageError) as info:
            b.receive_stage(copy)
        assert str(info.value) == f"an earlier receive into {copy} stopped half way"
    finally:
        local.run(["umount", copy])
    got = b.finish_receive(copy, b.snapshot(s2))
    assert got.guid == b.snapshot(s2).guid
    assert Path(copy, "f").read_bytes() == b"2\n"
    assert [s.ref.name for s in b.snapshots(copy)] == ["s1", "s2"]
    assert xfs.hidden() == []


def test_a_clone_sent_from_its_origin_arrives_as_a_clone(xfs: Place, tmp_path: Path) -> None:
    g1 = xfs.make("g1", {"f": b"base\n"})
    s1 = xfs.snap(g1, "s1")
    g2 = xfs.vol("g2")
    xfs.backend.apply(xfs.backend.clone_plan(s1, g2))
    t1 = xfs.snap(g2, "t1")
    dst = xfs.root / "dst"
    dst.mkdir()
    xfs.send(s1, str(dst / "g1"))
    xfs.send(t1, str(dst / "g2"), base=s1)
    assert xfs.backend.volume(str(dst / "g2")).origin == SnapRef(str(dst / "g1"), "s1")
    assert xfs.backend.snapshot(SnapRef(str(dst / "g1"), "s1")).clones == (str(dst / "g2"),)


# --- crashes ----------------------------------------------------------------------------------


def _crash_after(backend: PlainBackend, plan: Plan, k: int) -> None:
    """The first k steps ran, then the runner died."""
    for step in plan.steps[:k]:
        run_step(step, {backend.host.name: backend.host})


def test_a_crash_mid_snapshot_leaves_no_half_snapshot(xfs: Place) -> None:
    g1 = xfs.make("g1", {"f": b"1\n"})
    random_file(f"{g1}/big", 8)
    plan = xfs.backend.snapshot_plan([g1], "s1")
    copied = next(i for i, s in enumerate(plan.steps) if s.pipeline[0].argv[0] == "cp")
    _crash_after(xfs.backend, plan, copied + 1)
    # and a torn copy: the runner died inside cp
    os.truncate(xfs.root / ".g2d-snap" / ".part.g1@s1" / "big", MiB)
    assert xfs.backend.snapshots(g1) == []
    assert xfs.hidden() == [".part.g1@s1"]
    xfs.backend.apply(plan)
    assert [s.ref.name for s in xfs.backend.snapshots(g1)] == ["s1"]
    snap = xfs.root / ".g2d-snap" / "g1@s1"
    assert (snap / "big").read_bytes() == Path(g1, "big").read_bytes()
    assert xfs.hidden() == []


Setup = Callable[[Place, str], tuple[Plan, Callable[[], None]]]


def _rollback(p: Place, sub: str) -> tuple[Plan, Callable[[], None]]:
    g = p.make(f"{sub}-g1", {"keep": b"k\n"})
    p.backend.apply(p.backend.set_meta_plan(g, {"g2d:state": "building"}))
    p.snap(g, "s1")
    Path(g, "later").write_bytes(b"l\n")
    p.snap(g, "s2")
    plan = p.backend.rollback_plan(SnapRef(g, "s1"), destroy_newer=True)

    def check() -> None:
        assert sorted(os.listdir(g)) == ["keep"]
        assert p.backend.get_meta(g) == {"g2d:state": "building"}
        assert [s.ref.name for s in p.backend.snapshots(g)] == ["s1"]

    return plan, check


def _promote(p: Place, sub: str) -> tuple[Plan, Callable[[], None]]:
    g1, g2 = p.make(f"{sub}-g1", {"f": b"base\n"}), p.vol(f"{sub}-g2")
    p.snap(g1, "a")
    p.snap(g1, "b")
    p.backend.apply(p.backend.clone_plan(SnapRef(g1, "b"), g2))
    plan = p.backend.promote_plan(g2)

    def check() -> None:
        assert p.backend.volume(g2).origin is None
        assert p.backend.volume(g1).origin == SnapRef(g2, "b")
        assert [s.ref.name for s in p.backend.snapshots(g2)] == ["a", "b"]
        assert p.backend.snapshots(g1) == []

    return plan, check


def _destroy(p: Place, sub: str) -> tuple[Plan, Callable[[], None]]:
    g1, g2 = p.make(f"{sub}-g1", {"f": b"x\n"}), p.vol(f"{sub}-g2")
    p.snap(g1, "s1")
    p.backend.apply(p.backend.clone_plan(SnapRef(g1, "s1"), g2))
    plan = p.backend.destroy_plan(g1, force=True)

    def check() -> None:
        assert not os.path.exists(g1) and not os.path.exists(g2)
        assert not any(n.startswith(f"{sub}-") for n in os.listdir(p.root / ".g2d-snap"))

    return plan, check


def _rename(p: Place, sub: str) -> tuple[Plan, Callable[[], None]]:
    g1, g9 = p.make(f"{sub}-g1", {"f": b"x\n"}), p.vol(f"{sub}-g9")
    p.snap(g1, "s1")
    clone = p.vol(f"{sub}-c")
    p.backend.apply(p.backend.clone_plan(SnapRef(g1, "s1"), clone))
    plan = p.backend.rename_plan(g1, g9)

    def check() -> None:
        assert not os.path.exists(g1) and Path(g9, "f").read_bytes() == b"x\n"
        assert [s.ref for s in p.backend.snapshots(g9)] == [SnapRef(g9, "s1")]
        assert p.backend.volume(clone).origin == SnapRef(g9, "s1")

    return plan, check


@pytest.mark.parametrize(
    "setup", [_rollback, _promote, _destroy, _rename], ids=lambda f: f.__name__
)
def test_a_plan_applied_again_after_a_crash_at_any_step_finishes(xfs: Place, setup: Setup) -> None:
    steps = len(setup(xfs, "probe")[0].steps)
    for k in range(steps + 1):  # k == steps: a finished plan applied again changes nothing
        plan, check = setup(xfs, f"k{k}")
        _crash_after(xfs.backend, plan, k)
        xfs.backend.apply(plan)
        check()
        assert xfs.hidden() == [], f"after a crash at step {k}"


# --- refusals ---------------------------------------------------------------------------------


def test_a_hold_is_refused_unless_forced_and_then_released_first(xfs: Place) -> None:
    g1 = xfs.make("g1")
    ref = xfs.snap(g1, "s1")
    xfs.backend.apply(xfs.backend.hold_plan(ref, "g2d-sealed"))
    with pytest.raises(HasDependents) as info:
        xfs.backend.destroy_plan(g1)
    assert str(info.value) == f"{g1} has dependents: {g1}@s1, hold g2d-sealed on {g1}@s1"
    assert [s.ref for s in xfs.backend.snapshots(g1)] == [ref]
    plan = xfs.backend.destroy_plan(g1, force=True)
    release = xfs.backend.release_plan(ref, "g2d-sealed").steps
    assert plan.steps[: len(release)] == release  # the plan shows the release first
    xfs.backend.apply(plan)
    assert not xfs.backend.exists(g1)


def test_bad_requests_are_refused_and_change_nothing(xfs: Place) -> None:
    g1 = xfs.make("g1")
    s1, s2 = xfs.snap(g1, "s1"), xfs.snap(g1, "s2")
    missing = xfs.vol("missing")
    b = xfs.backend
    before = sorted(str(p) for p in xfs.root.rglob("*"))
    refusals: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: b.send_stage(s1, base=s2), StorageError,
         f"{g1}@s2 is neither an earlier snapshot of {g1} nor its origin"),
        (lambda: b.snapshot_plan([missing], "x"), NotFound, f"{missing} does not exist"),
        (lambda: b.snapshot_plan([g1], "s1"), AlreadyExists, f"{g1}@s1 already exists"),
        (lambda: b.clone_plan(SnapRef(g1, "nope"), xfs.vol("g2")), NotFound,
         f"{g1}@nope does not exist"),
        (lambda: b.clone_plan(s1, g1), AlreadyExists, f"{g1} already exists"),
        (lambda: b.release_plan(s1, "nope"), StorageError, f"{g1}@s1 has no hold nope"),
        (lambda: b.promote_plan(g1), StorageError, f"{g1} is not a clone"),
        (lambda: b.rename_plan(g1, f"{xfs.root}/nodir/g1"), NotFound,
         f"{xfs.root}/nodir does not exist"),
    ]  # fmt: skip
    for call, kind, message in refusals:
        with pytest.raises(kind) as info:
            call()
        assert str(info.value) == message
    assert sorted(str(p) for p in xfs.root.rglob("*")) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sys/g1", "invalid plain volume name 'sys/g1': not a normalized absolute path"),
        ("/srv/../g1", "invalid plain volume name '/srv/../g1': not a normalized absolute path"),
        ("/", "invalid plain volume name '/': not a normalized absolute path"),
        ("/srv/.g2d-snap",
         "invalid plain volume name '/srv/.g2d-snap': last part '.g2d-snap' is not allowed"),
        ("/srv/g1@x", "invalid plain volume name '/srv/g1@x': last part 'g1@x' is not allowed"),
        ("/srv/-rf", "invalid plain volume name '/srv/-rf': last part '-rf' is not allowed"),
    ],
)  # fmt: skip
def test_bad_volume_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(StorageError) as info:
        VolPath(name)
    assert str(info.value) == message


def test_bad_snapshot_names_and_removals_outside_g2d_snap_are_refused() -> None:
    with pytest.raises(StorageError) as info:
        check_snap_name(".hidden")
    assert str(info.value) == "invalid snapshot name '.hidden'"
    with pytest.raises(ValueError) as bug:
        Steps("local").remove("/srv/sys/g1", "x", ["true"])
    assert str(bug.value) == "refusing to plan the removal of '/srv/sys/g1'"


# --- metadata, listing, mounts, ssh -----------------------------------------------------------


def test_metadata_values_of_any_text_round_trip(xfs: Place) -> None:
    g1 = xfs.make("g1")
    values = {
        "g2d:a": "two words",
        "g2d:b": "0x1234",
        "g2d:c": "0sAAAA",
        "g2d:d": "line\nbreak",
        "g2d:e": "",
        "g2d:f": 'quote " and \\ and ü',
    }
    xfs.backend.apply(xfs.backend.set_meta_plan(g1, values))
    assert xfs.backend.get_meta(g1) == values


def test_volumes_are_found_below_plain_directories_but_not_inside_volumes(xfs: Place) -> None:
    outer = xfs.make("outer")
    os.makedirs(f"{outer}/inner")  # data inside a volume, even if marked, is not looked into
    local.run(["setfattr", "-n", "user.g2d-plain.volume", "-v", "1", f"{outer}/inner"])
    (xfs.root / "group").mkdir()
    xfs.backend.apply(xfs.backend.create_plan(xfs.vol("group/g2")))
    names = [v.name for v in xfs.backend.volumes(str(xfs.root))]
    assert names == [outer, xfs.vol("group/g2")]
    assert [v.name for v in xfs.backend.volumes(outer)] == [outer]


def test_a_read_only_mount_is_a_bind_mount_and_goes_away(xfs: Place) -> None:
    g1 = xfs.make("g1")
    xfs.backend.apply(xfs.backend.mount_plan(g1, readonly=True))
    try:
        with pytest.raises(OSError) as info:
            Path(g1, "f").write_bytes(b"x")
        assert info.value.errno == 30  # EROFS
    finally:
        xfs.backend.apply(xfs.backend.unmount_plan(g1))
    assert g1 not in Path("/proc/self/mountinfo").read_text()
    Path(g1, "f").write_bytes(b"x")
    assert xfs.backend.unmount_plan(g1).steps == ()


@pytest.fixture
def ssh_host(sshd: SshServer) -> Iterator[SshHost]:
    host = SshHost(
        sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
        host_keys=[sshd.host_public_key],
    )  # fmt: skip
    yield host
    host.close()


def test_plain_volumes_through_ssh(xfs: Place, ssh_host: SshHost) -> None:
    remote = PlainBackend(ssh_host)
    g1 = xfs.make("g1", {"f": b"over ssh\n"})
    ref = SnapRef(g1, "s1")
    remote.apply(remote.snapshot_plan([g1], "s1", {"g2d:via": "ssh"}))
    remote.apply(remote.clone_plan(ref, xfs.vol("g2")))
    copy = xfs.vol("copy")
    run_pipeline([remote.send_stage(ref), xfs.backend.receive_stage(copy)])
    xfs.backend.finish_receive(copy, remote.snapshot(ref))
    assert Path(copy, "f").read_bytes() == b"over ssh\n"
    assert remote.snapshot(ref).clones == (xfs.vol("g2"),)
    assert remote.get_meta(SnapRef(copy, "s1")) == {"g2d:via": "ssh"}
    assert remote.get_meta(copy) == {}
