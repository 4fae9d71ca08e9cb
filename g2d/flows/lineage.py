"""``lineage``: one lineage operation by name, with a dry run, publishing the tree after.

``operation`` is one of ``g2d.storage.lineage_requests.Operation`` (create, branch, seal,
rollback, promote, retire, prune; replicate joins them with ``g2d/storage/replicate.py``).
The options mean what the same options of ``g2d lineage <operation>`` mean, and the run
uses the same intent, lock and journal, so either finishes what the other left. The plan
(or, for a dry run, the plan that would run) is a markdown artifact; the lineage tree is
published after every run. Deployed as ``lineage/local``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.core.lineage import Origin
from g2d.core.retention import RetentionPolicy
from g2d.storage.lineage_requests import LineageRequest, Operation, plan_request
from g2d.storage.lineage_site import open_site
from g2d.tasks.artifacts import artifact_key, publish_lineage_tree
from g2d.tasks.lineage import apply_lineage, preview_lineage, render_outcome


@flow(name="lineage", flow_run_name="lineage {operation} {target}")
def lineage(
    operation: Operation,
    target: str,
    name: str | None = None,
    destroy_newer: bool = False,
    keep: int = 3,
    keep_unsealed: int | None = None,
    protect: list[str] | None = None,
    failed: bool = False,
    building: bool = False,
    keep_retired: bool = False,
    stage3: str | None = None,
    profile: str | None = None,
    kernel: str | None = None,
    dry_run: bool = False,
    wait: float = 600.0,
) -> dict[str, object]:
    """Run ``operation`` on ``target`` (``dry_run``: publish the plan, change nothing).

    create/branch: ``name`` (default the next gN), ``stage3``/``profile``/``kernel``
    recorded with this flow run's id; rollback: ``destroy_newer``; prune: ``keep``,
    ``keep_unsealed``, ``protect``, ``failed``, ``building``, ``keep_retired``.
    ``wait``: seconds to wait for another writer to the pool."""
    site = open_site(target)
    operation = Operation(operation)
    made_by = flow_run.id if operation in (Operation.create, Operation.branch) else None
    request = LineageRequest(
        operation, target, name=name, destroy_newer=destroy_newer,
        policy=RetentionPolicy(keep, keep_unsealed, not keep_retired, failed, building),
        protect=tuple(protect or ()), origin=Origin(stage3, profile, kernel, made_by),
    )  # fmt: skip
    intent, phases = plan_request(site, request, datetime.now(UTC))
    if dry_run:
        outcome = preview_lineage(site, intent, phases)
    else:
        outcome = apply_lineage(site, intent, phases, wait)
    create_markdown_artifact(
        f"## {'Plan' if dry_run else 'Ran'}: `g2d lineage {intent}`\n\n"
        + render_outcome(intent, outcome, dry_run=dry_run),
        key=artifact_key("plan", site.host_name, site.root),
        description=f"lineage {intent}" + (" (dry run)" if dry_run else ""),
    )
    publish_lineage_tree(site.load(), site.host_name, description=f"after lineage {intent}")
    return {"intent": intent, "dry_run": dry_run,
            "plans": [plan.render() for plan in outcome.plans]}  # fmt: skip
