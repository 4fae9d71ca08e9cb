"""The generation lineage: names, metadata keys, states, and a model built from listings.

Pure logic, no I/O. A lineage is the set of volumes directly below one root (``pool/sys``
holds ``pool/sys/g1``, ``pool/sys/g2``...). Generations are named ``g1, g2, ...``; every
snapshot g2d takes is named ``<gen>-<UTC stamp>`` so names stay unique in the lineage and
``zfs promote`` never meets a name collision. Everything g2d knows about a generation lives
in ``g2d:*`` metadata on the volumes and snapshots (``Meta``), never in ``origin``, which
``zfs promote`` reverses.

``Lineage.build`` takes what a backend listed (``VolumeInfo``/``SnapshotInfo``), so tests
need no storage. A snapshot belongs to a *generation*, not to the volume that holds it:
after ``zfs promote g3`` the snapshot ``g1-20261125T203000Z`` lives on ``pool/sys/g3`` and
is still g1's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from g2d.core.errors import G2dUserError
from g2d.storage.base import SnapRef, SnapshotInfo, VolumeInfo

SAFE = "safe"  # `@safe` in a target: the newest sealed snapshot, or a literal `safe`
SEAL_HOLD = "g2d-sealed"  # the hold tag that protects a sealed snapshot
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_GEN = re.compile(r"g([1-9][0-9]{0,8})")
_SNAP = re.compile(r"(g[1-9][0-9]{0,8})-([0-9]{8}T[0-9]{6}Z)(?:-([2-9]|[1-9][0-9]{1,8}))?")


class LineageError(G2dUserError):
    """A lineage operation refused: names the generation or snapshot and what is wrong."""


class Meta(enum.StrEnum):
    """Every ``g2d:*`` metadata key the lineage reads or writes."""

    gen = "g2d:gen"  # volume and snapshot: the generation name, "g2"
    parent = "g2d:parent"  # volume: the snapshot it was branched from, "pool/sys/g1@g1-..."
    parent_guid = "g2d:parent-guid"  # volume: that snapshot's guid (survives promote, send)
    state = "g2d:state"  # volume: GenState
    sealed = "g2d:sealed"  # snapshot: UTC stamp of the seal; present means sealed
    created = "g2d:created"  # volume: UTC stamp of the branch or create
    stage3 = "g2d:stage3"  # volume: the stage3 the generation started from
    profile = "g2d:profile"  # volume: the Portage profile
    kernel = "g2d:kernel"  # volume: the kernel version
    flow_run = "g2d:flow-run"  # volume: the Prefect flow run that made it


class GenState(enum.StrEnum):
    building = enum.auto()
    sealed = enum.auto()
    failed = enum.auto()
    retired = enum.auto()

    def can_seal(self) -> bool:
        """Sealing says "known good": a failed or retired generation is not."""
        return self in (GenState.building, GenState.sealed)


@dataclass(frozen=True, order=True, slots=True)
class GenName:
    """A generation name, ``g1``, ``g2``, ...; ordered by number."""

    number: int

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise LineageError(f"generation number {self.number!r} is not a whole number >= 1")

    @classmethod
    def parse(cls, text: str) -> GenName:
        found = _GEN.fullmatch(text)
        if found is None:
            raise LineageError(
                f"{text!r} is not a generation name", hint="generations are named g1, g2, g3..."
            )
        return cls(int(found[1]))

    @classmethod
    def find(cls, text: str | None) -> GenName | None:
        """The generation ``text`` names, or None when it names none."""
        found = _GEN.fullmatch(text or "")
        return cls(int(found[1])) if found else None

    def next(self) -> GenName:
        return GenName(self.number + 1)

    def __str__(self) -> str:
        return f"g{self.number}"


@dataclass(frozen=True, slots=True)
class SnapName:
    """A snapshot name g2d made: ``g2-20261125T203000Z``, ``-2``, ``-3`` within one second."""

    gen: GenName
    stamp: str
    serial: int = 1

    @classmethod
    def parse(cls, text: str) -> SnapName | None:
        found = _SNAP.fullmatch(text)
        if found is None:
            return None
        return cls(GenName.parse(found[1]), found[2], int(found[3] or 1))

    def __str__(self) -> str:
        tail = f"-{self.serial}" if self.serial > 1 else ""
        return f"{self.gen}-{self.stamp}{tail}"


def utc_stamp(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("a stamp needs an aware datetime (UTC)")
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def snapshot_name(gen: GenName, when: datetime, taken: Collection[str]) -> str:
    """``<gen>-<stamp>``, with ``-2``, ``-3``... when that name is taken in the lineage."""
    serial = 1
    while str(name := SnapName(gen, utc_stamp(when), serial)) in taken:
        serial += 1
    return str(name)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a generation came from; stored as ``g2d:*`` keys on its volume."""

    stage3: str | None = None
    profile: str | None = None
    kernel: str | None = None
    flow_run: str | None = None

    def to_meta(self) -> dict[str, str]:
        keys = {Meta.stage3: self.stage3, Meta.profile: self.profile, Meta.kernel: self.kernel,
                Meta.flow_run: self.flow_run}  # fmt: skip
        return {str(k): v for k, v in keys.items() if v}

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> Origin:
        return cls(
            meta.get(Meta.stage3) or None,
            meta.get(Meta.profile) or None,
            meta.get(Meta.kernel) or None,
            meta.get(Meta.flow_run) or None,
        )

    def over(self, base: Origin) -> Origin:
        """These values where set, else ``base``'s (a branch inherits stage3 and profile)."""
        return Origin(
            self.stage3 or base.stage3,
            self.profile or base.profile,
            self.kernel or base.kernel,
            self.flow_run,  # a flow run made one generation, never its children
        )


@dataclass(frozen=True, slots=True)
class Snap:
    """A snapshot as the lineage sees it: its generation and its seal."""

    info: SnapshotInfo
    gen: GenName | None  # None: a snapshot of a volume g2d does not manage

    @property
    def ref(self) -> SnapRef:
        return self.info.ref

    @property
    def name(self) -> str:
        return self.info.ref.name

    @property
    def sealed(self) -> bool:
        return bool(self.info.meta.get(Meta.sealed)) or SEAL_HOLD in self.info.holds

    @property
    def held(self) -> frozenset[str]:
        """Holds other than the seal's own: somebody else (a replica, a user) needs it."""
        return self.info.holds - {SEAL_HOLD}

    def sort_key(self) -> tuple[int, str, int, str]:
        parsed = SnapName.parse(self.name)
        return (self.info.created, parsed.stamp if parsed else "", parsed.serial if parsed else 0,
                self.name)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Generation:
    """A generation (or a volume g2d does not manage) and its snapshots, oldest first."""

    gen: GenName | None  # None: not a generation (no g2d:gen, not named gN): the old tool's data
    volume: VolumeInfo | None  # None: the volume is gone; snapshots moved by promote remain
    snapshots: tuple[Snap, ...]

    @property
    def key(self) -> str:
        return str(self.gen) if self.gen else self.volume.name  # type: ignore[union-attr]

    @property
    def meta(self) -> Mapping[str, str]:
        return self.volume.meta if self.volume else {}

    @property
    def state(self) -> GenState | None:
        value = self.meta.get(Meta.state, "")
        return GenState(value) if value in GenState.__members__ else None

    @property
    def origin(self) -> Origin:
        return Origin.from_meta(self.meta)

    @property
    def sealed(self) -> tuple[Snap, ...]:
        return tuple(s for s in self.snapshots if s.sealed)

    @property
    def newest_sealed(self) -> Snap | None:
        return self.sealed[-1] if self.sealed else None


@dataclass(frozen=True)
class Lineage:
    """The volumes directly below ``root``, grouped into generations, with parent links."""

    root: str
    generations: tuple[Generation, ...]  # generations by number, then unmanaged volumes

    @classmethod
    def build(
        cls, root: str, volumes: Iterable[VolumeInfo], snapshots: Iterable[SnapshotInfo]
    ) -> Lineage:
        members = [v for v in volumes if _is_child(root, v.name)]
        by_volume: dict[str, GenName | None] = {}
        claimed: dict[GenName, str] = {}
        for v in members:
            gen = GenName.find(v.meta.get(Meta.gen)) or GenName.find(v.name.rpartition("/")[2])
            if gen in claimed:
                raise LineageError(
                    f"volumes {claimed[gen]} and {v.name} both claim generation {gen}",
                    hint=f"set {Meta.gen} on one of them to another generation name",
                )
            if gen is not None:
                claimed[gen] = v.name
            by_volume[v.name] = gen
        snaps = [Snap(s, _snapshot_gen(s, by_volume)) for s in snapshots
                 if s.ref.volume in by_volume]  # fmt: skip
        snaps.sort(key=Snap.sort_key)
        gens = sorted({g for g in [*by_volume.values(), *(s.gen for s in snaps)] if g})
        info = {v.name: v for v in members}
        out = [
            Generation(g, info.get(claimed.get(g, "")), tuple(s for s in snaps if s.gen == g))
            for g in gens
        ]
        for v in sorted(members, key=lambda v: v.name):
            if by_volume[v.name] is None:
                own = tuple(s for s in snaps if s.gen is None and s.ref.volume == v.name)
                out.append(Generation(None, v, own))
        return cls(root, tuple(out))

    # lookups

    @property
    def snapshots(self) -> tuple[Snap, ...]:
        return tuple(s for g in self.generations for s in g.snapshots)

    def find(self, key: str) -> Generation | None:
        """By generation name (``g2``) or by volume name (``pool/sys/g2``)."""
        for g in self.generations:
            if key == g.key or (g.volume is not None and g.volume.name == key):
                return g
        return None

    def generation(self, key: str) -> Generation:
        found = self.find(key)
        if found is None:
            raise LineageError(f"{key} is not a generation or volume of lineage {self.root}")
        return found

    def snapshot(self, ref: SnapRef) -> Snap | None:
        return next((s for s in self.snapshots if s.ref == ref), None)

    def named(self, name: str) -> list[Snap]:
        return [s for s in self.snapshots if s.name == name]

    def owner(self, snap: Snap) -> Generation:
        return next(g for g in self.generations if snap in g.snapshots)

    def parent(self, gen: Generation) -> Snap | None:
        """The snapshot ``gen`` was branched from, by guid, else by its recorded name."""
        guid = gen.meta.get(Meta.parent_guid)
        if guid:
            found = [s for s in self.snapshots if s.info.guid == guid]
            if len(found) == 1:
                return found[0]
        text = gen.meta.get(Meta.parent, "")
        volume, _, name = text.rpartition("@")
        if not volume or not name:
            return None
        exact = [s for s in self.snapshots if s.ref.volume == volume and s.name == name]
        same_name = self.named(name)  # moved by promote: the name is unique in the lineage
        found = exact or (same_name if len(same_name) == 1 else [])
        return found[0] if found else None

    def children(self, snap: Snap) -> list[Generation]:
        return [g for g in self.generations if g.gen and self.parent(g) == snap]

    def next_gen(self) -> GenName:
        numbers = [g.gen for g in self.generations if g.gen]
        return max(numbers).next() if numbers else GenName(1)

    def new_snapshot_name(self, gen: GenName, when: datetime) -> str:
        return snapshot_name(gen, when, {s.name for s in self.snapshots})

    # @safe and other snapshot names

    def resolve(self, text: str) -> Snap:
        """``volume@name`` to a snapshot; ``@safe`` as the lineage defines it."""
        volume, sep, name = text.rpartition("@")
        if not sep or not volume or not name:
            raise LineageError(f"{text!r} names no snapshot (expected volume@name)")
        return self.resolve_ref(volume, name)

    def resolve_ref(self, volume: str, name: str) -> Snap:
        """A literal snapshot of that name wins (``safe`` from the old tool's data, or a name
        moved to another volume by promote); ``safe`` otherwise means the newest sealed."""
        gen = self.generation(volume)
        literal = self.snapshot(SnapRef(volume, name)) or next(
            (s for s in gen.snapshots if s.name == name), None
        )
        if literal is not None:
            return literal
        if name == SAFE and gen.newest_sealed is not None:
            return gen.newest_sealed
        if name == SAFE:
            raise LineageError(
                f"{volume}@{SAFE}: {gen.key} has no sealed snapshot and none named {SAFE!r}",
                hint="seal it first (g2d lineage seal)",
            )
        raise LineageError(f"{volume}@{name} does not exist")

    def to_json(self) -> dict[str, object]:
        def snap(s: Snap) -> dict[str, object]:
            return {"ref": str(s.ref), "gen": str(s.gen) if s.gen else None, "sealed": s.sealed,
                    "seal": s.info.meta.get(Meta.sealed), "created": s.info.created,
                    "used": s.info.used, "holds": sorted(s.info.holds)}  # fmt: skip

        def gen(g: Generation) -> dict[str, object]:
            parent = self.parent(g)
            return {
                "gen": str(g.gen) if g.gen else None,
                "volume": g.volume.name if g.volume else None,
                "state": g.state.value if g.state else None,
                "used": g.volume.used if g.volume else None,
                "parent": str(parent.ref) if parent else g.meta.get(Meta.parent),
                "origin": str(g.volume.origin) if g.volume and g.volume.origin else None,
                "meta": dict(g.meta),
                "snapshots": [snap(s) for s in g.snapshots],
            }

        return {"root": self.root, "generations": [gen(g) for g in self.generations]}


def _is_child(root: str, name: str) -> bool:
    head, _, leaf = name.rpartition("/")
    return head == root.rstrip("/") and bool(leaf) and not leaf.startswith(".")


def _snapshot_gen(info: SnapshotInfo, by_volume: Mapping[str, GenName | None]) -> GenName | None:
    """By the name g2d gave it, else its own g2d:gen, else the volume that holds it."""
    parsed = SnapName.parse(info.ref.name)
    if parsed is not None:
        return parsed.gen
    return GenName.find(info.meta.get(Meta.gen)) or by_volume.get(info.ref.volume)
