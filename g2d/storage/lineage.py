"""Lineage operations over any Backend, each made of backend plans.

``create``, ``branch`` (``gN@snap -> gN+1``), ``seal``, ``rollback``, ``promote``,
``retire``/``fail`` and ``prune`` each read the lineage and return the *phases* of the
operation (``lineage_run.Phase``): plans composed from the backend's own ``*_plan``
methods, planned from the state as each phase starts, applied by ``LineageWriter`` under
the pool's lock with a journal. Nothing changes while the phases are made.

Two operations need a second phase because a backend plans only for what exists: seal
(hold the snapshot it made, then mark the generation sealed) and prune (release the seal's
holds, then destroy). Both later phases are derived from the state, never from a decision
of the first phase, so a resumed run finishes the same operation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from g2d.core.lineage import (
    SEAL_HOLD,
    Generation,
    GenName,
    GenState,
    Lineage,
    LineageError,
    Meta,
    Origin,
    Snap,
    SnapName,
    utc_stamp,
)
from g2d.core.plan import Plan, Step
from g2d.core.retention import RetentionPolicy, Selection, prune_selection
from g2d.storage.base import Backend, BackendKind, HasDependents, SnapRef
from g2d.storage.lineage_run import Phase, Phases

_HOLD = re.compile(r"hold (\S+)(?: on (\S+))?")


def load_lineage(backend: Backend, root: str, *, clones: bool = True) -> Lineage:
    """The lineage below ``root`` as the backend lists it now; empty if ``root`` is missing.
    ``clones`` False: for a reader that never asks what was cloned from a snapshot (where
    that costs a command: ZFS)."""
    if backend.kind is BackendKind.zfs:  # one read; a missing root reads as empty
        volumes, snapshots = backend.listing(root, clones=clones)
        return Lineage.build(root, volumes, snapshots) if volumes else Lineage(root, ())
    if not backend.exists(root) and not _is_dir(backend, root):
        return Lineage(root, ())
    volumes, snapshots = backend.listing(root, clones=clones)
    return Lineage.build(root, volumes, snapshots)


def _is_dir(backend: Backend, root: str) -> bool:
    """btrfs and plain lineages live in a directory that is no volume itself."""
    if not backend.kind.names_are_paths():
        return False
    return backend.host.run(["test", "-d", root], check=False).ok


def _steps(*plans: Plan) -> tuple[Step, ...]:
    return tuple(step for plan in plans for step in plan.steps)


def _meta(items: dict[Meta, str]) -> dict[str, str]:
    return {str(k): v for k, v in items.items()}


def _managed(gen: Generation, verb: str) -> tuple[GenName, str]:
    if gen.gen is None or gen.volume is None:
        what = "is not a generation" if gen.gen is None else "has no volume any more"
        raise LineageError(
            f"cannot {verb} {gen.key}: it {what}",
            hint="g2d lineage create or branch makes generations",
        )
    return gen.gen, gen.volume.name


def _new_generation(lineage: Lineage, name: GenName | None) -> tuple[GenName, str]:
    gen = name or lineage.next_gen()
    if lineage.find(str(gen)) is not None:
        raise LineageError(
            f"generation {gen} already exists in {lineage.root}",
            hint=f"leave the name out to take the next free one ({lineage.next_gen()})",
        )
    return gen, f"{lineage.root.rstrip('/')}/{gen}"


def _values(items: Mapping[str, str] | None) -> dict[str, str]:
    """``items`` without empty values (a ZFS user property cannot be empty)."""
    return {k: v for k, v in (items or {}).items() if v}


def record_plan(backend: Backend, lineage: Lineage, volume: str, items: Mapping[str, str]) -> Plan:
    """Set those of ``items`` (empty values left out) the generation does not hold already."""
    gen = lineage.generation(volume)
    if gen.volume is None:
        raise LineageError(f"cannot record metadata on {volume}: it has no volume")
    current = gen.volume.meta
    changed = {k: v for k, v in _values(items).items() if current.get(k) != v}
    if not changed:
        return Plan(f"metadata of {volume} is already recorded")
    return backend.known_meta_plan(volume, changed)


def _one(why: str, make: Callable[[Lineage], Plan]) -> Phases:
    return lambda lineage: [Phase(why, make)]


# --- create and branch -----------------------------------------------------------------------


def create_op(
    backend: Backend, name: GenName | None, origin: Origin, when: datetime,
    extra: Mapping[str, str] | None = None,
) -> Phases:  # fmt: skip
    """A base generation (``g1`` of a new lineage), state building; ``extra``: more ``g2d:*``
    keys set by the same command (a flow's own records, one pool write fewer)."""

    def make(lineage: Lineage) -> Plan:
        gen, volume = _new_generation(lineage, name)
        meta = _meta({Meta.gen: str(gen), Meta.state: GenState.building.value,
                      Meta.created: utc_stamp(when)}) | origin.to_meta()  # fmt: skip
        return backend.create_plan(volume, {**_values(extra), **meta})

    return _one("create the generation", make)


def branch_op(
    backend: Backend, source: str, name: GenName | None, origin: Origin, when: datetime
) -> Phases:
    """Clone ``source`` (``volume@snap``, ``@safe`` resolved) into a new generation whose
    metadata records its parent; stage3 and profile are inherited unless given."""

    def make(lineage: Lineage) -> Plan:
        snap = lineage.resolve(source)
        gen, volume = _new_generation(lineage, name)
        inherited = origin.over(lineage.owner(snap).origin)
        meta = _meta({
            Meta.gen: str(gen), Meta.parent: str(snap.ref), Meta.parent_guid: snap.info.guid,
            Meta.state: GenState.building.value, Meta.created: utc_stamp(when),
        }) | inherited.to_meta()  # fmt: skip
        # every backend's clone starts with exactly the metadata it is given (like ZFS)
        return backend.clone_plan(snap.ref, volume, meta)

    return _one("branch a new generation", make)


# --- seal ------------------------------------------------------------------------------------


def seal_op(
    backend: Backend, volume: str, when: datetime, extra: Mapping[str, str] | None = None
) -> Phases:
    """A snapshot with a lineage-unique name carrying the seal mark; then the seal's hold on
    it and the generation's state sealed. ``extra``: ``g2d:*`` keys set on the generation
    before the snapshot (a flow's last record, in the same operation)."""

    def phases(lineage: Lineage) -> list[Phase]:
        gen = lineage.generation(volume)
        name, vol = _managed(gen, "seal")
        if gen.state is not None and not gen.state.can_seal():
            raise LineageError(
                f"cannot seal {name}: it is {gen.state}",
                hint="sealing marks a generation known-good; roll it back or branch a new one",
            )
        snap = lineage.new_snapshot_name(name, when)
        mark = _meta({Meta.sealed: utc_stamp(when), Meta.gen: str(name)})
        record = _values(extra)
        return [
            Phase(f"snapshot {vol}@{snap} marked sealed",
                  lambda now: Plan(f"seal {vol}@{snap}", _steps(
                      record_plan(backend, now, volume, record),
                      backend.snapshot_plan([vol], snap, mark)))),
            Phase(f"hold {vol}@{snap} with {SEAL_HOLD}; mark {name} sealed",
                  lambda now: seal_finish_plan(backend, now, volume)),
        ]  # fmt: skip

    return phases


def seal_finish_plan(backend: Backend, lineage: Lineage, volume: str) -> Plan:
    """The newest sealed snapshot held with the seal's tag; the generation marked sealed."""
    gen = lineage.generation(volume)
    name, vol = _managed(gen, "seal")
    newest = gen.newest_sealed
    if newest is None:
        raise LineageError(f"{name} has no sealed snapshot to hold")
    plans = [] if SEAL_HOLD in newest.info.holds else [backend.hold_plan(newest.ref, SEAL_HOLD)]
    if gen.state is not GenState.sealed:
        plans.append(backend.set_meta_plan(vol, {Meta.state: GenState.sealed.value}))
    return Plan(f"finish sealing {newest.ref}", _steps(*plans))


# --- rollback, promote, state ----------------------------------------------------------------


def rollback_op(
    backend: Backend, volume: str, to: str | None = None, *, destroy_newer: bool = False
) -> Phases:
    """Back to ``to`` (a snapshot name; default the newest sealed); never past a snapshot
    something needs. A sealed target leaves the generation sealed."""

    def make(lineage: Lineage) -> Plan:
        gen = lineage.generation(volume)
        name, vol = _managed(gen, "roll back")
        target = lineage.resolve_ref(vol, to) if to else gen.newest_sealed
        if target is None:
            raise LineageError(f"cannot roll back {name}: it has no sealed snapshot")
        if target.ref.volume != vol:
            raise LineageError(
                f"cannot roll back {vol} to {target.ref}: promote moved that snapshot to "
                f"{target.ref.volume}",
                hint=f"branch a new generation from {target.ref} instead",
            )
        newer = [s for s in lineage.snapshots
                 if s.ref.volume == vol and s.sort_key() > target.sort_key()]  # fmt: skip
        needed = [f"{s.ref} ({why})" for s in newer if (why := needed_for(lineage, s))]
        if needed:
            raise LineageError(
                f"cannot roll back {vol} to {target.ref}: newer snapshots are needed: "
                + ", ".join(needed),
                hint="roll back to a newer snapshot, or branch from this one",
            )
        plans = [backend.rollback_plan(target.ref, destroy_newer=destroy_newer)]
        if target.sealed and gen.state in (None, GenState.building, GenState.failed):
            plans.append(backend.set_meta_plan(vol, {Meta.state: GenState.sealed.value}))
        return Plan(f"roll back {vol} to {target.ref}", _steps(*plans))

    return _one("roll back", make)


def needed_for(lineage: Lineage, snap: Snap) -> str:
    """Why ``snap`` must not go (empty when nothing needs it)."""
    if snap.sealed:
        return "sealed"
    if snap.held:
        return f"held by {', '.join(sorted(snap.held))}"
    if snap.info.clones:
        return f"origin of {', '.join(snap.info.clones)}"
    children = lineage.children(snap)
    if children:
        return f"parent of {', '.join(g.key for g in children)}"
    return ""


def promote_op(backend: Backend, volume: str) -> Phases:
    """Make the generation independent of its storage origin (ZFS moves the origin snapshot
    and older ones to it). Parent links stay in metadata; snapshots whose generation is
    known only from the volume holding them get an explicit ``g2d:gen`` first."""

    def make(lineage: Lineage) -> Plan:
        gen = lineage.generation(volume)
        _, vol = _managed(gen, "promote")
        origin = gen.volume.origin if gen.volume else None
        if origin is None:
            raise LineageError(f"cannot promote {vol}: it is not a clone, nothing to promote")
        source = lineage.snapshot(origin)
        moving = [s for s in lineage.snapshots if s.ref.volume == origin.volume
                  and (source is None or s.sort_key() <= source.sort_key())]  # fmt: skip
        plans = []
        if backend.kind is BackendKind.zfs:  # on btrfs and plain a snapshot keeps its keys
            for snap in moving:
                if snap.gen is not None and SnapName.parse(snap.name) is None:
                    plans.append(backend.set_meta_plan(snap.ref, {Meta.gen: str(snap.gen)}))
        plans.append(backend.promote_plan(vol))
        return Plan(f"promote {vol}", _steps(*plans))

    return _one("promote", make)


def set_state_op(backend: Backend, volume: str, state: GenState) -> Phases:
    """Mark a generation retired (prune may then destroy it) or failed (a flow's verdict)."""

    def make(lineage: Lineage) -> Plan:
        gen = lineage.generation(volume)
        name, vol = _managed(gen, f"mark as {state}")
        if gen.state is state:
            return Plan(f"{name} is already {state}")
        return backend.set_meta_plan(vol, {Meta.state: state.value})

    return _one(f"mark {state}", make)


# --- prune -----------------------------------------------------------------------------------


def prune_op(backend: Backend, policy: RetentionPolicy, protect: Iterable[str] = ()) -> Phases:
    """Destroy what ``prune_selection`` chose: first release the seal's holds on it, then
    destroy it, each destroy taking exactly items of the selection."""
    protect = tuple(protect)

    def phases(lineage: Lineage) -> list[Phase]:
        selection = prune_selection(lineage, policy, protect)
        check_destroys(backend, lineage, selection)  # before anything is released
        listed = ", ".join(str(i) for i in selection.destroy) or "nothing"
        return [
            Phase("release the seal's holds on what goes",
                  lambda now: release_plan(backend, now, prune_selection(now, policy, protect))),
            Phase(f"destroy {listed}",
                  lambda now: destroy_plan(backend, now, prune_selection(now, policy, protect))),
        ]  # fmt: skip

    return phases


def release_plan(backend: Backend, lineage: Lineage, selection: Selection) -> Plan:
    plans = []
    for item in selection.destroy:
        snap = lineage.snapshot(item) if isinstance(item, SnapRef) else None
        if snap is not None and SEAL_HOLD in snap.info.holds:
            plans.append(backend.release_plan(snap.ref, SEAL_HOLD))
    return Plan(f"release holds in {lineage.root}", _steps(*plans))


def check_destroys(backend: Backend, lineage: Lineage, selection: Selection) -> None:
    """Every destroy takes only selected items (and seal holds on them), or nothing runs."""
    doomed = {str(i) for i in selection.destroy}
    for item in selection.destroy:
        _dependents(backend, item, doomed)


def destroy_plan(backend: Backend, lineage: Lineage, selection: Selection) -> Plan:
    """Destroys of the largest selected items first found (a volume takes its snapshots,
    a snapshot its clones), so no two destroys overlap; run in the selection's order."""
    doomed = {str(i) for i in selection.destroy}
    taken: set[str] = set()
    roots: list[tuple[SnapRef | str, bool]] = []
    for item in reversed(selection.destroy):
        if str(item) not in taken:
            deps = _dependents(backend, item, doomed)
            roots.append((item, bool(deps)))
            taken |= set(deps)
    plans = [backend.destroy_plan(item, force=force) for item, force in reversed(roots)]
    return Plan(f"destroy in {lineage.root}", _steps(*plans))


def _dependents(backend: Backend, item: SnapRef | str, doomed: set[str]) -> list[str]:
    """What destroying ``item`` takes with it; refuses anything outside ``doomed``."""
    try:
        backend.destroy_plan(item)
    except HasDependents as e:
        taken: list[str] = []
        for dep in e.dependents:
            hold = _HOLD.fullmatch(dep)
            if hold is not None and hold[1] == SEAL_HOLD and (hold[2] or str(item)) in doomed:
                continue
            if hold is not None or dep not in doomed:
                raise LineageError(
                    f"cannot prune {item}: {dep} depends on it", hint="nothing was changed"
                ) from e
            taken.append(dep)
        return taken
    return []
