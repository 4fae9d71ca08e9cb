"""Record what a flow did on a generation: ``g2d:*`` keys set as a lineage operation.

Deploy and update write their progress and results (``g2d:deploy-done``, ``g2d:emerge-*``,
``g2d:kernel``...) through the same writer as every lineage change, so it takes the pool's
lock and journal like the rest. ``find_made_by`` finds the generation a flow run created,
for a retried run to resume it.
"""

from __future__ import annotations

from collections.abc import Mapping

from g2d.core.lineage import Generation, Lineage, LineageError, Meta
from g2d.core.plan import Plan
from g2d.storage.base import Backend
from g2d.storage.lineage_run import Phase, Phases


def meta_op(backend: Backend, volume: str, items: Mapping[str, str]) -> Phases:
    """Set ``items`` on ``volume`` (a generation of the lineage)."""
    values = {k: v for k, v in items.items() if v}  # empty values cannot be ZFS properties

    def make(lineage: Lineage) -> Plan:
        gen = lineage.generation(volume)
        if gen.volume is None:
            raise LineageError(f"cannot record metadata on {volume}: it has no volume")
        current = gen.volume.meta
        changed = {k: v for k, v in values.items() if current.get(k) != v}
        if not changed:
            return Plan(f"metadata of {volume} is already recorded")
        return backend.set_meta_plan(volume, changed)

    return lambda lineage: [Phase(f"record metadata on {volume}", make)]


def find_made_by(lineage: Lineage, flow_run: str) -> Generation | None:
    """The generation whose ``g2d:flow-run`` is ``flow_run`` (a retried run's own), if any."""
    for gen in lineage.generations:
        if gen.volume is not None and gen.volume.meta.get(Meta.flow_run) == flow_run:
            return gen
    return None
