"""Tasks of the deploy and update flows: thin wrappers over ``g2d.rootfs`` and the lineage.

Steps that work inside the new root are not retried: a failed extraction, emerge or
useradd fails the same way again (emerge resumes by itself when the *flow run* is retried).
Lineage changes (create, record, seal, mark failed) go through ``apply_lineage``: the pool's
concurrency limit and lock, the journal, transient retries. The limit is held only for those
changes, not while a root is being built: a long emerge in one generation must not keep the
hourly snapshots of the pool waiting, and no other writer touches a generation in
``building`` that a flow run made.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from g2d.core.deploy_steps import DeployStep
from g2d.core.lineage import GenName, GenState, Origin
from g2d.rootfs.deploy_work import DeployInputs, DeployOptions, StepResult, preflight, run_step
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.storage.generation_meta import meta_op
from g2d.storage.lineage import create_op, seal_op, set_state_op
from g2d.storage.lineage_site import LineageSite
from g2d.storage.new_generation import generation_target
from g2d.tasks.lineage import apply_lineage


@task(cache_policy=NO_CACHE, task_run_name="check the inputs of {profile}")
def check_inputs(
    dom0: Dom0Tree, profile: str, release_keys: Sequence[Path], options: DeployOptions,
    scratch: Path,
) -> DeployInputs:  # fmt: skip
    """Profile, atoms, stage3 (verified), kernel, keys, users: all before anything is made."""
    return preflight(dom0, profile, release_keys, options, scratch=scratch)


@task(cache_policy=NO_CACHE, task_run_name="{step}")
def deploy_step(step: DeployStep, inputs: DeployInputs, root: Path, logs: Path) -> StepResult:
    return run_step(step, inputs, root, logs)


def create_generation(
    site: LineageSite, name: GenName, origin: Origin, meta: Mapping[str, str], wait: float
) -> str:
    """A new generation in state building, with its origin and ``meta``, in one change."""
    volume = f"{site.root.rstrip('/')}/{name}"
    words = ["create", str(generation_target(site, volume))]
    words += [f"--{k}={v}" for k, v in (("stage3", origin.stage3), ("profile", origin.profile),
              ("kernel", origin.kernel), ("flow-run", origin.flow_run)) if v]  # fmt: skip
    apply_lineage(site, shlex.join(words), create_op(site.backend, name, origin, _now(), meta),
                  wait)  # fmt: skip
    return volume


def record(site: LineageSite, volume: str, items: Mapping[str, str], wait: float) -> None:
    """``g2d:*`` keys on the generation."""
    intent = shlex.join(["record", str(generation_target(site, volume)), *sorted(items)])
    apply_lineage(site, intent, meta_op(site.backend, volume, items), wait)


def mark_state(site: LineageSite, volume: str, state: GenState, wait: float) -> None:
    verb = {GenState.failed: "fail", GenState.building: "build"}.get(state, str(state))
    intent = shlex.join([verb, str(generation_target(site, volume))])
    apply_lineage(site, intent, set_state_op(site.backend, volume, state), wait)


def seal_generation(
    site: LineageSite, volume: str, wait: float, meta: Mapping[str, str] | None = None
) -> str:
    """``g2d lineage seal``: a sealed snapshot (the new ``@safe``); its name. ``meta``: the
    flow's last record, set on the generation by the same operation (a pool write fewer:
    seconds on a busy pool)."""
    target = generation_target(site, volume)
    apply_lineage(site, shlex.join(["seal", str(target)]),
                  seal_op(site.backend, volume, _now(), meta), wait)  # fmt: skip
    newest = site.load().generation(volume).newest_sealed
    return str(newest.ref) if newest else ""


def _now() -> datetime:
    return datetime.now(UTC)
