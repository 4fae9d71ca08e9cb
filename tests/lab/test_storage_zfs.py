"""ZFS specifics on zfs-fuse (pool version 23): capabilities, the fallbacks for what it lacks,
lineage-preserving sends, and plans that finish after a crash. What every backend promises is
in test_backend_contract.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.plan import Plan
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import run_pipeline
from g2d.lab.zfs_fuse import ZfsFuse, ZfsPool, create_pool
from g2d.storage.apply import apply_plan
from g2d.storage.base import HasDependents, SnapRef, StorageError
from g2d.storage.zfs import ZfsBackend
from g2d.storage.zfs_caps import cache_path, forget_caps, probe_caps, tool_fingerprint
from g2d.storage.zfs_holds import hold_many_plan
from g2d.storage.zfs_recv import receive_argv, send_argv

HOST = LocalHost()


def zfs(*args: str) -> str:
    return HOST.run(["zfs", *args]).stdout


def tree(root: str) -> str:
    return zfs("list", "-H", "-o", "name", "-r", "-t", "all", root)


def prop(name: str, key: str) -> tuple[str, str]:
    value, source = zfs("get", "-Hp", "-o", "value,source", key, name).rstrip("\n").split("\t")
    return value, source


@dataclass
class Lab:
    zfs: ZfsBackend
    pool: ZfsPool
    root: str  # <pool>/sys

    def vol(self, leaf: str) -> str:
        return f"{self.root}/{leaf}"

    def write(self, name: str, rel: str, data: bytes) -> None:
        mounted = self.zfs.mountpoint(name)
        assert mounted, f"{name} is not mounted"
        Path(mounted, rel).write_bytes(data)

    def read(self, name: str, rel: str) -> bytes:
        mounted = self.zfs.mountpoint(name)
        assert mounted, f"{name} is not mounted"
        return Path(mounted, rel).read_bytes()


def _lab(pool: ZfsPool) -> Iterator[Lab]:
    root = f"{pool.name}/sys"
    zfs("create", root)
    lab = Lab(ZfsBackend(HOST), pool, root)
    yield lab
    # zfs-fuse: the pool's own teardown fails "pool is busy" while written datasets are
    # being released; the backend's apply waits for that, `zpool destroy` does not
    lab.zfs.apply(lab.zfs.destroy_plan(root, force=True))


@pytest.fixture
def lab(zfs_pool: ZfsPool) -> Iterator[Lab]:
    yield from _lab(zfs_pool)


@pytest.fixture
def other(zfs_fuse: ZfsFuse, tmp_path: Path) -> Iterator[Lab]:
    """A second pool, for receives: a snapshot's guid is unique only within a pool."""
    with create_pool(tmp_path / "other-vdevs", mountpoint=tmp_path / "other-mnt") as pool:
        yield from _lab(pool)


def send(src: Lab, ref: SnapRef, dst: Lab, name: str, base: SnapRef | None = None) -> None:
    sent = src.zfs.snapshot(ref)
    run_pipeline([src.zfs.send_stage(ref, base=base), dst.zfs.receive_stage(name)])
    dst.zfs.finish_receive(name, sent)


def test_caps_of_zfs_fuse_come_from_the_tool(lab: Lab) -> None:
    assert lab.zfs.caps.to_json() == {
        "version": "zfs pool version 23 (no 'zfs version')",
        "resumable_send": False,  # no `send -t`, no `recv -s`
        "raw_send": False,
        "bookmarks": False,
        "encryption": False,
        "compression": ("lzjb", "gzip", "zle"),
        "list_holds": False,
        "atomic_snapshots": False,  # one name per `zfs snapshot`; `-r` for a subtree
        "reflink": False,
        "incremental_send": True,
        "extra": {
            "pool_version": "23",
            "list_parsable": False,
            "snapshot_props": True,
            "send_props": True,
            "recv_exclude": False,
            "clones_property": False,
            "late_release": True,
        },
    }


def _commands(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "g2d.cmd" and "$ " in r.getMessage()
    ]


def test_caps_are_kept_on_disk_until_the_tool_answers_otherwise(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "caps"
    caplog.set_level(logging.INFO, logger="g2d.cmd")
    forget_caps()  # as a new process would start
    probed = probe_caps(HOST, cache_dir=cache)
    assert len(_commands(caplog)) > 10  # the probe itself
    path = cache_path(cache, HOST)
    assert path == cache / "zfs-local.json"
    kept = json.loads(path.read_text())
    assert (kept["host"], kept["fingerprint"]) == ("local", tool_fingerprint(HOST))
    caplog.clear()
    forget_caps()  # the next process: one command, to see the tool is the same
    assert probe_caps(HOST, cache_dir=cache) == probed
    assert _commands(caplog) == ["local$ zfs version"]
    # as if the entry was made by another version of the tool: probed again, and rewritten
    path.write_text(json.dumps({**kept, "fingerprint": "f" * 64}))
    caplog.clear()
    forget_caps()
    assert probe_caps(HOST, cache_dir=cache) == probed
    assert len(_commands(caplog)) > 10
    assert json.loads(path.read_text())["fingerprint"] == tool_fingerprint(HOST)
    path.write_text("{not json")  # a damaged entry is probed over, not trusted
    forget_caps()
    assert probe_caps(HOST, cache_dir=cache) == probed
    assert json.loads(path.read_text())["fingerprint"] == tool_fingerprint(HOST)
    forget_caps()


def test_the_replication_commands_are_the_backends_own(lab: Lab) -> None:
    g1 = lab.vol("g1")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1"))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s2"))
    s1, s2 = SnapRef(g1, "s1"), SnapRef(g1, "s2")
    caps = lab.zfs.caps
    assert send_argv(caps, s2, s1) == list(lab.zfs.send_stage(s2, base=s1).argv)
    assert send_argv(caps, s1) == list(lab.zfs.send_stage(s1).argv)
    assert receive_argv(caps, lab.vol("new")) == list(lab.zfs.receive_stage(lab.vol("new")).argv)


def test_several_snapshots_are_held_in_one_command(lab: Lab) -> None:
    g1 = lab.vol("g1")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    for name in ("s1", "s2", "s3"):
        lab.zfs.apply(lab.zfs.snapshot_plan([g1], name))
    s1, s2, s3 = (SnapRef(g1, n) for n in ("s1", "s2", "s3"))
    lab.zfs.apply(lab.zfs.hold_plan(s1, "g2d-sealed"))
    lab.zfs.apply(lab.zfs.hold_plan(s2, "replica"))
    plan = hold_many_plan(lab.zfs, lab.zfs.snapshots(g1), "g2d-sealed")
    assert [" ".join(s.pipeline[0].argv) for s in plan.steps] == [
        f"zfs set g2d:holds=g2d-sealed,replica {s2}",  # recorded first: zfs holds is broken
        f"zfs set g2d:holds=g2d-sealed {s3}",
        f"zfs hold g2d-sealed {s2} {s3}",
    ]
    lab.zfs.apply(plan)
    assert [s.holds for s in lab.zfs.snapshots(g1)] == [
        {"g2d-sealed"}, {"g2d-sealed", "replica"}, {"g2d-sealed"},
    ]  # fmt: skip
    assert hold_many_plan(lab.zfs, lab.zfs.snapshots(g1), "g2d-sealed").steps == ()


def test_hold_tags_are_tracked_although_zfs_holds_is_broken(lab: Lab) -> None:
    g1 = lab.vol("g1")
    ref = SnapRef(g1, "s1")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1"))
    broken = HOST.run(["zfs", "holds", str(ref)], check=False)
    assert (broken.returncode, broken.stdout) == (
        255,
        "internal error: /usr/lib/zfs/pyzfs.py not found\n",
    )
    lab.zfs.apply(lab.zfs.hold_plan(ref, "g2d-sealed"))
    lab.zfs.apply(lab.zfs.hold_plan(ref, "replica"))
    assert lab.zfs.hold_plan(ref, "replica").steps == ()  # held already: nothing to do
    assert lab.zfs.snapshot(ref).holds == {"g2d-sealed", "replica"}
    assert prop(str(ref), "userrefs") == ("2", "-")
    assert prop(str(ref), "g2d:holds") == ("g2d-sealed,replica", "local")
    assert lab.zfs.get_meta(ref) == {}  # the bookkeeping key is g2d's own, not metadata
    with pytest.raises(HasDependents) as refused:
        lab.zfs.destroy_plan(ref)
    assert str(refused.value) == (
        f"{ref} has dependents: hold g2d-sealed on {ref}, hold replica on {ref}"
    )
    lab.zfs.apply(lab.zfs.release_plan(ref, "replica"))
    assert lab.zfs.snapshot(ref).holds == {"g2d-sealed"}
    assert prop(str(ref), "g2d:holds") == ("g2d-sealed", "local")
    with pytest.raises(StorageError) as reserved:
        lab.zfs.set_meta_plan(ref, {"g2d:holds": ""})
    assert str(reserved.value) == "g2d:holds is kept by g2d itself"


def test_a_clone_sent_from_its_origin_arrives_as_a_clone(lab: Lab, other: Lab) -> None:
    g1, g2 = lab.vol("g1"), lab.vol("g2")
    lab.zfs.apply(lab.zfs.create_plan(g1, {"g2d:gen": "1"}))
    lab.write(g1, "base", b"\0" * (2 << 20))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "g1-s1", {"g2d:sealed": "yes"}))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g1, "g1-s1"), g2, {"g2d:gen": "2"}))
    lab.write(g2, "update", b"g2\n")
    lab.zfs.apply(lab.zfs.snapshot_plan([g2], "g2-s1"))

    c1, c2 = other.vol("g1"), other.vol("g2")
    send(lab, SnapRef(g1, "g1-s1"), other, c1)
    send(lab, SnapRef(g2, "g2-s1"), other, c2, base=SnapRef(g1, "g1-s1"))

    assert tree(other.root) == dedent(f"""\
        {other.root}
        {other.root}/g1
        {other.root}/g1@g1-s1
        {other.root}/g2
        {other.root}/g2@g2-s1
    """)
    copy = other.zfs.volume(c2)
    assert copy.origin == SnapRef(c1, "g1-s1")  # a clone, not an independent full copy
    assert copy.used is not None and copy.used < (1 << 20)  # shares g1's 2 MiB
    assert copy.meta == {"g2d:gen": "2"}
    assert other.zfs.get_meta(SnapRef(c1, "g1-s1")) == {"g2d:sealed": "yes"}
    assert other.read(c2, "update") == b"g2\n"
    assert other.zfs.snapshot(SnapRef(c1, "g1-s1")).clones == (c2,)


def test_a_clone_received_into_a_pool_holding_its_origin_twice_is_refused(lab: Lab) -> None:
    """zfs finds a clone stream's origin by guid: in one pool, g1@s1 and its copy share it,
    and zfs-fuse picked the original in most runs, the copy in others."""
    g1, g2, c1, c2 = lab.vol("g1"), lab.vol("g2"), lab.vol("copy/g1"), lab.vol("copy/g2")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1"))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g1, "s1"), g2))
    lab.zfs.apply(lab.zfs.snapshot_plan([g2], "s2"))
    lab.zfs.apply(lab.zfs.create_plan(lab.vol("copy")))
    send(lab, SnapRef(g1, "s1"), lab, c1)
    with pytest.raises(StorageError) as refused:
        send(lab, SnapRef(g2, "s2"), lab, c2, base=SnapRef(g1, "s1"))
    picked = f"{g1}@s1" if f"{g1}@s1," in str(refused.value) else f"{c1}@s1"
    twin = f"{c1}@s1" if picked == f"{g1}@s1" else f"{g1}@s1"
    assert str(refused.value) == (
        f"the receive made {c2} a clone of {picked}, but {twin} has the same guid: zfs "
        f"cannot tell which one the stream meant; removed {c2}"
    )
    assert not lab.zfs.exists(c2)


def test_the_senders_mountpoint_is_not_applied_on_the_receiver(
    lab: Lab, other: Lab, tmp_path: Path
) -> None:
    g1, copy = lab.vol("g1"), other.vol("g1")
    elsewhere = tmp_path / "elsewhere"
    lab.zfs.apply(lab.zfs.create_plan(g1))
    zfs("set", f"mountpoint={elsewhere}", g1)  # like a system root's mountpoint=/
    lab.write(g1, "hello", b"hi\n")
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1"))

    send(lab, SnapRef(g1, "s1"), other, copy)  # `send -p` carries mountpoint=<elsewhere>

    assert prop(copy, "mountpoint") == (
        f"{other.pool.mountpoint}/sys/g1",
        f"inherited from {other.pool.name}",
    )
    assert other.zfs.mountpoint(copy) == f"{other.pool.mountpoint}/sys/g1"
    assert lab.zfs.mountpoint(g1) == str(elsewhere)  # the sender keeps its place
    assert (elsewhere / "hello").read_bytes() == other.read(copy, "hello") == b"hi\n"
    assert prop(copy, "atime") == ("off", "local")  # reads must not break the next receive


def test_a_full_stream_never_lands_on_a_volume_that_has_snapshots(lab: Lab) -> None:
    g1, g9, copy = lab.vol("g1"), lab.vol("g9"), lab.vol("copy")
    for name in (g1, g9):
        lab.zfs.apply(lab.zfs.create_plan(name))
        lab.zfs.apply(lab.zfs.snapshot_plan([name], "s1"))
    send(lab, SnapRef(g1, "s1"), lab, copy)
    before = tree(copy)
    with pytest.raises(CommandFailed) as refused:
        run_pipeline(
            [lab.zfs.send_stage(SnapRef(g9, "s1")), lab.zfs.receive_stage(copy)]
        )  # receive_stage allows it (an incremental could continue copy@s1); zfs refuses
    assert refused.value.tail == (
        f"cannot receive new filesystem stream: destination '{copy}' exists\n"
        "must specify -F to overwrite it"
    )
    assert tree(copy) == before


def test_finish_receive_checks_the_guid_of_what_arrived(lab: Lab) -> None:
    g1, g9, copy = lab.vol("g1"), lab.vol("g9"), lab.vol("copy")
    for name in (g1, g9):
        lab.zfs.apply(lab.zfs.create_plan(name))
        lab.zfs.apply(lab.zfs.snapshot_plan([name], "s1"))
    send(lab, SnapRef(g1, "s1"), lab, copy)
    impostor = lab.zfs.snapshot(SnapRef(g9, "s1"))
    arrived = lab.zfs.snapshot(SnapRef(copy, "s1"))
    with pytest.raises(StorageError) as mismatch:
        lab.zfs.finish_receive(copy, impostor)
    assert str(mismatch.value) == (
        f"{copy}@s1 has guid {arrived.guid}, but the snapshot sent ({g9}@s1) has guid "
        f"{impostor.guid}"
    )


def test_get_meta_ignores_inherited_keys(lab: Lab) -> None:
    g1 = lab.vol("g1")
    zfs("set", "g2d:site=dom0", lab.root)
    lab.zfs.apply(lab.zfs.create_plan(g1, {"g2d:gen": "1"}))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1", {"g2d:sealed": "yes"}))
    assert prop(g1, "g2d:site") == ("dom0", f"inherited from {lab.root}")
    assert lab.zfs.get_meta(g1) == lab.zfs.volume(g1).meta == {"g2d:gen": "1"}
    assert lab.zfs.get_meta(SnapRef(g1, "s1")) == {"g2d:sealed": "yes"}


def test_a_whole_subtree_is_snapshotted_in_one_atomic_command(lab: Lab) -> None:
    g1, var = lab.vol("g1"), lab.vol("g1/var")
    lab.zfs.apply(lab.zfs.create_plan(var))  # -p makes g1 too
    plan = lab.zfs.snapshot_plan([g1, var], "s1", {"g2d:sealed": "yes"})
    assert plan.render() == (
        f"plan: snapshot {g1}, {var} as @s1\n"
        f"  1. local: zfs snapshot -r -o g2d:sealed=yes {g1}@s1"
        f"  # snapshot {g1}, {var} as @s1 (the whole subtree: atomic)"
    )
    lab.zfs.apply(plan)
    assert lab.zfs.get_meta(SnapRef(var, "s1")) == {"g2d:sealed": "yes"}
    assert tree(lab.root) == dedent(f"""\
        {lab.root}
        {g1}
        {g1}@s1
        {var}
        {var}@s1
    """)


def test_destroy_names_every_victim_and_destroys_in_a_safe_order(lab: Lab) -> None:
    g1, var, g2, g3 = lab.vol("g1"), lab.vol("g1/var"), lab.vol("g2"), lab.vol("g3")
    lab.zfs.apply(lab.zfs.create_plan(var))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "g1-s1"))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g1, "g1-s1"), g2))
    lab.zfs.apply(lab.zfs.snapshot_plan([g2], "g2-s1"))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g2, "g2-s1"), g3))
    lab.zfs.apply(lab.zfs.hold_plan(SnapRef(g1, "g1-s1"), "keep"))
    with pytest.raises(HasDependents) as refused:
        lab.zfs.destroy_plan(g1)
    assert refused.value.dependents == (
        var,
        g3,
        f"{g2}@g2-s1",
        g2,
        f"{g1}@g1-s1",
        f"hold keep on {g1}@g1-s1",
    )
    assert lab.zfs.exists(g3)  # nothing changed
    plan = lab.zfs.destroy_plan(g1, force=True)
    assert plan.render() == "\n".join(
        [
            f"plan: destroy {g1}",
            f"  1. local: zfs release keep {g1}@g1-s1  # release hold keep on {g1}@g1-s1",
            f"  2. local: zfs unmount {var}  # unmount {var}",
            f"  3. local: zfs destroy {var}  # destroy {var}",
            f"  4. local: zfs unmount {g3}  # unmount {g3}",
            f"  5. local: zfs destroy {g3}  # destroy {g3}",
            f"  6. local: zfs destroy {g2}@g2-s1  # destroy {g2}@g2-s1",
            f"  7. local: zfs unmount {g2}  # unmount {g2}",
            f"  8. local: zfs destroy {g2}  # destroy {g2}",
            f"  9. local: zfs destroy {g1}@g1-s1  # destroy {g1}@g1-s1",
            f"  10. local: zfs unmount {g1}  # unmount {g1}",
            f"  11. local: zfs destroy {g1}  # destroy {g1}",
        ]
    )
    lab.zfs.apply(plan)
    assert tree(lab.root) == f"{lab.root}\n"


def test_rollback_with_destroy_newer_refuses_when_a_newer_snapshot_has_a_clone(lab: Lab) -> None:
    g1, c = lab.vol("g1"), lab.vol("c")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s1"))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "s2"))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g1, "s2"), c))
    with pytest.raises(HasDependents) as refused:
        lab.zfs.rollback_plan(SnapRef(g1, "s1"), destroy_newer=True)
    assert str(refused.value) == f"{g1}@s1 has dependents: {c}"
    lab.zfs.apply(lab.zfs.destroy_plan(c))
    plan = lab.zfs.rollback_plan(SnapRef(g1, "s1"), destroy_newer=True)
    assert plan.render() == (
        f"plan: roll back to {g1}@s1\n"
        f"  1. local: zfs rollback -r {g1}@s1  # roll {g1} back to {g1}@s1, destroying {g1}@s2"
    )


def test_promote_is_refused_when_snapshot_names_clash(lab: Lab) -> None:
    g1, g2 = lab.vol("g1"), lab.vol("g2")
    lab.zfs.apply(lab.zfs.create_plan(g1))
    lab.zfs.apply(lab.zfs.snapshot_plan([g1], "safe"))
    lab.zfs.apply(lab.zfs.clone_plan(SnapRef(g1, "safe"), g2))
    lab.zfs.apply(lab.zfs.snapshot_plan([g2], "safe"))  # the old tool's habit
    with pytest.raises(StorageError) as refused:
        lab.zfs.promote_plan(g2)
    assert str(refused.value) == (
        f"cannot promote {g2}: snapshot names safe exist on both {g2} and {g1}"
    )


def _crash_then_rerun(lab: Lab, plan: Plan, done: int) -> list[int]:
    """Apply the first ``done`` steps (the run that died), then the whole plan again; return
    the indexes of the steps the second run did not skip."""
    lab.zfs.apply(Plan(plan.title, plan.steps[:done]))
    return apply_plan(plan, {HOST.name: HOST})


def test_a_snapshot_plan_cut_short_finishes_when_run_again(lab: Lab) -> None:
    names = [lab.vol(g) for g in ("g1", "g2", "g3")]
    for name in names:
        lab.zfs.apply(lab.zfs.create_plan(name))
    plan = lab.zfs.snapshot_plan(names, "s1")  # not a subtree: one step per volume here
    assert len(plan.steps) == 3
    assert _crash_then_rerun(lab, plan, 2) == [2]
    assert tree(lab.root) == "".join(f"{n}\n" for n in [lab.root] + [
        x for n in names for x in (n, f"{n}@s1")
    ])  # fmt: skip


def test_a_rename_cut_short_finishes_when_run_again(lab: Lab) -> None:
    old, new = lab.vol("g1"), lab.vol("g9")
    lab.zfs.apply(lab.zfs.create_plan(old))
    lab.write(old, "f", b"x\n")
    plan = lab.zfs.rename_plan(old, new)
    assert [s.why for s in plan.steps] == [
        f"unmount {old}",
        f"rename {old} to {new}",
        f"mount {new}",
    ]
    assert _crash_then_rerun(lab, plan, 2) == [2]  # unmounted and renamed: mount remains
    assert lab.read(new, "f") == b"x\n"
    assert tree(lab.root) == f"{lab.root}\n{new}\n"
