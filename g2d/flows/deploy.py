"""``deploy``: a new generation built from the dom0's stage3, package sets and binhost.

Every input is checked before anything is made (``check_inputs``). Then a new generation
(ZFS dataset, btrfs subvolume or directory, by the target) is created in state
``building`` with its origin (stage3, profile, kernel, this flow run), the steps of
``g2d.core.deploy_steps`` run in it, the long ones recorded in ``g2d:deploy-done`` as they
finish, and only when all passed is it sealed (``@safe``), the last record with the seal.
A failed step marks it ``failed`` and keeps it for inspection (``g2d lineage prune --failed``
removes it). A retried flow run finds the generation it made and goes on after its last
recorded step. An existing generation is never touched. Deployed as ``deploy/local``.
docs/deploy.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.core.deploy_steps import DONE_KEY, SITE_PROFILE_KEY, parse_done, remaining, render_done
from g2d.core.lineage import GenName, GenState, Meta, Origin
from g2d.rootfs.deploy_report import StepRow, render_report
from g2d.rootfs.deploy_work import DeployOptions
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.rootfs.emerge import EmergeFailed
from g2d.settings import load_settings
from g2d.storage.generation_meta import find_made_by
from g2d.storage.lineage_site import open_site
from g2d.storage.new_generation import check_new_generation
from g2d.tasks.artifacts import artifact_key, publish_lineage_tree
from g2d.tasks.deploy import (
    check_inputs,
    create_generation,
    deploy_step,
    mark_state,
    record,
    seal_generation,
)


@flow(name="deploy", flow_run_name="deploy {build} to {work}")
def deploy(
    build: str,
    work: str,
    timezone: str = "UTC",
    locales: list[str] | None = None,
    jobs: int = 1,
    emerge_timeout: float | None = None,
    release_keys: list[str] | None = None,
    dom0_root: str | None = None,
    wait: float = 600.0,
) -> dict[str, object]:
    """Deploy profile ``build`` (``plasma``, ``23.0/openrc``...) as a new generation of
    ``work`` (``zfs://tank/sys``, ``/srv/sys``, or a new ``.../gN``).

    ``release_keys``: key files verifying the stage3 (default: settings' [esync]
    release_keys); ``dom0_root``: default the settings' dom0_root; ``emerge_timeout``:
    seconds before emerge is killed; ``wait``: seconds to wait for another pool writer."""
    settings = load_settings()
    dom0 = Dom0Tree(Path(dom0_root) if dom0_root else settings.dom0_root)
    keys = [Path(k) for k in release_keys] if release_keys else list(_release_keys(settings))
    options = DeployOptions(timezone=timezone, locales=tuple(locales or ("en_US.UTF-8",)),
                            jobs=jobs, emerge_timeout=emerge_timeout)  # fmt: skip
    site = open_site(work)
    run_id = str(flow_run.id)
    mine = find_made_by(site.load(), run_id)  # a retried run: go on with its generation
    if mine is None:
        name, volume = check_new_generation(site)
    with tempfile.TemporaryDirectory(prefix="g2d-deploy-") as scratch:
        inputs = check_inputs(dom0, build, keys, options, Path(scratch))
    stage3 = inputs.stage3.stage3
    if mine is None:
        origin = Origin(stage3.path.name, inputs.system_profile, inputs.kernel, run_id)
        volume = create_generation(site, name, origin, {SITE_PROFILE_KEY: inputs.profile}, wait)
        done: tuple = ()
    else:
        volume = mine.volume.name  # type: ignore[union-attr]
        name = mine.gen or GenName.parse(volume.rpartition("/")[2])
        done = parse_done(mine.meta.get(DONE_KEY))
        if mine.state is not GenState.building:
            mark_state(site, volume, GenState.building, wait)
    root = Path(site.backend.mountpoint(volume) or volume)
    logs = settings.state_dir / "logs" / "deploy" / run_id
    rows = [StepRow(str(s), "skipped (done before)", 0.0, "") for s in done]
    emerges = []
    found: dict[str, str] = {}  # metadata of the steps since the last record
    facts = [f"generation: {volume} ({site.backend.kind})", *inputs.plan_lines()]
    try:
        for step in remaining(done):
            started = time.monotonic()
            try:
                result = deploy_step(step, inputs, root, logs)
            except EmergeFailed as e:
                emerges.append(e.result)
                rows.append(StepRow(str(step), "**failed**", time.monotonic() - started, str(e)))
                raise
            except Exception as e:
                rows.append(StepRow(str(step), "**failed**", time.monotonic() - started, str(e)))
                raise
            rows.append(StepRow(str(step), "ok", time.monotonic() - started, result.summary))
            if hasattr(result.detail, "markdown"):
                emerges.append(result.detail)
            done = (*done, step)
            found = {**found, **result.metadata}
            if step.is_checkpoint() and remaining(done):
                record(site, volume, {DONE_KEY: render_done(done), **found}, wait)
                found = {}
        sealed = seal_generation(site, volume, wait, {DONE_KEY: render_done(done), **found})
    except BaseException:
        mark_state(site, volume, GenState.failed, wait)
        _publish(site, volume, inputs.profile, facts, rows, emerges,
                 f"failed: {volume} is marked failed and kept; logs in {logs}")  # fmt: skip
        raise
    _publish(site, volume, inputs.profile, facts, rows, emerges, f"sealed: {sealed}")
    gen = site.load().generation(volume)
    return {"generation": volume, "sealed": sealed, "state": str(gen.state),
            "meta": {k: v for k, v in gen.meta.items() if k.startswith("g2d:")},
            "steps": [r.step for r in rows], "logs": str(logs),
            "stage3": stage3.path.name, "kernel": gen.meta.get(Meta.kernel, "")}  # fmt: skip


def _publish(site, volume, profile, facts, rows, emerges, outcome) -> None:
    text = render_report(f"deploy {profile} to {volume}", facts, rows, emerges, outcome)
    create_markdown_artifact(text, key=artifact_key("deploy", site.host_name, volume),
                             description=outcome)  # fmt: skip
    publish_lineage_tree(site.load(), site.host_name, description=f"after deploy to {volume}")


def _release_keys(settings: object) -> tuple[Path, ...]:
    esync = getattr(settings, "esync", None)  # the [esync] table verifies what is fetched
    return tuple(getattr(esync, "release_keys", ()) or ())
