"""The lineage core: names, the model built from listings, @safe, the tree, and retention.

The model is pure: it takes what a backend lists (VolumeInfo/SnapshotInfo). ``Sim`` builds
those listings with ZFS's clone and promote rules, so these tests need no storage; the lab
tests in tests/lab/test_lineage_ops.py run the same operations on the real backends.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from g2d.core.lineage import (
    SEAL_HOLD,
    GenName,
    GenState,
    Lineage,
    LineageError,
    Meta,
    Origin,
    SnapName,
    snapshot_name,
    utc_stamp,
)
from g2d.core.lineage_tree import human_size, render_tree
from g2d.core.retention import RetentionPolicy, prune_selection
from g2d.storage.base import META_KEY, SnapRef, SnapshotInfo, VolumeInfo

ROOT = "pool/sys"
T0 = 1_795_000_000  # 2026-11-18T...Z


class Sim:
    """Listings with ZFS's rules for clone, promote and destroy; no storage involved."""

    def __init__(self, root: str = ROOT) -> None:
        self.root = root
        self.vols: dict[str, dict[str, Any]] = {}
        self.snaps: list[dict[str, Any]] = []
        self.tick = T0
        self.guids = itertools.count(1000)

    # building

    def create(self, leaf: str, meta: dict[str, str] | None = None, used: int = 1 << 20) -> str:
        name = f"{self.root}/{leaf}"
        self.vols[name] = {"origin": None, "meta": dict(meta or {}), "used": used}
        return name

    def gen(self, gen: str, state: str = "sealed") -> str:
        return self.create(gen, {Meta.gen: gen, Meta.state: state})

    def snapshot(
        self,
        volume: str,
        name: str | None = None,
        *,
        sealed: bool = False,
        holds: tuple[str, ...] = (),
        meta: dict[str, str] | None = None,
        used: int = 4096,
    ) -> SnapRef:
        self.tick += 60
        when = datetime.fromtimestamp(self.tick, UTC)
        leaf = volume.rpartition("/")[2]
        gen = GenName.find(self.vols[volume]["meta"].get(Meta.gen)) or GenName.find(leaf)
        gen = gen or GenName(99)  # a volume that is no generation: names its snapshots g99
        name = name or snapshot_name(gen, when, {s["name"] for s in self.snaps})
        m = dict(meta or {})
        held = set(holds)
        if sealed:
            m[Meta.sealed] = utc_stamp(when)
            held.add(SEAL_HOLD)
        guid = str(next(self.guids))
        self.snaps.append({"volume": volume, "name": name, "guid": guid, "created": self.tick,
                           "meta": m, "holds": held, "used": used})  # fmt: skip
        return SnapRef(volume, name)

    def clone(self, ref: SnapRef, leaf: str, meta: dict[str, str]) -> str:
        assert self._snap(ref) is not None
        name = self.create(leaf, meta)
        self.vols[name]["origin"] = ref
        return name

    def branch(self, ref: SnapRef, gen: str, state: str = "building") -> str:
        meta = {Meta.gen: gen, Meta.parent: str(ref), Meta.parent_guid: self._snap(ref)["guid"],
                Meta.state: state}  # fmt: skip
        return self.clone(ref, gen, meta)

    def promote(self, volume: str) -> None:
        origin: SnapRef = self.vols[volume]["origin"]
        cut = self._snap(origin)["created"]
        moving = [s for s in self.snaps if s["volume"] == origin.volume and s["created"] <= cut]
        for s in moving:
            s["volume"] = volume
        for v in self.vols.values():
            o = v["origin"]
            if (
                o is not None
                and o.volume == origin.volume
                and any(s["name"] == o.name for s in moving)
            ):
                v["origin"] = SnapRef(volume, o.name)
        self.vols[volume]["origin"] = self.vols[origin.volume]["origin"]
        self.vols[origin.volume]["origin"] = SnapRef(volume, origin.name)

    def destroy(self, item: SnapRef | str) -> None:
        """Strict: refuses what ZFS refuses (clones, holds, snapshots of the volume)."""
        if isinstance(item, SnapRef):
            snap = self._snap(item)
            assert snap is not None, f"{item} does not exist"
            clones = [n for n, v in self.vols.items() if v["origin"] == item]
            assert not clones, f"{item} has clones {clones}"
            assert not snap["holds"], f"{item} is held by {snap['holds']}"
            self.snaps.remove(snap)
        else:
            assert item in self.vols, f"{item} does not exist"
            left = [s["name"] for s in self.snaps if s["volume"] == item]
            assert not left, f"{item} still has snapshots {left}"
            del self.vols[item]

    def _snap(self, ref: SnapRef) -> dict[str, Any]:
        return next((s for s in self.snaps if (s["volume"], s["name"]) == (ref.volume, ref.name)),
                    None)  # type: ignore[return-value]  # fmt: skip

    # listing

    def volumes(self) -> list[VolumeInfo]:
        out = [VolumeInfo(self.root, None, 0, None, {})]
        out += [VolumeInfo(n, v["origin"], v["used"], f"/{n}", dict(v["meta"]))
                for n, v in sorted(self.vols.items())]  # fmt: skip
        return out

    def snapshots(self) -> list[SnapshotInfo]:
        out = []
        for s in self.snaps:
            ref = SnapRef(s["volume"], s["name"])
            clones = tuple(sorted(n for n, v in self.vols.items() if v["origin"] == ref))
            out.append(SnapshotInfo(ref, s["guid"], s["created"], s["used"], dict(s["meta"]),
                                    frozenset(s["holds"]), clones))  # fmt: skip
        return out

    def lineage(self) -> Lineage:
        return Lineage.build(self.root, self.volumes(), self.snapshots())


def three_generations() -> tuple[Sim, dict[str, SnapRef]]:
    """g1 sealed twice, g2 from g1's first seal, g3 from g2's seal (unsealed tip)."""
    sim = Sim()
    g1 = sim.gen("g1")
    refs = {"g1a": sim.snapshot(g1, sealed=True), "g1b": sim.snapshot(g1, sealed=True)}
    g2 = sim.branch(refs["g1a"], "g2", state="sealed")
    refs["g2a"] = sim.snapshot(g2, sealed=True)
    g3 = sim.branch(refs["g2a"], "g3")
    refs["g3a"] = sim.snapshot(g3)
    return sim, refs


# --- names -----------------------------------------------------------------------------------

GOOD_GENS = [("g1", 1), ("g2", 2), ("g10", 10), ("g123456789", 123456789)]
BAD_GENS = ["g0", "g01", "G1", "g", "1", "g-1", "g1a", " g1", "gen1", "g1234567890", ""]


@pytest.mark.parametrize(("text", "number"), GOOD_GENS)
def test_generation_names_parse_and_print_back(text: str, number: int) -> None:
    assert GenName.parse(text) == GenName(number)
    assert str(GenName.parse(text)) == text


@pytest.mark.parametrize("text", BAD_GENS)
def test_bad_generation_names_are_refused(text: str) -> None:
    with pytest.raises(LineageError) as info:
        GenName.parse(text)
    assert str(info.value) == f"{text!r} is not a generation name"
    assert info.value.hint == "generations are named g1, g2, g3..."
    assert GenName.find(text) is None


@pytest.mark.parametrize("number", [0, -1, True, 1.0])
def test_generation_numbers_check_themselves(number: object) -> None:
    with pytest.raises(LineageError) as info:
        GenName(number)  # type: ignore[arg-type]
    assert str(info.value) == f"generation number {number!r} is not a whole number >= 1"


def test_generations_order_by_number_and_count_on() -> None:
    assert GenName(9).next() == GenName(10)
    assert sorted([GenName.parse("g10"), GenName.parse("g2")]) == [GenName(2), GenName(10)]


WHEN = datetime(2026, 11, 25, 20, 30, 0, tzinfo=UTC)


def test_snapshot_names_carry_generation_and_utc_stamp() -> None:
    assert utc_stamp(WHEN) == "20261125T203000Z"
    assert snapshot_name(GenName(2), WHEN, set()) == "g2-20261125T203000Z"
    eastern = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert snapshot_name(GenName(2), eastern, set()) == "g2-20261125T203000Z"


def test_snapshot_names_in_the_same_second_get_a_serial() -> None:
    taken = {"g2-20261125T203000Z"}
    assert snapshot_name(GenName(2), WHEN, taken) == "g2-20261125T203000Z-2"
    taken |= {"g2-20261125T203000Z-2", "g2-20261125T203000Z-3"}
    assert snapshot_name(GenName(2), WHEN, taken) == "g2-20261125T203000Z-4"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError) as info:
        utc_stamp(datetime(2026, 11, 25))
    assert str(info.value) == "a stamp needs an aware datetime (UTC)"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("g2-20261125T203000Z", SnapName(GenName(2), "20261125T203000Z")),
        ("g2-20261125T203000Z-2", SnapName(GenName(2), "20261125T203000Z", 2)),
        ("g12-20261125T203000Z-10", SnapName(GenName(12), "20261125T203000Z", 10)),
    ],
)
def test_snap_names_parse_and_print_back(text: str, parsed: SnapName) -> None:
    assert SnapName.parse(text) == parsed
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    ["safe", "g2-20261125T203000", "g2-20261125T203000Z-1", "g2-20261125T203000Z-02",
     "g0-20261125T203000Z", "g2_20261125T203000Z", "g2-20261125t203000z", "gnome_20220131"],
)  # fmt: skip
def test_other_snapshot_names_are_not_g2d_names(text: str) -> None:
    assert SnapName.parse(text) is None


def test_metadata_keys_are_valid_and_distinct() -> None:
    assert all(META_KEY.fullmatch(k) for k in Meta)
    assert len({k.value for k in Meta}) == len(Meta)
    assert Meta.parent == "g2d:parent" and Meta.flow_run == "g2d:flow-run"


def test_origin_round_trips_through_metadata_and_inherits() -> None:
    origin = Origin(stage3="stage3-amd64-20261124", profile="default/linux/amd64/23.0",
                    kernel="6.12.1", flow_run="0b6c")  # fmt: skip
    meta = origin.to_meta()
    assert meta == {"g2d:stage3": "stage3-amd64-20261124",
                    "g2d:profile": "default/linux/amd64/23.0", "g2d:kernel": "6.12.1",
                    "g2d:flow-run": "0b6c"}  # fmt: skip
    assert Origin.from_meta(meta) == origin
    assert Origin(kernel="6.13").over(origin) == Origin(
        "stage3-amd64-20261124", "default/linux/amd64/23.0", "6.13", None
    )
    assert Origin().to_meta() == {}


def test_only_building_and_sealed_generations_can_be_sealed() -> None:
    assert [s for s in GenState if s.can_seal()] == [GenState.building, GenState.sealed]


# --- the model -------------------------------------------------------------------------------


def test_generations_by_metadata_or_name_and_other_volumes_apart() -> None:
    sim = Sim()
    sim.gen("g1")
    sim.create("g2")  # named like a generation, no metadata: the old tool's data
    sim.create("current", {Meta.gen: "g3", Meta.state: "building"})  # metadata wins
    sim.create("plasma")  # not a generation
    sim.create("g1/var")  # below a generation: not a member of the lineage
    sim.create(".g2d-snap")  # where btrfs and plain keep snapshots
    lineage = sim.lineage()
    assert [g.key for g in lineage.generations] == ["g1", "g2", "g3", "pool/sys/plasma"]
    assert [g.state for g in lineage.generations] == [GenState.sealed, None,
                                                      GenState.building, None]  # fmt: skip
    assert lineage.generation("pool/sys/current").key == "g3"
    assert lineage.generation("g3").volume.name == "pool/sys/current"  # type: ignore[union-attr]
    assert lineage.next_gen() == GenName(4)


def test_an_empty_lineage_starts_at_g1() -> None:
    assert Sim().lineage().next_gen() == GenName(1)


def test_two_volumes_claiming_one_generation_is_an_error() -> None:
    sim = Sim()
    sim.gen("g2")
    sim.create("other", {Meta.gen: "g2"})
    with pytest.raises(LineageError) as info:
        sim.lineage()
    assert str(info.value) == "volumes pool/sys/g2 and pool/sys/other both claim generation g2"


def test_an_unknown_generation_is_an_error() -> None:
    with pytest.raises(LineageError) as info:
        Sim().lineage().generation("pool/sys/g7")
    assert str(info.value) == "pool/sys/g7 is not a generation or volume of lineage pool/sys"


def test_parents_come_from_metadata_and_survive_promote() -> None:
    sim, refs = three_generations()
    before = sim.lineage()
    parents = {g.key: before.parent(g) for g in before.generations}
    assert {k: str(p.ref) if p else None for k, p in parents.items()} == {
        "g1": None, "g2": str(refs["g1a"]), "g3": str(refs["g2a"]),
    }  # fmt: skip
    sim.promote("pool/sys/g3")
    sim.promote("pool/sys/g3")  # g3's origin is now g1a on g2: promote again
    after = sim.lineage()
    assert after.generation("g3").volume.origin is None  # type: ignore[union-attr]
    moved = {g.key: str(after.parent(g).ref) if after.parent(g) else None  # type: ignore[union-attr]
             for g in after.generations}  # fmt: skip
    assert moved == {"g1": None, "g2": f"pool/sys/g3@{refs['g1a'].name}",
                     "g3": f"pool/sys/g3@{refs['g2a'].name}"}  # fmt: skip
    # snapshots stay with their generation wherever they live now
    assert [s.name for s in after.generation("g1").snapshots] == [refs["g1a"].name,
                                                                  refs["g1b"].name]  # fmt: skip
    assert [s.ref.volume for s in after.generation("g1").snapshots] == ["pool/sys/g3",
                                                                        "pool/sys/g1"]  # fmt: skip


def test_parent_found_by_name_when_no_guid_was_recorded() -> None:
    sim, refs = three_generations()
    del sim.vols["pool/sys/g3"]["meta"][Meta.parent_guid]
    sim.promote("pool/sys/g3")
    lineage = sim.lineage()
    assert lineage.parent(lineage.generation("g3")).ref == SnapRef(  # type: ignore[union-attr]
        "pool/sys/g3", refs["g2a"].name
    )


def test_a_destroyed_parent_is_gone_not_guessed() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    sim.create("g2", {Meta.gen: "g2", Meta.state: "building", Meta.parent: f"{g1}@g1-x"})
    lineage = sim.lineage()
    assert lineage.parent(lineage.generation("g2")) is None


def test_new_snapshot_names_are_unique_across_the_lineage() -> None:
    sim = Sim()
    g1, g2 = sim.gen("g1"), sim.gen("g2")
    sim.snapshot(g1, "g2-20261125T203000Z")  # taken on another volume
    sim.snapshot(g2, "g2-20261125T203000Z-2")
    assert sim.lineage().new_snapshot_name(GenName(2), WHEN) == "g2-20261125T203000Z-3"


# --- @safe -----------------------------------------------------------------------------------


def test_safe_is_the_newest_sealed_snapshot() -> None:
    sim, refs = three_generations()
    g2_late = sim.snapshot("pool/sys/g2")  # newer, but not sealed
    lineage = sim.lineage()
    assert lineage.resolve("pool/sys/g1@safe").ref == refs["g1b"]
    assert lineage.resolve("pool/sys/g2@safe").ref == refs["g2a"]
    assert lineage.resolve(str(g2_late)).ref == g2_late


def test_a_literal_safe_snapshot_wins() -> None:
    sim = Sim()
    old = sim.create("plasma")
    literal = sim.snapshot(old, "safe")
    g1 = sim.gen("g1")
    sim.snapshot(g1, "safe")
    sim.snapshot(g1, sealed=True)  # newer and sealed; the literal name still wins
    lineage = sim.lineage()
    assert lineage.resolve("pool/sys/plasma@safe").ref == literal
    assert lineage.resolve("pool/sys/g1@safe").ref == SnapRef(g1, "safe")


def test_a_seal_hold_alone_marks_sealed() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    ref = sim.snapshot(g1, holds=(SEAL_HOLD,))
    assert sim.lineage().resolve(f"{g1}@safe").ref == ref


def test_safe_follows_snapshots_that_promote_moved() -> None:
    sim, refs = three_generations()
    sim.promote("pool/sys/g2")
    lineage = sim.lineage()
    assert lineage.resolve("pool/sys/g1@safe").ref == refs["g1b"]  # still on g1
    sim.snaps = [s for s in sim.snaps if s["name"] != refs["g1b"].name]
    lineage = sim.lineage()
    assert lineage.resolve("pool/sys/g1@safe").ref == SnapRef("pool/sys/g2", refs["g1a"].name)
    assert lineage.resolve(f"pool/sys/g1@{refs['g1a'].name}").ref.volume == "pool/sys/g2"


def test_safe_without_a_seal_is_an_error_naming_the_fix() -> None:
    sim = Sim()
    g1 = sim.gen("g1", state="building")
    sim.snapshot(g1)
    with pytest.raises(LineageError) as info:
        sim.lineage().resolve(f"{g1}@safe")
    assert str(info.value) == "pool/sys/g1@safe: g1 has no sealed snapshot and none named 'safe'"
    assert info.value.hint == "seal it first (g2d lineage seal)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pool/sys/g1@nope", "pool/sys/g1@nope does not exist"),
        ("pool/sys/g9@safe", "pool/sys/g9 is not a generation or volume of lineage pool/sys"),
        ("pool/sys/g1", "'pool/sys/g1' names no snapshot (expected volume@name)"),
        ("@safe", "'@safe' names no snapshot (expected volume@name)"),
    ],
)
def test_resolve_refuses_what_is_not_there(text: str, message: str) -> None:
    sim = Sim()
    sim.gen("g1")
    with pytest.raises(LineageError) as info:
        sim.lineage().resolve(text)
    assert str(info.value) == message


# --- the tree --------------------------------------------------------------------------------


def names(refs: dict[str, SnapRef]) -> dict[str, str]:
    return {k: v.name for k, v in refs.items()}


def test_tree_shows_states_sizes_seals_and_origins() -> None:
    sim, refs = three_generations()
    sim.vols["pool/sys/g1"]["meta"].update(
        {Meta.stage3: "stage3-amd64-20261124", Meta.profile: "default/linux/amd64/23.0"}
    )
    sim.vols["pool/sys/g3"]["meta"][Meta.flow_run] = "0b6c"
    sim.snapshot("pool/sys/g2", holds=("replica",), used=0)
    n = names(refs)
    g2b = sim.snaps[-1]["name"]
    assert (
        render_tree(sim.lineage())
        == f"""\
pool/sys
└── g1  sealed  1.0 MiB  stage3=stage3-amd64-20261124  profile=default/linux/amd64/23.0
    ├── @{n["g1a"]}  sealed {n["g1a"][3:]}  4.0 KiB
    │   └── g2  sealed  1.0 MiB
    │       ├── @{n["g2a"]}  sealed {n["g2a"][3:]}  4.0 KiB  <- @safe
    │       │   └── g3  building  1.0 MiB  flow-run=0b6c
    │       │       └── @{n["g3a"]}  4.0 KiB
    │       └── @{g2b}  0 B  held by replica
    └── @{n["g1b"]}  sealed {n["g1b"][3:]}  4.0 KiB  <- @safe
"""
    )


def test_tree_reads_the_same_after_promote_but_says_where_snapshots_live() -> None:
    sim, refs = three_generations()
    sim.promote("pool/sys/g3")
    sim.promote("pool/sys/g3")  # now g3 holds g1a and g2a, and g1 and g2 are its clones
    n = names(refs)
    assert (
        render_tree(sim.lineage(), sizes=False)
        == f"""\
pool/sys
└── g1  sealed  origin pool/sys/g3@{n["g1a"]}
    ├── @{n["g1a"]}  sealed {n["g1a"][3:]}  on pool/sys/g3
    │   └── g2  sealed  origin pool/sys/g3@{n["g2a"]}
    │       └── @{n["g2a"]}  sealed {n["g2a"][3:]}  on pool/sys/g3  <- @safe
    │           └── g3  building
    │               └── @{n["g3a"]}
    └── @{n["g1b"]}  sealed {n["g1b"][3:]}  <- @safe
"""
    )


def test_tree_shows_other_volumes_gone_parents_and_gone_volumes() -> None:
    sim = Sim()
    old = sim.create("plasma")
    safe = sim.snapshot(old, "safe")
    sim.branch(safe, "g1")
    sim.create("g2", {Meta.gen: "g2", Meta.state: "failed", Meta.parent: "pool/sys/g1@gone"})
    g3 = sim.gen("g3")
    moved = sim.snapshot(g3, "g4-20261125T203000Z", sealed=True)  # g4's, volume destroyed
    assert (
        render_tree(sim.lineage(), sizes=False)
        == f"""\
pool/sys
├── g2  failed  parent pool/sys/g1@gone (gone)
├── g3  sealed
├── g4  state unknown  (volume destroyed)
│   └── @g4-20261125T203000Z  sealed {utc_stamp(datetime.fromtimestamp(sim.tick, UTC))}  \
on {g3}
└── pool/sys/plasma  (not a generation)
    └── @safe  <- @safe
        └── g1  building
"""
    )
    assert moved.volume == g3


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "?"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (5 << 20, "5.0 MiB"), (3 << 40, "3.0 TiB"), (2048 << 50, "2048.0 PiB")],
)  # fmt: skip
def test_human_sizes(size: int | None, text: str) -> None:
    assert human_size(size) == text


def test_lineage_as_json() -> None:
    sim, refs = three_generations()
    data = sim.lineage().to_json()
    assert data["root"] == ROOT
    gens = data["generations"]
    assert [g["gen"] for g in gens] == ["g1", "g2", "g3"]
    assert gens[1]["parent"] == str(refs["g1a"])
    assert gens[1]["snapshots"][0]["sealed"] is True
    assert gens[1]["snapshots"][0]["holds"] == [SEAL_HOLD]


# --- retention -------------------------------------------------------------------------------


def strs(items: list[Any]) -> list[str]:
    return [str(i) for i in items]


def test_keep_the_newest_n_sealed_per_generation() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    seals = [sim.snapshot(g1, sealed=True) for _ in range(4)]
    loose = sim.snapshot(g1)
    destroy, keep, reasons = prune_selection(sim.lineage(), RetentionPolicy(keep_sealed=2))
    assert strs(destroy) == strs(seals[:2])
    assert strs(keep) == [g1, *strs(seals[2:]), str(loose)]
    assert reasons == {
        g1: "volume of generation g1, which is sealed",
        str(seals[0]): "sealed, older than the newest 2 of generation g1",
        str(seals[1]): "sealed, older than the newest 2 of generation g1",
        str(seals[2]): "sealed, one of the newest 2 of generation g1",
        str(seals[3]): "sealed, one of the newest 2 of generation g1",
        str(loose): "unsealed, and the policy keeps every unsealed snapshot",
    }


def test_unsealed_snapshots_by_their_own_count() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    loose = [sim.snapshot(g1) for _ in range(3)]
    destroy, _, reasons = prune_selection(sim.lineage(), RetentionPolicy(keep_unsealed=1))
    assert strs(destroy) == strs(loose[:2])
    assert reasons[str(loose[2])] == "unsealed, one of the newest 1 of generation g1"
    destroy, _, _ = prune_selection(sim.lineage(), RetentionPolicy(keep_unsealed=0))
    assert strs(destroy) == strs(loose)


def test_a_kept_generation_keeps_its_parent_chain() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    first = sim.snapshot(g1, sealed=True)
    later = [sim.snapshot(g1, sealed=True) for _ in range(2)]
    g2 = sim.branch(first, "g2", state="sealed")
    g2a = sim.snapshot(g2, sealed=True)
    g3 = sim.branch(g2a, "g3", state="sealed")
    g2b = sim.snapshot(g2, sealed=True)  # g2's newest; g2a is only kept for g3
    destroy, _keep, reasons = prune_selection(sim.lineage(), RetentionPolicy(keep_sealed=1))
    assert strs(destroy) == [str(later[0])]
    assert reasons[str(first)] == f"origin of {g2}"
    assert reasons[str(g2a)] == f"origin of {g3}"
    assert reasons[str(g2b)] == "sealed, one of the newest 1 of generation g2"


def test_the_chain_is_kept_through_metadata_after_promote() -> None:
    sim, refs = three_generations()
    sim.promote("pool/sys/g3")
    sim.promote("pool/sys/g3")
    sim.vols["pool/sys/g1"]["meta"][Meta.state] = "retired"
    sim.vols["pool/sys/g2"]["meta"][Meta.state] = "retired"
    lineage = sim.lineage()
    destroy, _, reasons = prune_selection(lineage, RetentionPolicy(keep_sealed=1))
    g1a = SnapRef("pool/sys/g3", refs["g1a"].name)
    g2a = SnapRef("pool/sys/g3", refs["g2a"].name)
    # g1 and g2 are retired and go, with g1b; g1a and g2a stay: g3 descends from them
    assert strs(destroy) == [f"pool/sys/g1@{refs['g1b'].name}", "pool/sys/g1", "pool/sys/g2"]
    assert reasons[str(g2a)] == "parent of g3, which is kept"
    assert reasons[str(g1a)] == f"parent of g2, whose {refs['g2a'].name} is kept"


def test_retired_generations_go_unless_something_kept_needs_them() -> None:
    sim, refs = three_generations()
    sim.vols["pool/sys/g2"]["meta"][Meta.state] = "retired"
    destroy, keep, reasons = prune_selection(sim.lineage(), RetentionPolicy(keep_sealed=1))
    assert "pool/sys/g2" in strs(keep)
    assert reasons["pool/sys/g2"] == f"holds {refs['g2a']}, which is kept"
    assert reasons[str(refs["g2a"])] == "origin of pool/sys/g3"
    assert strs(destroy) == []  # g1a: g2's origin; g1b: g1's newest seal
    sim.vols["pool/sys/g3"]["meta"][Meta.state] = "retired"
    destroy, _, reasons = prune_selection(sim.lineage(), RetentionPolicy(keep_sealed=1))
    # and g1a, older than g1's newest seal, goes once g2 (its clone) is gone
    assert strs(destroy) == [str(refs["g3a"]), "pool/sys/g3", str(refs["g2a"]), "pool/sys/g2",
                             str(refs["g1a"])]  # fmt: skip
    assert reasons["pool/sys/g3"] == "generation g3 is retired"
    assert reasons[str(refs["g3a"])] == "snapshot of generation g3 is retired"
    kept = prune_selection(sim.lineage(), RetentionPolicy(drop_retired=False)).destroy
    assert kept == []


def test_building_failed_unknown_and_other_volumes_are_left_alone() -> None:
    sim = Sim()
    seals: dict[str, list[SnapRef]] = {}
    for gen, state in [("g1", "building"), ("g2", "failed")]:
        vol = sim.gen(gen, state=state)
        seals[gen] = [sim.snapshot(vol, sealed=True) for _ in range(2)]
    unknown = sim.create("g3")
    seals["g3"] = [sim.snapshot(unknown, sealed=True) for _ in range(2)]
    old = sim.create("plasma")
    seals["old"] = [sim.snapshot(old, "safe"), sim.snapshot(old, "auto")]
    policy = RetentionPolicy(keep_sealed=1, keep_unsealed=0)
    destroy, _, reasons = prune_selection(sim.lineage(), policy)
    assert destroy == []
    assert reasons[str(seals["g1"][0])] == "generation g1 is building (pruned only when asked)"
    assert reasons["pool/sys/g2"] == "generation g2 is failed (pruned only when asked)"
    assert reasons[str(seals["g3"][0])] == "generation g3 has no known state; g2d leaves it alone"
    assert (
        reasons[str(seals["old"][1])] == "pool/sys/plasma is not a generation; g2d leaves it alone"
    )
    asked = RetentionPolicy(keep_sealed=1, drop_failed=True, prune_building=True)
    destroy, _, _ = prune_selection(sim.lineage(), asked)
    assert strs(destroy) == [str(seals["g1"][0]), *strs(seals["g2"]), "pool/sys/g2"]


def test_held_and_protected_snapshots_stay() -> None:
    sim = Sim()
    g1 = sim.gen("g1")
    held = sim.snapshot(g1, sealed=True, holds=("replica",))
    boot = sim.snapshot(g1, sealed=True)
    by_name = sim.snapshot(g1, sealed=True)
    sim.snapshot(g1, sealed=True)
    policy = RetentionPolicy(keep_sealed=1)
    destroy, _, reasons = prune_selection(sim.lineage(), policy, protect={str(boot), by_name.name})
    assert destroy == []
    assert reasons[str(held)] == "held by replica"
    assert reasons[str(boot)] == reasons[str(by_name)] == "protected"


def test_a_protected_generation_keeps_its_volume_and_chain() -> None:
    sim, refs = three_generations()
    sim.vols["pool/sys/g3"]["meta"][Meta.state] = "retired"
    sim.vols["pool/sys/g2"]["meta"][Meta.state] = "retired"
    destroy, _, reasons = prune_selection(sim.lineage(), RetentionPolicy(), protect={"g3"})
    assert strs(destroy) == [str(refs["g3a"])]
    assert reasons["pool/sys/g3"] == "protected"
    assert reasons[str(refs["g2a"])] == "origin of pool/sys/g3"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_sealed": 0}, "keep 0 sealed snapshots: must be a whole number >= 1"),
        ({"keep_sealed": True}, "keep True sealed snapshots: must be a whole number >= 1"),
        ({"keep_unsealed": -1}, "keep -1 unsealed snapshots: must be a whole number >= 0"),
    ],
)
def test_policies_check_themselves(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LineageError) as info:
        RetentionPolicy(**kwargs)
    assert str(info.value) == message


# --- property: pruning never removes what something kept depends on ----------------------------

SNAP = st.tuples(st.just("snap"), st.integers(0, 30), st.booleans(),
                 st.sampled_from(["", "", "", "", "replica"]))  # fmt: skip
BRANCH = st.tuples(st.just("branch"), st.integers(0, 60), st.sampled_from(["building", "sealed"]))
PROMOTE = st.tuples(st.just("promote"), st.integers(0, 30))
STATE = st.tuples(st.just("state"), st.integers(0, 30),
                  st.sampled_from([*(s.value for s in GenState), "retired", None]))  # fmt: skip
LITERAL = st.tuples(st.just("literal"), st.integers(0, 30))
OPS = st.lists(
    st.one_of(SNAP, SNAP, BRANCH, BRANCH, PROMOTE, PROMOTE, STATE, STATE, LITERAL),
    min_size=6,
    max_size=30,
)
POLICIES = st.builds(
    RetentionPolicy,
    keep_sealed=st.integers(1, 3),
    keep_unsealed=st.none() | st.integers(0, 2),
    drop_retired=st.booleans(),
    drop_failed=st.booleans(),
    prune_building=st.booleans(),
)


def simulate(ops: list[tuple[Any, ...]], with_old: bool) -> Sim:
    sim = Sim()
    sim.snapshot(sim.gen("g1", state="building"), sealed=True)
    if with_old:
        sim.snapshot(sim.create("plasma"), "safe")
    for op in ops:
        vols = sorted(sim.vols)
        vol = vols[op[1] % len(vols)] if len(op) > 1 else vols[0]
        if op[0] == "snap":
            sim.snapshot(vol, sealed=op[2], holds=(op[3],) if op[3] else ())
        elif op[0] == "literal":
            taken = {s["name"] for s in sim.snaps}
            sim.snapshot(
                vol, next(f"auto{i}" for i in itertools.count() if f"auto{i}" not in taken)
            )
        elif op[0] == "branch" and sim.snaps:
            ref = SnapRef(sim.snaps[op[1] % len(sim.snaps)]["volume"],
                          sim.snaps[op[1] % len(sim.snaps)]["name"])  # fmt: skip
            sim.branch(ref, str(sim.lineage().next_gen()), state=op[2])
        elif op[0] == "promote" and (clones := [v for v in vols if sim.vols[v]["origin"]]):
            vol = clones[op[1] % len(clones)]
            # as promote_plan does: moving snapshots not named by g2d get their g2d:gen first
            lineage = sim.lineage()
            for snap in lineage.snapshots:
                if snap.gen is not None and SnapName.parse(snap.name) is None:
                    sim._snap(snap.ref)["meta"][Meta.gen] = str(snap.gen)
            sim.promote(vol)
        elif op[0] == "state" and (gens := [v for v in vols if Meta.gen in sim.vols[v]["meta"]]):
            meta = sim.vols[gens[op[1] % len(gens)]]["meta"]
            if op[2] is None:
                meta.pop(Meta.state, None)
            else:
                meta[Meta.state] = op[2]
    return sim


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, policy=POLICIES, with_old=st.booleans(), protect_picks=st.sets(st.integers(0, 80)))
def test_pruning_never_removes_what_something_kept_depends_on(
    ops: list[tuple[Any, ...]], policy: RetentionPolicy, with_old: bool, protect_picks: set[int]
) -> None:
    sim = simulate(ops, with_old)
    lineage = sim.lineage()
    every = [*(v.name for v in sim.volumes()[1:]), *(str(s.ref) for s in lineage.snapshots)]
    protect = {every[i % len(every)] for i in protect_picks}
    destroy, keep, reasons = prune_selection(lineage, policy, protect)
    gone, kept = set(strs(destroy)), set(strs(keep))

    assert len(gone) == len(destroy) and len(kept) == len(keep)
    assert gone | kept == set(every) and not gone & kept
    assert set(reasons) == set(every)
    for gen in lineage.generations:
        parent = lineage.parent(gen)
        vol = gen.volume
        if vol is not None and vol.name in kept:
            assert vol.origin is None or str(vol.origin) not in gone
            assert parent is None or str(parent.ref) not in gone
        for snap in gen.snapshots:
            if str(snap.ref) in kept:
                assert snap.ref.volume not in gone
                assert parent is None or str(parent.ref) not in gone, (snap.ref, parent.ref)
            else:
                assert not snap.held and str(snap.ref) not in protect and snap.name not in protect
            assert not any(c in kept for c in snap.info.clones) or str(snap.ref) in kept
        if gen.gen is None or (vol is not None and gen.state is None):
            assert all(str(s.ref) in kept for s in gen.snapshots)
        if gen.state is GenState.building and not policy.prune_building:
            assert all(str(s.ref) in kept for s in gen.snapshots)
        if gen.state is GenState.failed and not policy.drop_failed:
            assert vol is None or vol.name in kept
        if gen.state is GenState.sealed:
            newest = gen.sealed[len(gen.sealed) - policy.keep_sealed :]
            assert all(str(s.ref) in kept for s in newest)

    # the order runs under ZFS's rules, and every kept generation still finds its parent
    for item in destroy:
        if isinstance(item, SnapRef):
            sim._snap(item)["holds"].discard(SEAL_HOLD)  # prune releases the seal's hold
        sim.destroy(item)
    after = sim.lineage()
    for gen in lineage.generations:
        if gen.volume is not None and gen.volume.name in kept and lineage.parent(gen):
            found = after.parent(after.generation(gen.volume.name))
            assert found is not None and found.ref == lineage.parent(gen).ref  # type: ignore[union-attr]
