"""``update``: one generation brought up to the dom0's packages and kernel, or left as it was.

A snapshot first, inside a Prefect transaction whose rollback goes back to it; then the
site's package sets rendered again into /etc/portage (the profile recorded at deploy,
``g2d:site-profile``), ``emerge -uDN @world`` from the binhost, the current kernel, and the
boot partition when ``bootpart`` is given. Any failure rolls the generation back to the
snapshot; success seals it (a new ``@safe``). Deployed as ``update/local``. docs/deploy.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.transactions import transaction

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.core.deploy_steps import SITE_PROFILE_KEY
from g2d.core.lineage import GenState, LineageError
from g2d.rootfs.deploy_report import StepRow, render_report
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.rootfs.emerge import EmergeFailed
from g2d.rootfs.portage_files import load_package_tree
from g2d.settings import load_settings
from g2d.storage.lineage_site import open_site
from g2d.tasks.artifacts import artifact_key, publish_lineage_tree
from g2d.tasks.deploy import seal_generation
from g2d.tasks.update import render_portage, snapshot_before, update_boot, update_packages

UPDATABLE = (GenState.building, GenState.sealed)


@flow(name="update", flow_run_name="update {work}")
def update(
    work: str,
    bootpart: str | None = None,
    exclude: list[str] | None = None,
    emerge_timeout: float | None = None,
    dom0_root: str | None = None,
    wait: float = 600.0,
) -> dict[str, object]:
    """Update the generation ``work`` names (``zfs://tank/sys/g2``); ``bootpart``: the
    boot partition (or its mount point) to put the new kernel on; ``exclude``: atoms
    the update leaves alone."""
    settings = load_settings()
    dom0 = Dom0Tree(Path(dom0_root) if dom0_root else settings.dom0_root)
    site = open_site(work)
    if site.generation is None:
        raise LineageError(f"update needs a generation, and {site.target} is a lineage root",
                           hint=f"name one of its generations: {site.target}/g1")  # fmt: skip
    volume = site.generation
    tree = site.load()
    gen = tree.generation(volume)
    if gen.state not in UPDATABLE:
        raise LineageError(f"cannot update {volume}: it is {gen.state}",
                           hint="deploy a new generation instead")  # fmt: skip
    root = Path(site.backend.mountpoint(volume) or volume)
    logs = settings.state_dir / "logs" / "update" / str(flow_run.id)
    # a branch starts without the deploy's keys (branch_op): then the stem is its parent's
    parent = tree.parent(gen)
    stem = gen.meta.get(SITE_PROFILE_KEY) or (
        tree.owner(parent).meta.get(SITE_PROFILE_KEY) if parent else None
    )
    pset = load_package_tree(dom0.packages).select(stem) if stem else None
    rows: list[StepRow] = []
    emerges = []
    try:
        with transaction():
            snap = snapshot_before(site, volume, wait)
            rows.append(StepRow("snapshot", "ok", 0.0, snap))
            if pset is not None:
                count = render_portage(root, pset, f"-j{os.cpu_count() or 1}")
                rows.append(StepRow("portage", "ok", 0.0, f"{count} files from {pset.stem}"))
            try:
                result = update_packages(root, dom0, logs, tuple(exclude or ()), emerge_timeout)
            except EmergeFailed as e:
                emerges.append(e.result)
                rows.append(StepRow("emerge", "**failed**", e.result.seconds, str(e)))
                raise
            emerges.append(result.emerge)
            kernel = result.kernel.version if result.kernel else ""
            merged = f"{len(result.emerge.merged)} merged; kernel {kernel}"
            rows.append(StepRow("emerge", "ok", result.emerge.seconds, merged))
            if bootpart:
                boot = update_boot(bootpart, dom0, kernel)
                rows.append(StepRow("boot", "ok", 0.0, ", ".join(boot.copied)))
    except BaseException as e:
        _publish(site.host_name, volume, rows, emerges,
                 f"failed, rolled back to the snapshot taken first: {e}")  # fmt: skip
        raise
    kept = {SITE_PROFILE_KEY: stem} if stem else {}  # so a branch of this one finds it too
    sealed = seal_generation(site, volume, wait, {**result.metadata(), **kept})
    _publish(site.host_name, volume, rows, emerges, f"sealed: {sealed}")
    publish_lineage_tree(site.load(), site.host_name, description=f"after update of {volume}")
    return {"generation": volume, "snapshot": snap, "sealed": sealed,
            "merged": [m.cpv for m in result.emerge.merged], "kernel": kernel}  # fmt: skip


def _publish(host: str, volume: str, rows: list[StepRow], emerges: list, outcome: str) -> None:  # type: ignore[type-arg]
    text = render_report(f"update {volume}", [], rows, emerges, outcome)
    create_markdown_artifact(text, key=artifact_key("update", host, volume), description=outcome)
