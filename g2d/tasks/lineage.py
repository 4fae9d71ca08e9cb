"""Tasks that run lineage operations: under the pool's concurrency limit, with retries.

``apply_lineage`` holds ``pool:<host>:<pool>`` (``pool_writer``) and runs the operation
through ``LineageWriter`` (which adds g2d's own flock and the journal). A failed command is
retried; the retry finds the journal and finishes the same operation, never a second one.
``preview_lineage`` plans without changing anything (a dry run) and takes no lock.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from g2d.storage.lineage_run import Outcome, Phases
from g2d.storage.lineage_site import LineageSite
from g2d.tasks.pool import pool_writer
from g2d.tasks.retry import transient_retries


@task(cache_policy=NO_CACHE, task_run_name="{intent}", **transient_retries())
def apply_lineage(
    site: LineageSite, intent: str, phases: Phases, wait: float | None = None
) -> Outcome:
    """Run ``phases`` as ``intent``; wait at most ``wait`` seconds for another writer."""
    with pool_writer(site.host_name, site.pool, wait=wait):
        # the flock below the limit: a writer started without Prefect may still hold it
        flock_wait = float("inf") if wait is None else wait
        return site.writer(flock_wait).run(intent, phases)


@task(cache_policy=NO_CACHE, task_run_name="plan {intent}")
def preview_lineage(site: LineageSite, intent: str, phases: Phases) -> Outcome:
    """What ``apply_lineage`` would run; nothing changes."""
    return site.writer().preview(intent, phases)


def render_outcome(intent: str, outcome: Outcome, *, dry_run: bool) -> str:
    """The plans as ``g2d lineage`` prints them, in a markdown code block."""
    lines: list[str] = []
    if outcome.resumed:
        verb = "would be finished" if dry_run else "was finished"
        lines.append(f"an interrupted `g2d lineage {intent}` {verb}:")
    ran = outcome.ran if not dry_run else ((),) * len(outcome.plans)
    for plan, steps in zip(outcome.plans, ran, strict=True):
        lines.append(plan.render())
        skipped = len(plan.steps) - len(steps)
        if not dry_run and skipped:
            lines.append(f"  ({skipped} step(s) were done already and skipped)")
    if outcome.done:
        lines.append(f"  (steps {', '.join(str(i + 1) for i in outcome.done)} are done already)")
    lines += [f"  then: {why} (planned once the steps above have run)" for why in outcome.later]
    if dry_run:
        lines.append("dry run: nothing changed")
    return "```\n" + "\n".join(lines) + "\n```\n"
