"""A lineage operation named by a word and its options, turned into an intent and phases.

``plan_request(site, request, when)`` returns what ``LineageWriter`` runs: the *intent*
(the words that name the operation; the same words as ``g2d lineage``'s, so a run cut off
in a flow is finished by the CLI and the other way round) and the operation's phases from
``g2d.storage.lineage``. Used by the Prefect ``lineage`` and ``snapshot`` flows.

``snapshot_op`` takes the unsealed, lineage-unique ``<gen>-<stamp>`` snapshots of scheduled
runs: sealing says "known good" and is a person's (or a verified flow's) decision.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from g2d.core.lineage import SAFE, GenName, GenState, Lineage, LineageError, Meta, Origin
from g2d.core.plan import Plan
from g2d.core.retention import RetentionPolicy
from g2d.storage.base import Backend
from g2d.storage.lineage import (
    branch_op,
    create_op,
    promote_op,
    prune_op,
    rollback_op,
    seal_op,
    set_state_op,
)
from g2d.storage.lineage_run import Phase, Phases
from g2d.storage.lineage_site import LineageSite

# generations a scheduled snapshot takes by default: the live ones
SNAPSHOT_STATES = (GenState.building, GenState.sealed)


class Operation(enum.StrEnum):
    create = enum.auto()
    branch = enum.auto()
    seal = enum.auto()
    rollback = enum.auto()
    promote = enum.auto()
    retire = enum.auto()
    prune = enum.auto()
    # replicate: added with g2d/storage/replicate.py (a builder in _BUILDERS, below)

    def changes_one_generation(self) -> bool:
        return self in (Operation.seal, Operation.rollback, Operation.promote, Operation.retire)


@dataclass(frozen=True)
class LineageRequest:
    """One operation and the options it takes; the others keep their defaults."""

    operation: Operation
    target: str  # the generation (branch: gN@snap, no @snap meaning @safe; prune: any)
    name: str | None = None  # create, branch: the new generation (default: the next gN)
    destroy_newer: bool = False  # rollback
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)  # prune
    protect: tuple[str, ...] = ()  # prune: never destroyed (boot entries, replica bases)
    origin: Origin = field(default_factory=Origin)  # create, branch


def _words(name: str, value: object) -> list[str]:
    if value in (None, False):
        return []
    return [name] if value is True else [f"{name}={value}"]


def _origin_words(origin: Origin) -> list[str]:
    pairs = [("--stage3", origin.stage3), ("--profile", origin.profile),
             ("--kernel", origin.kernel), ("--flow-run", origin.flow_run)]  # fmt: skip
    return [w for k, v in pairs for w in _words(k, v)]


def prune_words(policy: RetentionPolicy, protect: Sequence[str]) -> list[str]:
    """``g2d lineage prune``'s options for this policy, in its order."""
    return [f"--keep={policy.keep_sealed}", *_words("--keep-unsealed", policy.keep_unsealed),
            *(f"--protect={p}" for p in sorted(set(protect))),
            *_words("--failed", policy.drop_failed), *_words("--building", policy.prune_building),
            *_words("--keep-retired", not policy.drop_retired)]  # fmt: skip


def _need_generation(site: LineageSite, op: Operation) -> str:
    if site.generation is None:
        raise LineageError(
            f"{op} needs a generation, and {site.target} is a lineage root",
            hint=f"name one of its generations: {site.target}/g1",
        )
    return site.generation


def _create(site: LineageSite, req: LineageRequest, when: datetime) -> tuple[str, Phases]:
    leaf = GenName.find(site.generation.rpartition("/")[2]) if site.generation else None
    name = GenName.parse(req.name) if req.name else leaf
    words = ["create", str(site.target), *_origin_words(req.origin)]
    return shlex.join(words), create_op(site.backend, name, req.origin, when)


def _branch(site: LineageSite, req: LineageRequest, when: datetime) -> tuple[str, Phases]:
    volume = _need_generation(site, req.operation)
    target = site.target if site.target.snapshot else site.target.with_snapshot(SAFE)
    new = GenName.parse(req.name) if req.name else None
    words = ["branch", str(target), *([str(new)] if new else []), *_origin_words(req.origin)]
    source = f"{volume}@{target.snapshot}"
    return shlex.join(words), branch_op(site.backend, source, new, req.origin, when)


def _one_generation(site: LineageSite, req: LineageRequest, when: datetime) -> tuple[str, Phases]:
    volume = _need_generation(site, req.operation)
    words = [str(req.operation), str(site.target)]
    if req.operation is Operation.seal:
        return shlex.join(words), seal_op(site.backend, volume, when)
    if req.operation is Operation.rollback:
        words += _words("--destroy-newer", req.destroy_newer)
        ops = rollback_op(site.backend, volume, site.target.snapshot,
                          destroy_newer=req.destroy_newer)  # fmt: skip
        return shlex.join(words), ops
    if req.operation is Operation.promote:
        return shlex.join(words), promote_op(site.backend, volume)
    return shlex.join(words), set_state_op(site.backend, volume, GenState.retired)


def _prune(site: LineageSite, req: LineageRequest, when: datetime) -> tuple[str, Phases]:
    words = ["prune", str(site.target), *prune_words(req.policy, req.protect)]
    protect = sorted(set(req.protect))
    return shlex.join(words), prune_op(site.backend, req.policy, protect)


_Builder = Callable[[LineageSite, LineageRequest, datetime], tuple[str, Phases]]
_BUILDERS: dict[Operation, _Builder] = {
    Operation.create: _create,
    Operation.branch: _branch,
    Operation.seal: _one_generation,
    Operation.rollback: _one_generation,
    Operation.promote: _one_generation,
    Operation.retire: _one_generation,
    Operation.prune: _prune,
}


def plan_request(site: LineageSite, req: LineageRequest, when: datetime) -> tuple[str, Phases]:
    """(intent, phases) of ``req`` on ``site``; nothing changes until a writer runs them."""
    return _BUILDERS[req.operation](site, req, when)


# --- scheduled snapshots ---------------------------------------------------------------------


def snapshot_intent(site: LineageSite) -> str:
    return shlex.join(["snapshot", str(site.target)])


def snapshot_op(backend: Backend, volume: str | None, when: datetime) -> Phases:
    """An unsealed ``<gen>-<stamp>`` snapshot of ``volume``'s generation, or of every
    building or sealed generation of the lineage when ``volume`` is None."""

    def make(lineage: Lineage) -> Plan:
        if volume is not None:
            chosen = [lineage.generation(volume)]
        else:
            chosen = [g for g in lineage.generations if g.state in SNAPSHOT_STATES]
        plans = []
        for gen in chosen:
            if gen.gen is None or gen.volume is None:
                what = "is not a generation" if gen.gen is None else "has no volume any more"
                raise LineageError(f"cannot snapshot {gen.key}: it {what}")
            name = lineage.new_snapshot_name(gen.gen, when)
            plans.append(
                backend.snapshot_plan([gen.volume.name], name, {str(Meta.gen): str(gen.gen)})
            )
        steps = tuple(step for plan in plans for step in plan.steps)
        return Plan(f"snapshot {lineage.root}", steps)

    return lambda lineage: [Phase("snapshot the generations", make)]
