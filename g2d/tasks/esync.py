"""The esync task: one part of the dom0 tree, retried only when the bytes did not arrive.

A part whose every mirror failed with a transfer error (``AllMirrorsFailed``, a
``TransferError``) is tried again after a backoff; a verification failure, a mirror list
that names nothing usable, or a bad setting fails the task at once. NO_CACHE: a second
esync in the same run must sync again, never be skipped as cached.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from g2d.sources.esync_parts import EsyncSetup, Part, PartOutcome, sync_part, sync_stage3
from g2d.tasks.retry import transient_retries


@task(cache_policy=NO_CACHE, task_run_name="esync {part}", **transient_retries())
def sync_part_task(setup: EsyncSetup, part: Part) -> PartOutcome:
    return sync_part(setup, part)


@task(cache_policy=NO_CACHE, task_run_name="stage3 {arch} {variant}", **transient_retries())
def sync_stage3_task(setup: EsyncSetup, arch: str, variant: str, keep: int) -> PartOutcome:
    return sync_stage3(setup, arch, variant, keep)
