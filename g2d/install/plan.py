"""The disk side of ``install`` as one plan, shown before anything is written, then applied.

``plan_install`` reads (the source lineage, the disk, the ZFS's features) and returns an
``InstallPlan``: its parts, in order, are the disk (wipe, GPT, ESP, file system or pool),
the data (send/receive), configure (fstab, hostname, hostid, bootfs), the boot side's hook,
record (``g2d:*`` on the target), verify (read-only), finish (unmount, export) and record
on the source. ``render()`` is the dry run. ``install_disk`` applies it, only with
``yes=True``.

A journal per disk (``<state_dir>/install/<disk>.json``) keeps the identifiers chosen and
the parts done: a run cut off (a send that broke, a crash) is completed by running the same
install again, which plans the same commands and skips what was finished. The disk checks
are not repeated then: the disk holds what the earlier run wrote.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.lineage import utc_stamp
from g2d.core.partition_plan import DiskIds, DiskLayout, Encryption, ZfsFeatures, partition_plan
from g2d.core.plan import Plan, chained
from g2d.core.replication import Side
from g2d.core.uri import BootTarget, FsKind, Target
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.hosts.together import beside
from g2d.install import configure as cfg
from g2d.install.configure import InstallFacts
from g2d.install.data import (
    Source,
    SourceRefused,
    check_kinds,
    data_steps,
    lineage_size,
    lineage_steps,
    read_source_side,
    receive,
    receive_lineage,
    resolve_source,
    source_size,
    target_backend,
)
from g2d.install.disk_inspect import DiskInfo, DiskRefused, check_disk, inspect_disk
from g2d.storage.apply import apply_plan
from g2d.storage.base import BackendKind
from g2d.storage.lineage import record_plan
from g2d.storage.zfs_busy import waits, while_busy
from g2d.storage.zfs_caps import probe_caps, property_table

log = logging.getLogger("g2d.install")
BootHook = Callable[[InstallFacts], None]
_BUSY_WAITS = waits(60)  # zfs-fuse after a big write: poll often, for up to a minute


class ConsentRequired(G2dUserError):
    """Applying an install needs an explicit yes."""


@dataclass(frozen=True)
class InstallOptions:
    hostname: str = "gentoo"
    esp_mib: int = 512
    bios_boot: bool = False
    esp_mount: str = "/efi"
    label: str = "g2d-root"
    encryption: Encryption | None = None
    work_dir: str | None = None  # default /run/g2d/install/<disk or pool>
    stream_filter: tuple[str, ...] = ()  # a local command the stream passes through (pv -L)
    lineage: bool = False  # zfs/btrfs: the whole lineage, clones as clones (replicate)

    def key(self) -> dict[str, object]:
        """What makes two runs the same install (the stream filter does not)."""
        enc = self.encryption
        return {"hostname": self.hostname, "esp_mib": self.esp_mib, "bios": self.bios_boot,
                "esp_mount": self.esp_mount, "label": self.label, "work_dir": self.work_dir,
                "encryption": [enc.keylocation, enc.keyformat] if enc else None,
                "lineage": self.lineage}  # fmt: skip


@dataclass(frozen=True)
class Part:
    name: str
    plan: Plan


@dataclass(frozen=True)
class InstallPlan:
    boot: BootTarget
    source: Source
    options: InstallOptions
    layout: DiskLayout | None
    facts: InstallFacts
    parts: tuple[Part, ...]
    disk: DiskInfo | None  # None: an existing pool, or a resumed run
    needed: int  # bytes the disk needs
    journal: Path
    ids: DiskIds
    kind: BackendKind  # the receiving backend
    resumed: tuple[str, ...] = field(default=())  # parts an earlier run finished

    @property
    def plan(self) -> Plan:
        steps = tuple(s for p in self.parts for s in p.plan.steps)
        return Plan(f"install {self.source} onto {self.boot.argument}", steps)

    def render(self) -> str:
        lines = [f"plan: install {self.source} onto {self.boot.argument}"]
        if self.disk is not None:
            lines.append(f"  disk {self.disk.device}: {self.disk.size >> 20} MiB, "
                         f"needs {-(-self.needed >> 20)} MiB")  # fmt: skip
        n = 0
        for part in self.parts:
            done = " (done by an earlier run)" if part.name in self.resumed else ""
            lines.append(f"  [{part.name}]{done}")
            if part.name == "boot":
                lines.append("    the boot side writes the ESP and loader entries here")
            for step in part.plan.steps:
                n += 1
                lines.append(f"    {n}. {step}")
        return "\n".join(lines)


def _key(source: Source, boot: BootTarget, options: InstallOptions) -> dict[str, object]:
    return {"source": str(source), "guid": source.info.guid, "boot": str(boot),
            "options": options.key()}  # fmt: skip


def journal_path(state_dir: Path, boot: BootTarget) -> Path:
    name = Path(os.path.realpath(boot.device)).name if boot.device else f"pool-{boot.pool}"
    return state_dir / "install" / f"{name}.json"


def _read_journal(path: Path) -> dict[str, object] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _write_journal(path: Path, data: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _zfs_features(host: Host) -> ZfsFeatures:
    return ZfsFeatures(property_table(host), probe_caps(host).encryption)


def plan_install(
    source_target: Target,
    boot: BootTarget,
    *,
    source_host: Host,
    state_dir: Path,
    options: InstallOptions = InstallOptions(),
    force: bool = False,
    host: Host | None = None,
    now: datetime | None = None,
) -> InstallPlan:
    """Everything the install will run, in order; reads, writes nothing. Refuses an unsealed
    source and a disk in use, holding data (both unless ``force``) or too small."""
    host = host or LocalHost()
    source = resolve_source(source_target, source_host, force=force)
    kind = check_kinds(source, boot.fs)
    if options.lineage and kind is BackendKind.plain:
        raise SourceRefused(f"{source}: a lineage arrives as clones on zfs and btrfs only",
                            hint="install the one snapshot onto ext4 or xfs")  # fmt: skip
    journal = journal_path(state_dir, boot)
    key = _key(source, boot, options)
    earlier = _read_journal(journal)
    resuming = earlier is not None and earlier.get("key") == key and earlier.get("state") != "done"
    ids = DiskIds.from_json(earlier["ids"]) if resuming and earlier else DiskIds.new()  # type: ignore[arg-type]
    top = options.work_dir or f"/run/g2d/install/{journal.stem}"
    features = _zfs_features(host) if boot.fs is FsKind.zfs else None
    layout = None
    if boot.formats_disk:
        layout = DiskLayout(boot, ids, top, options.esp_mib, options.bios_boot, options.label,
                            features, options.encryption)  # fmt: skip
    size = lineage_size(source) if options.lineage else source_size(source)
    needed = layout.size_needed(size) if layout else 0
    disk = None
    if layout is not None and not resuming:
        disk = inspect_disk(host, layout.disk)
        check_disk(disk, needed, force=force)
    elif layout is None and not resuming:
        _check_existing_pool(host, boot)
    hostid = ids.hostid if boot.fs is FsKind.zfs else None
    facts = cfg.facts_for(boot, layout, top, options.esp_mount, hostid, kind)
    if layout is None:  # an existing pool: its datasets mount under a work directory
        facts = replace(facts, tree=top, top=top)
    parts = _parts(source, kind, boot, options, layout, facts, now or datetime.now(UTC))
    done = tuple(str(p) for p in earlier.get("done", [])) if resuming and earlier else ()  # type: ignore[union-attr]
    return InstallPlan(boot, source, options, layout, facts, parts, disk, needed, journal,
                       ids, kind, done)  # fmt: skip


def _check_existing_pool(host: Host, boot: BootTarget) -> None:
    pool, ds = str(boot.pool), str(boot.dataset)
    if not host.run(["zpool", "list", "-H", "-o", "name", pool], check=False).ok:
        raise DiskRefused(f"pool {pool} is not imported on {host.name}",
                          hint="import it first, or name a disk to create it on")  # fmt: skip
    if host.run(["zfs", "list", "-H", "-o", "name", ds], check=False).ok:
        raise DiskRefused(f"{ds} already exists", hint="install under a new generation name")


def _parts(
    source: Source,
    kind: BackendKind,
    boot: BootTarget,
    options: InstallOptions,
    layout: DiskLayout | None,
    facts: InstallFacts,
    now: datetime,
) -> tuple[Part, ...]:
    stamp = utc_stamp(now)
    name = str(boot.dataset) if boot.fs is FsKind.zfs else facts.tree
    parts = []
    if layout is not None:
        parts.append(Part("disk", partition_plan(layout)))
    elif boot.fs is FsKind.zfs:  # an existing pool: mount the new dataset at the work dir
        parts.append(Part("disk", Plan("nothing to partition: an existing pool")))
    if options.lineage:
        dest = target_backend(kind, LocalHost(), facts.top)  # builds argv; runs nothing
        steps = lineage_steps(source, dest, name)
        parts.append(Part("data", Plan.of(f"replicate the lineage of {source}", steps)))
    else:
        data = data_steps(source, kind, name, "local", options.stream_filter)
        parts.append(Part("data", Plan.of(f"send {source}", data)))
    configure = cfg.configure_plan(facts, boot, options.hostname)
    # plain local steps in a row run as one shell: a command and a pool sync less each
    parts.append(Part("configure", Plan.of(configure.title, chained(configure.steps))))
    parts.append(Part("boot", Plan("the boot side's hook")))
    record = {"g2d:installed": stamp, "g2d:installed-from": f"{source.host.name}:{source.ref}"}
    recorded = cfg.record_target_plan(facts, record)
    parts.append(Part("record", Plan.of(recorded.title, chained(recorded.steps))))
    parts.append(Part("verify", cfg.remount_ro_plan(facts)))
    finish = cfg.finish_plan(facts)
    parts.append(Part("finish", finish))
    to = {"g2d:installed-to": f"{stamp} {boot}"}  # one key: one round trip to the source
    # the lineage read that resolved the source knows the volume: no query to plan this
    parts.append(Part("source", record_plan(source.backend, source.lineage, source.ref.volume,
                                            to)))  # fmt: skip
    return tuple(parts)


def _apply(part: Part, hosts: Mapping[str, Host], journal: Path, zfs: bool) -> None:
    """Apply with the part's own step journal; on zfs-fuse a step refused only because a
    dataset or pool is still busy is tried again (the journal skips what finished)."""
    while_busy(lambda: apply_plan(part.plan, hosts, journal=journal),
               _BUSY_WAITS if zfs else (), part.name)  # fmt: skip


def install_disk(
    plan: InstallPlan,
    *,
    yes: bool = False,
    boot_hook: BootHook | None = None,
    host: Host | None = None,
) -> InstallFacts:
    """Apply ``plan`` (after showing ``plan.render()``); ``yes`` is the consent to destroy
    what is on the disk. Returns the facts the boot side used."""
    if not yes:
        raise ConsentRequired(
            f"installing onto {plan.boot.argument} destroys what is on it; nothing was done",
            hint="read the plan (dry run), then pass yes=True (the CLI asks)",
        )
    host = host or LocalHost()
    hosts = {"local": host, plan.source.host.name: plan.source.host}
    state: dict[str, object] = {"key": _key(plan.source, plan.boot, plan.options),
                                "ids": plan.ids.to_json(), "done": list(plan.resumed),
                                "state": "running"}  # fmt: skip
    _write_journal(plan.journal, state)
    # the source read now, while the disk is partitioned: a round trip off the install's time
    early = plan.options.lineage and "data" not in state["done"]  # type: ignore[operator]
    with beside(read_source_side, plan.source) if early else nullcontext() as side:
        _run_parts(plan, host, hosts, state, boot_hook, side.result if side else None)
    return plan.facts


def _run_parts(
    plan: InstallPlan, host: Host, hosts: Mapping[str, Host], state: dict[str, object],
    boot_hook: BootHook | None, source_side: Callable[[], Side] | None,
) -> None:  # fmt: skip
    zfs = plan.boot.fs is FsKind.zfs
    facts = plan.facts
    parts = {p.name: p for p in plan.parts}
    ran_beside: set[str] = set()
    for part in plan.parts:
        if part.name in ran_beside:
            continue
        if part.name in state["done"]:  # type: ignore[operator]
            log.info("install: %s was done by an earlier run", part.name)
            continue
        log.info("install: %s", part.name)
        record = parts.get("source")
        if part.name == "finish" and record and record.name not in state["done"]:  # type: ignore[operator]
            # the source's record (a round trip to a remote source) beside the unmount and
            # export here: still after the verify, one round trip off the install's time
            log.info("install: source, beside finish")
            with beside(_apply, record, hosts, _part_journal(plan, record), False) as recorded:
                _apply(part, hosts, _part_journal(plan, part), zfs)
            recorded.result()
            ran_beside.add(record.name)
            state["done"] = [*state["done"], part.name]  # type: ignore[misc]
            part = record
        elif part.name == "data":
            top = facts.top if not zfs else facts.tree
            dest = target_backend(plan.kind, host, top)
            name = str(plan.boot.dataset) if zfs else facts.tree
            if plan.options.lineage:
                side = source_side() if source_side else None
                receive_lineage(plan.source, dest, name, plan.journal.parent.parent, side)
            else:
                receive(plan.source, dest, name, plan.options.stream_filter)
        elif part.name == "boot":
            if boot_hook is not None:
                boot_hook(facts)
        else:
            _apply(part, hosts, _part_journal(plan, part), zfs)
            if part.name == "verify":
                cfg.verify(host, facts, plan.boot, plan.options.hostname)
        state["done"] = [*state["done"], part.name]  # type: ignore[misc]
        _write_journal(plan.journal, state)
    state["state"] = "done"
    _write_journal(plan.journal, state)
    for part in plan.parts:
        _part_journal(plan, part).unlink(missing_ok=True)


def _part_journal(plan: InstallPlan, part: Part) -> Path:
    return plan.journal.with_suffix(f".{part.name}.json")
