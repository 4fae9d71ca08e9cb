"""Which snapshots a replication sends (g2d.core.replication), and the plan step form for
effects that are absences (``done_unless``), with its JSON round trip."""

from __future__ import annotations

import pytest

from g2d.core.plan import Command, Plan, Step
from g2d.core.replication import ReplicationError, Side, TransferKind, plan_transfers
from g2d.storage.base import SnapRef, SnapshotInfo, VolumeInfo


def vol(root: str, leaf: str, origin: str | None = None) -> VolumeInfo:
    return VolumeInfo(f"{root}/{leaf}", SnapRef.parse(origin) if origin else None, None, None, {})


def snap(ref: str, guid: str) -> SnapshotInfo:
    return SnapshotInfo(SnapRef.parse(ref), guid, 0, None, {}, frozenset(), ())


def source() -> Side:
    """g1@a -> g2 (@b, @c) -> g3 (@d), and g3 listed first: order follows origins."""
    r = "src/sys"
    vols = {"g3": vol(r, "g3", f"{r}/g2@b"), "g1": vol(r, "g1"), "g2": vol(r, "g2", f"{r}/g1@a")}
    snaps = {"g1": (snap(f"{r}/g1@a", "1"),),
             "g2": (snap(f"{r}/g2@b", "2"), snap(f"{r}/g2@c", "3")),
             "g3": (snap(f"{r}/g3@d", "4"),)}  # fmt: skip
    return Side(r, vols, snaps)


def shown(side: Side, target: Side) -> list[str]:
    return [str(t) for t in plan_transfers(side, target).transfers]


def test_a_fresh_target_gets_a_full_stream_then_clones_and_incrementals() -> None:
    assert shown(source(), Side("dst/sys", {}, {})) == [
        "src/sys/g1@a -> dst/sys/g1@a (full stream)",
        "src/sys/g2@b -> dst/sys/g2@b (clone from its origin from src/sys/g1@a)",
        "src/sys/g2@c -> dst/sys/g2@c (incremental from src/sys/g2@b)",
        "src/sys/g3@d -> dst/sys/g3@d (clone from its origin from src/sys/g2@b)",
    ]


def test_a_replica_continues_from_its_newest_snapshot_by_guid() -> None:
    d = "dst/sys"
    target = Side(d, {"g1": vol(d, "g1"), "g2": vol(d, "g2", f"{d}/g1@a")},
                  {"g1": (snap(f"{d}/g1@a", "1"),), "g2": (snap(f"{d}/g2@b", "2"),)})  # fmt: skip
    assert shown(source(), target) == [
        "src/sys/g2@c -> dst/sys/g2@c (incremental from src/sys/g2@b)",
        "src/sys/g3@d -> dst/sys/g3@d (clone from its origin from src/sys/g2@b)",
    ]


def test_an_up_to_date_replica_needs_nothing_and_unsnapshotted_volumes_are_named() -> None:
    s = source()
    d = "dst/sys"
    done = Side(d, {k: vol(d, k) for k in s.volumes},
                {k: tuple(snap(x.ref.name.join([f"{d}/{k}@", ""]), x.guid) for x in v)
                 for k, v in s.snapshots.items()})  # fmt: skip
    building = Side(s.root, {**s.volumes, "g4": vol(s.root, "g4", f"{s.root}/g3@d")},
                    {**s.snapshots, "g4": ()})  # fmt: skip
    found = plan_transfers(building, done)
    assert found.transfers == ()
    assert found.skipped == ("src/sys/g4: no snapshot to send (seal it to replicate it)",)


def test_a_diverged_replica_is_refused_with_the_last_common_snapshot() -> None:
    d = "dst/sys"
    target = Side(d, {"g1": vol(d, "g1")},
                  {"g1": (snap(f"{d}/g1@a", "1"), snap(f"{d}/g1@mine", "99"))})  # fmt: skip
    with pytest.raises(ReplicationError) as info:
        plan_transfers(source(), target)
    assert str(info.value) == (
        "dst/sys/g1@mine on the target is not a snapshot of src/sys/g1: the target diverged; "
        "the last common snapshot is dst/sys/g1@a"
    )


def test_a_target_volume_without_snapshots_is_no_replica() -> None:
    with pytest.raises(ReplicationError) as info:
        plan_transfers(source(), Side("dst/sys", {"g1": vol("dst/sys", "g1")}, {}))
    assert str(info.value) == (
        "dst/sys/g1 exists on the target but holds no snapshot: it is no replica of src/sys/g1"
    )


def test_an_origin_outside_the_lineage_means_a_full_stream() -> None:
    s = Side("src/sys", {"g1": vol("src/sys", "g1", "elsewhere/base@x")},
             {"g1": (snap("src/sys/g1@a", "1"),)})  # fmt: skip
    kinds = [t.kind for t in plan_transfers(s, Side("dst/sys", {}, {})).transfers]
    assert kinds == [TransferKind.full]


def test_done_unless_round_trips_and_old_journals_still_load() -> None:
    step = Step.run("local", ["zfs", "destroy", "p/x"], "destroy p/x",
                    done_unless=["zfs", "list", "-H", "-o", "name", "p/x"])  # fmt: skip
    plan = Plan.of("destroy", [step, Step.run("local", ["true"], "t", done_if=["true"])])
    data = plan.to_json()
    assert Plan.from_json(data) == plan
    assert "done_unless" not in data["steps"][1]  # type: ignore[index]
    old = {"title": "t", "steps": [{"why": "w", "pipeline": [{"host": "h", "argv": ["a"]}],
                                    "done_if": None, "undo": []}]}  # fmt: skip
    assert Plan.from_json(old) == Plan("t", (Step("w", (Command("h", ("a",)),)),))
    with pytest.raises(ValueError) as info:
        Step("w", (Command("h", ("a",)),), Command("h", ("b",)), (), Command("h", ("c",)))
    assert str(info.value) == "step 'w' has both done_if and done_unless"


# --- finishing a replica (g2d.storage.replica_finish, g2d.storage.zfs_recv): pure decisions ---


def test_only_volumes_that_need_it_are_fixed_each_fix_one_command() -> None:
    from g2d.storage.zfs_props import parse_get
    from g2d.storage.zfs_recv import replica_fixes

    rows = parse_get(
        "p/r/g1\tmountpoint\t/\treceived\n"  # the sender's own: masked
        "p/r/g1\tatime\ton\tdefault\n"
        "p/r/g2\tmountpoint\t/m/r/g2\tinherited from p\n"
        "p/r/g2\tatime\toff\tinherited from p/r\n"  # off already
        "p/r/g3\tmountpoint\t/m/r/g3\tinherited from p\n"
        "p/r/g3\tatime\ton\tlocal\n"  # the replica's own choice: kept
        "p/r/g4\tmountpoint\t/\treceived\n"
        "p/r/g4\tatime\ton\treceived\n"
    )
    assert replica_fixes(rows, ["p/r/g1", "p/r/g2", "p/r/g3", "p/r/g4", "p/r/gone"]) == [
        ["zfs", "inherit", "mountpoint", "p/r/g1", "p/r/g4"],
        ["zfs", "set", "atime=off", "p/r/g1", "p/r/g4"],
    ]
    assert replica_fixes(rows, ["p/r/g2", "p/r/g3"]) == []


def test_sealed_snapshots_without_the_hold_are_found_by_mark_or_by_source() -> None:
    from g2d.storage.replica_finish import unheld

    def marked(ref: str, guid: str, meta: dict[str, str], holds: frozenset[str]) -> SnapshotInfo:
        return SnapshotInfo(SnapRef.parse(ref), guid, 0, None, meta, holds, ())

    src = Side("s", {"g1": vol("s", "g1")},
               {"g1": (marked("s/g1@a", "1", {}, frozenset({"g2d-sealed"})),
                       marked("s/g1@b", "2", {}, frozenset()),
                       marked("s/g1@c", "3", {}, frozenset()))})  # fmt: skip
    dst = Side("d", {"g1": vol("d", "g1")},
               {"g1": (marked("d/g1@a", "1", {}, frozenset()),  # sealed at the source
                       marked("d/g1@b", "2", {}, frozenset()),  # not sealed
                       marked("d/g1@c", "3", {"g2d:sealed": "x"}, frozenset({"g2d-sealed"})),
                       marked("d/g1@d", "4", {"g2d:sealed": "y"}, frozenset()))})  # fmt: skip
    assert [str(s.ref) for s in unheld(src, dst)] == ["d/g1@a", "d/g1@d"]


def test_what_arrived_is_checked_against_what_was_sent() -> None:
    from g2d.core.replication import Transfer
    from g2d.storage.base import StorageError
    from g2d.storage.replica_finish import check_arrived

    s, d = source(), "dst/sys"
    g1, g2 = s.snapshots["g1"][0], s.snapshots["g2"][0]
    sent = [Transfer(TransferKind.full, g1, None, f"{d}/g1"),
            Transfer(TransferKind.clone, g2, g1.ref, f"{d}/g2")]  # fmt: skip

    def target(origin: str, g2_snaps: tuple[SnapshotInfo, ...]) -> Side:
        vols = {"g1": vol(d, "g1"), "g2": vol(d, "g2", origin)}
        return Side(d, vols, {"g1": (snap(f"{d}/g1@a", "1"),), "g2": g2_snaps})

    check_arrived(target(f"{d}/g1@a", (snap(f"{d}/g2@b", "2"),)), sent, "src/sys")  # as sent
    cases = [
        (target(f"{d}/g1@a", ()), "the receive into dst/sys/g2 did not complete: "
         "dst/sys/g2@b is missing"),
        (target(f"{d}/g1@a", (snap(f"{d}/g2@b", "77"),)), "dst/sys/g2@b has guid 77, but the "
         "snapshot sent (src/sys/g2@b) has guid 2"),
        (target("other/sys/g1@a", (snap(f"{d}/g2@b", "2"),)), "the receive made dst/sys/g2 a "
         "clone of other/sys/g1@a, not of dst/sys/g1@a"),
    ]  # fmt: skip
    for side, message in cases:
        with pytest.raises(StorageError) as info:
            check_arrived(side, sent, "src/sys")
        assert str(info.value) == message
