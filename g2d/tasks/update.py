"""Tasks of the update flow: the snapshot whose rollback hook undoes a failed update.

``snapshot_before`` takes an unsealed ``<gen>-<stamp>`` snapshot of the generation and
registers, through Prefect's transaction, a rollback to it: any task of the flow's
transaction that fails after it (emerge, the kernel, the boot partition) rolls the
generation back to exactly what it was. The hook is idempotent (a rollback to the snapshot
twice leaves the same state) and runs only in a live process: after SIGKILL the snapshot
stays, and ``g2d lineage rollback <gen>@<snapshot>`` does by hand what the hook would have.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.transactions import Transaction, get_transaction

from g2d.core.package_sets import PackageSet
from g2d.rootfs.boot_refresh import BootRefresh, refresh_boot
from g2d.rootfs.dom0_tree import Dom0Tree
from g2d.rootfs.kernel import current_kernel
from g2d.rootfs.portage_files import write_portage_files
from g2d.rootfs.update import UpdateResult, update_root
from g2d.storage.lineage import rollback_op
from g2d.storage.lineage_requests import snapshot_op
from g2d.storage.lineage_site import LineageSite
from g2d.storage.new_generation import generation_target
from g2d.tasks.lineage import apply_lineage
from g2d.tasks.pool import pool_writer

log = logging.getLogger("g2d.tasks.update")


@task(cache_policy=NO_CACHE, task_run_name="snapshot {volume} before the update")
def snapshot_before(site: LineageSite, volume: str, wait: float) -> str:
    """The snapshot the update can go back to; its ``vol@snap``."""
    before = {str(s.ref) for s in site.load().generation(volume).snapshots}
    target = generation_target(site, volume)
    apply_lineage.fn(site, shlex.join(["snapshot", str(target)]),
                     snapshot_op(site.backend, volume, datetime.now(UTC)), wait)  # fmt: skip
    taken = sorted({str(s.ref) for s in site.load().generation(volume).snapshots} - before)
    if len(taken) != 1:
        raise RuntimeError(f"expected one new snapshot of {volume}, found {taken}")
    txn = get_transaction()
    if txn is not None:
        txn.set("site", site)
        txn.set("snapshot", taken[0])
        txn.set("wait", wait)
    return taken[0]


@snapshot_before.on_rollback
def _roll_back(txn: Transaction) -> None:
    site: LineageSite = txn.get("site")
    ref: str = txn.get("snapshot")
    volume, _, snap = ref.partition("@")
    target = generation_target(site, volume).with_snapshot(snap)
    log.warning("update failed: rolling %s back to %s", volume, ref)
    with pool_writer(site.host_name, site.pool, wait=txn.get("wait")):
        site.writer(txn.get("wait")).run(shlex.join(["rollback", str(target)]),
                                         rollback_op(site.backend, volume, snap))  # fmt: skip


@task(cache_policy=NO_CACHE, task_run_name="render the package sets of {package_set.stem}")
def render_portage(root: Path, package_set: PackageSet, makeopts: str) -> int:
    return len(write_portage_files(root, package_set, extra={"MAKEOPTS": makeopts}))


@task(cache_policy=NO_CACHE, task_run_name="emerge -uDN @world in {root}")
def update_packages(
    root: Path, dom0: Dom0Tree, logs: Path, exclude: Sequence[str], timeout: float | None
) -> UpdateResult:
    return update_root(root, sources=dom0.sources(), logs=logs, kernels=dom0.kernels,
                       exclude=exclude, timeout=timeout)  # fmt: skip


@task(cache_policy=NO_CACHE, task_run_name="kernel onto {bootpart}")
def update_boot(bootpart: str, dom0: Dom0Tree, version: str) -> BootRefresh:
    return refresh_boot(bootpart, current_kernel(dom0.kernels, version).directory)
