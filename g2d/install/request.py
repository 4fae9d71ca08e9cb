"""One install as the CLI and the Prefect flow ask for it: ``work=`` and ``boot=`` words in,
the disk side's plan with the boot side's entries (shown before anything is written), then
both sides applied and the written disk read back.

``prepare_install`` only reads (the source lineage, the disk, the kernels repository);
``apply_install`` writes, only with ``yes=True``. The boot entries are known before the
install: every identifier is chosen up front (``DiskIds``), so the plan shows each entry's
kernel command line exactly as the ESP will hold it.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from g2d.core.boot_entries import LoaderSettings
from g2d.core.errors import G2dUserError
from g2d.core.lineage import GenName
from g2d.core.uri import BootTarget, FsKind, Target, parse_boot, parse_target
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.install.boot_wiring import BootHook, BootRequest, BootResult, boot_set, pick_kernel
from g2d.install.configure import InstallFacts
from g2d.install.esp import EspImage, list_dir, open_esp
from g2d.install.plan import InstallOptions, InstallPlan, install_disk, plan_install
from g2d.install.runtime import RuntimeHook


class InstallRefused(G2dUserError):
    """An install request that cannot be planned as asked; names the option."""


@dataclass(frozen=True)
class InstallRequest:
    """What the user asked: the words of ``g2d install`` and the flow's parameters."""

    work: str
    boot: str
    force: bool = False
    hostname: str = "gentoo"
    lineage: bool = False
    runtime: bool = False  # a writable clone of the installed sealed generation boots
    kernel: str | None = None  # kernels/current/<version>; default the newest
    esp_mib: int = 512
    loader_timeout: int = 3
    work_dir: str | None = None
    esp: str | None = None  # an existing pool: the machine's ESP (a mounted dir, or a vfat device)

    @property
    def target(self) -> Target:
        return parse_target(self.work.removeprefix("work="))

    @property
    def boot_target(self) -> BootTarget:
        return parse_boot(self.boot)


@dataclass
class PreparedInstall:
    request: InstallRequest
    plan: InstallPlan
    boot: BootRequest
    installed: str  # the installed generation's entry name
    runtime: str | None  # the runtime generation's name, when one is made

    def entries(self) -> list[dict[str, str]]:
        """The boot entries as they will be written (default first)."""
        boot = boot_set(self.plan.facts, self.boot, self.installed)
        order = boot.menu_order()
        return [{"entry": g.entry_id, "generation": g.name, "kernel": g.kernel,
                 "role": "default" if g.name == boot.current else
                 "fallback" if g.name == boot.previous else "",
                 "options": self.boot.cmdline.render(g.root)} for g in order]  # fmt: skip

    def render(self) -> str:
        """The dry run: the disk side's plan, then the boot side's entries."""
        lines = [self.plan.render()]
        if self.runtime:
            lines.append(
                f"  [runtime] {self.runtime}: a writable clone of the installed "
                f"{self.installed}, configured as it was; it boots by default"
            )
        lines.append(f"  boot entries (kernel {self.boot.version}):")
        for e in self.entries():
            role = f" ({e['role']})" if e["role"] else ""
            lines.append(f"    {e['entry']}{role}: {e['options']}")
        return "\n".join(lines)


def pool_installs(host: Host, dataset: str) -> list[str]:
    """The datasets beside ``dataset`` that g2d installed, oldest install first (their
    ``g2d:installed`` stamps): the entries an install into an existing pool keeps."""
    parent = posixpath.dirname(dataset)
    if not parent:
        return []
    argv = ["zfs", "list", "-H", "-o", "name,g2d:installed", "-d", "1", "-t", "filesystem", parent]
    rows = [ln.split("\t") for ln in host.run(argv).lines()]
    found = sorted((stamp, name) for name, stamp in rows if name != parent and stamp != "-")
    return [posixpath.basename(name) for _, name in found]


def _generations(plan: InstallPlan, installed: str, lineage: bool, host: Host
                 ) -> tuple[list[str], str | None]:  # fmt: skip
    """Entry names on the target (oldest first) and the installed one's fallback."""
    if not lineage and plan.layout is None and plan.boot.fs is FsKind.zfs:  # an existing pool
        earlier = [n for n in pool_installs(host, str(plan.boot.dataset)) if n != installed]
        return [*earlier, installed], earlier[-1] if earlier else None
    if not lineage:
        return [installed], None
    src = plan.source
    names = [g.volume.name.rsplit("/", 1)[-1] for g in src.lineage.generations
             if g.gen is not None and g.volume is not None]  # fmt: skip
    owner = src.lineage.owner(src.snap)
    parent = src.lineage.parent(owner)
    previous = parent.ref.volume.rsplit("/", 1)[-1] if parent is not None else None
    return names, previous if previous in names and previous != installed else None


def prepare_install(
    request: InstallRequest,
    *,
    source_host: Host,
    kernels: Path,
    state_dir: Path,
    host: Host | None = None,
) -> PreparedInstall:
    """The plan and the boot entries; reads, writes nothing (refusals as ``plan_install``)."""
    boot_target = request.boot_target
    host = host or LocalHost()
    kernel_dir = pick_kernel(kernels, request.kernel)  # before the disk is looked at
    esp = None
    if request.esp is not None:
        if boot_target.formats_disk:
            raise InstallRefused(
                f"esp={request.esp}: {boot_target.argument} makes its own ESP on the new disk",
                hint="name esp= only for an install into an existing pool",
            )
        esp = open_esp(request.esp)
    options = InstallOptions(hostname=request.hostname, esp_mib=request.esp_mib,
                             lineage=request.lineage, work_dir=request.work_dir)  # fmt: skip
    plan = plan_install(request.target, boot_target, source_host=source_host,
                        state_dir=state_dir, options=options, force=request.force,
                        host=host)  # fmt: skip
    installed = boot_target.generation
    names, previous = _generations(plan, installed, request.lineage, host)
    runtime = None
    if request.runtime:
        if boot_target.fs not in (FsKind.zfs, FsKind.btrfs) or plan.kind.value == "plain":
            raise InstallRefused(
                f"runtime: {boot_target} holds a plain directory; a runtime clone needs a "
                "zfs dataset or a btrfs subvolume",
                hint="install a zfs or btrfs generation, or leave runtime off",
            )
        gen = GenName.find(installed)
        taken = [GenName.find(n) for n in names]
        top = max([g.number for g in taken if g] + [gen.number if gen else 0])
        runtime = str(GenName(top + 1))
        names, previous = [*names, runtime], installed
    settings = LoaderSettings(timeout=request.loader_timeout)
    current = runtime or installed
    boot = BootRequest(kernel_dir, tuple(names), current, previous, settings=settings, esp=esp)
    return PreparedInstall(request, plan, boot, installed, runtime)


@dataclass(frozen=True)
class InstallOutcome:
    facts: InstallFacts
    boot: BootResult
    layout: list[dict[str, object]]  # the disk read back: one row per partition
    esp_files: list[str]  # loader/entries on the ESP, read back

    def to_json(self) -> dict[str, object]:
        return {"facts": self.facts.to_json(), "boot": self.boot.to_json(),
                "layout": self.layout, "esp_entries": self.esp_files}  # fmt: skip


def apply_install(prepared: PreparedInstall, *, yes: bool, host: Host | None = None
                  ) -> InstallOutcome:  # fmt: skip
    """Both sides, then the disk read back (``yes`` is the consent to destroy the disk)."""
    host = host or LocalHost()
    boot_hook = BootHook(prepared.boot, prepared.installed)
    hook = boot_hook
    if prepared.runtime:
        hook = RuntimeHook(prepared.plan, prepared.runtime, boot_hook)  # type: ignore[assignment]
    facts = install_disk(prepared.plan, yes=yes, boot_hook=hook, host=host)
    assert boot_hook.result is not None
    layout = disk_layout(host, prepared.plan.boot.device)
    written = prepared.boot.esp
    if written is None and facts.esp_device is not None:
        written = EspImage(Path(facts.esp_device))
    esp = [] if written is None else list_dir(written, "loader/entries")
    return InstallOutcome(facts, boot_hook.result, layout, esp)


def disk_layout(host: Host, disk: str | None) -> list[dict[str, object]]:
    """The partition table and what ``blkid -p`` finds on each partition (nothing mounted)."""
    if disk is None:
        return []
    table = json.loads(host.run(["sfdisk", "--json", disk]).stdout)["partitiontable"]
    rows: list[dict[str, object]] = []
    for part in table["partitions"]:
        probe = host.run(["blkid", "-p", "-o", "export", part["node"]], check=False).stdout
        found = dict(ln.split("=", 1) for ln in probe.splitlines() if "=" in ln)
        rows.append({"partition": part["node"], "MiB": part["size"] * 512 >> 20,
                     "type": part["type"], "name": part.get("name", ""),
                     "partuuid": part.get("uuid", "").lower(),
                     "filesystem": found.get("TYPE", ""),
                     "label": found.get("LABEL", ""), "uuid": found.get("UUID", "")})  # fmt: skip
    return rows
