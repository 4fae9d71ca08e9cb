"""``snapshot``: scheduled snapshots of a lineage's generations, then retention.

Takes an unsealed ``<gen>-<stamp>`` snapshot of the generation the target names, or of
every building or sealed generation when it names the lineage root; then prunes by the
retention policy (``g2d.core.retention``: never what a kept generation, a clone's origin or
a protected boot entry needs); then publishes the lineage tree and what retention decided
as the lineage's markdown artifact. Deployed as ``snapshot/hourly``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.core.retention import RetentionPolicy, prune_selection
from g2d.storage.lineage_requests import (
    LineageRequest,
    Operation,
    plan_request,
    snapshot_intent,
    snapshot_op,
)
from g2d.storage.lineage_site import open_site
from g2d.tasks.artifacts import Progress, artifact_key, markdown_table, publish_lineage_tree
from g2d.tasks.lineage import apply_lineage


@flow(name="snapshot", flow_run_name="snapshot {target}")
def snapshot(
    target: str,
    keep_sealed: int = 3,
    keep_unsealed: int | None = 24,
    protect: list[str] | None = None,
    prune: bool = True,
    drop_retired: bool = True,
    drop_failed: bool = False,
    prune_building: bool = False,
    wait: float = 600.0,
) -> dict[str, list[str]]:
    """Snapshot ``target``'s generations, prune by the policy, publish the tree.

    ``keep_unsealed`` scheduled snapshots and ``keep_sealed`` sealed ones stay per
    generation; ``protect`` names what is never destroyed (boot entries, replica bases).
    ``wait``: seconds to wait for another writer to the pool."""
    site = open_site(target)
    policy = RetentionPolicy(keep_sealed, keep_unsealed, drop_retired, drop_failed, prune_building)
    key = artifact_key("snapshot", site.host_name, site.root)
    progress = Progress.start(3 if prune else 2, key=key, description=f"snapshot {target}")
    before = {str(s.ref) for s in site.load().snapshots}
    when = datetime.now(UTC)
    apply_lineage(site, snapshot_intent(site), snapshot_op(site.backend, site.generation, when),
                  wait)  # fmt: skip
    progress.advance()
    taken = sorted({str(s.ref) for s in site.load().snapshots} - before)
    destroyed: list[str] = []
    more = f"Snapshots taken: {', '.join(taken) or 'none'}\n"
    if prune:
        request = LineageRequest(Operation.prune, target, policy=policy,
                                 protect=tuple(protect or ()))  # fmt: skip
        selection = prune_selection(site.load(), policy, request.protect)
        intent, phases = plan_request(site, request, when)
        apply_lineage(site, intent, phases, wait)
        progress.advance()
        destroyed = [str(i) for i in selection.destroy]
        rows = [{"item": str(i), "retention": "destroy", "why": selection.reasons[str(i)]}
                for i in selection.destroy]  # fmt: skip
        rows += [{"item": str(i), "retention": "keep", "why": selection.reasons[str(i)]}
                 for i in selection.keep]  # fmt: skip
        more += f"\n## Retention: `{intent}`\n\n" + markdown_table(rows)
    publish_lineage_tree(site.load(), site.host_name, more=more,
                         description=f"after snapshot {target}")  # fmt: skip
    progress.advance()
    return {"taken": taken, "destroyed": destroyed}
