"""Record what a flow did on a generation: ``g2d:*`` keys set as a lineage operation.

Deploy and update write their progress and results (``g2d:deploy-done``, ``g2d:emerge-*``,
``g2d:kernel``...) through the same writer as every lineage change, so it takes the pool's
lock and journal like the rest. ``find_made_by`` finds the generation a flow run created,
for a retried run to resume it.
"""

from __future__ import annotations

from collections.abc import Mapping

from g2d.core.lineage import Generation, Lineage, Meta
from g2d.storage.base import Backend
from g2d.storage.lineage import record_plan
from g2d.storage.lineage_run import Phase, Phases


def meta_op(backend: Backend, volume: str, items: Mapping[str, str]) -> Phases:
    """Set ``items`` on ``volume`` (a generation of the lineage)."""
    items = dict(items)
    make = lambda lineage: record_plan(backend, lineage, volume, items)  # noqa: E731
    return lambda lineage: [Phase(f"record metadata on {volume}", make)]


def find_made_by(lineage: Lineage, flow_run: str) -> Generation | None:
    """The generation whose ``g2d:flow-run`` is ``flow_run`` (a retried run's own), if any."""
    for gen in lineage.generations:
        if gen.volume is not None and gen.volume.meta.get(Meta.flow_run) == flow_run:
            return gen
    return None
