"""A runtime generation on the new disk: a writable clone of the installed sealed one,
configured as it was, and the boot default; the sealed one stays beside it as the fallback.

Made inside the disk side's boot hook, while the new pool (or file system) is still there:
the clone is a lineage ``branch`` on the target (its metadata records the parent, as any
branch does), then it gets the same fstab, hostname, hostid, kernel modules and ``g2d:*``
records, ``bootfs`` on ZFS, and is checked read-only; then the installed generation is
mounted again for the disk side to finish, and the boot side writes the entries.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from g2d.core.errors import CommandFailed
from g2d.core.lineage import GenName, Origin, utc_stamp
from g2d.core.plan import Plan, Step
from g2d.core.uri import FsKind
from g2d.hosts.local import LocalHost
from g2d.install import configure as cfg
from g2d.install.boot import install_modules_plan
from g2d.install.boot_wiring import BootHook
from g2d.install.configure import InstallFacts, VerifyFailed
from g2d.install.data import target_backend
from g2d.install.plan import InstallPlan
from g2d.storage.apply import apply_plan
from g2d.storage.lineage import branch_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import pool_of

log = logging.getLogger("g2d.install")
_BUSY_SECONDS = 60.0  # zfs-fuse calls a dataset busy for a while after a write


def _apply(plan: Plan) -> None:
    """Apply; a step refused because a dataset is still busy is tried again (zfs-fuse)."""
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            apply_plan(plan, {"local": LocalHost()})
            return
        except CommandFailed as e:
            if "is busy" not in e.tail or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_unmounted(path: str) -> None:
    """zfs-fuse returns from ``zfs unmount`` before the mount is gone; a dataset mounted at
    the same place meanwhile would be the one that goes."""
    deadline = time.monotonic() + _BUSY_SECONDS
    while LocalHost().run(["findmnt", "--mountpoint", path], check=False).ok:
        if time.monotonic() > deadline:
            argv = ["findmnt", "--mountpoint", path]
            why = f"{path} is still mounted {_BUSY_SECONDS:g} s after unmount"
            raise CommandFailed("local", argv, 0, why)
        time.sleep(0.1)


def _unmount(ds: str, path: str) -> None:
    _apply(Plan.of(f"unmount {ds}", [Step.run("local", ["zfs", "unmount", ds], f"unmount {ds}")]))
    _wait_unmounted(path)


def runtime_facts(facts: InstallFacts, name: str) -> InstallFacts:
    """The facts of generation ``name`` beside the installed one."""
    if facts.fs is FsKind.zfs:
        return replace(facts, dataset=posixpath.join(posixpath.dirname(str(facts.dataset)), name))
    tree = posixpath.join(posixpath.dirname(facts.tree), name)
    subdir = posixpath.join(posixpath.dirname(str(facts.root_subdir)), name)
    return replace(facts, tree=tree, root_subdir=subdir)


@dataclass
class RuntimeHook:
    """``boot_hook`` that makes the runtime generation ``name``, then runs ``boot``."""

    plan: InstallPlan
    name: str
    boot: BootHook
    facts: InstallFacts | None = None  # the runtime generation's, once made

    def __call__(self, facts: InstallFacts) -> None:
        self.facts = make_runtime(self.plan, facts, self.name, self.boot.request.kernel_dir)
        self.boot(facts)


def make_runtime(plan: InstallPlan, facts: InstallFacts, name: str, kernel_dir: Path
                 ) -> InstallFacts:  # fmt: skip
    zfs = facts.fs is FsKind.zfs
    installed = str(facts.dataset) if zfs else facts.tree
    root = posixpath.dirname(installed)
    backend = target_backend(plan.kind, LocalHost(), facts.top)
    if zfs:  # both boot as /: the installed one makes room under the altroot
        _unmount(installed, facts.tree)
    state_dir = plan.journal.parent.parent
    writer = LineageWriter(backend, root, pool_of(backend, root), state_dir)
    source = f"{installed}@{plan.source.ref.name}"
    now = datetime.now(UTC)
    writer.run(f"branch {source} {name}",
               branch_op(backend, source, GenName.parse(name), Origin(), now))  # fmt: skip
    mine = runtime_facts(facts, name)
    hostname = plan.options.hostname
    _apply(cfg.configure_plan(mine, plan.boot, hostname))
    _apply(install_modules_plan(Path(mine.tree), kernel_dir))
    record = {"g2d:installed": utc_stamp(now), "g2d:installed-from": f"{plan.source}",
              "g2d:runtime-of": source}  # fmt: skip
    _apply(cfg.record_target_plan(mine, record))
    if zfs:
        ds = str(mine.dataset)
        _unmount(ds, mine.tree)
        _apply(Plan.of("read-only", [Step.run("local", ["zfs", "mount", "-o", "ro", ds],
                                               f"mount {ds} read-only")]))  # fmt: skip
        cfg.verify(LocalHost(), mine, plan.boot, hostname)
        _unmount(ds, mine.tree)
        _apply(Plan.of("back to the installed generation", [
            Step.run("local", ["zfs", "mount", installed], f"mount {installed} again"),
        ]))  # fmt: skip
    else:  # btrfs: the top stays mounted read-write; the files must say what was written
        fstab = Path(mine.tree, "etc/fstab").read_text()
        if fstab != cfg.fstab_text(mine, plan.boot):
            raise VerifyFailed(f"{mine.tree}/etc/fstab does not hold what was written: {fstab!r}")
    log.info("runtime generation %s made from %s", name, source)
    return mine
