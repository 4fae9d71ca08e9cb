"""What is on a disk before ``install`` writes to it, and whether it may.

Read-only: ``blockdev`` (size), ``/sys/block`` (partitions, holders such as device-mapper or
md on top of it), ``findmnt`` (mounted anywhere, partitions included), ``zpool status -P``
(a vdev of an imported pool; zfs-fuse prints bare device names, so both forms are
compared), ``wipefs --json`` on the disk and each partition (any signature: a partition
table, a file system, a ZFS label). The disk is always on this machine (a boot target takes
no host), so sysfs is read directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import CommandNotFound, G2dUserError
from g2d.hosts.base import Host

MIB = 1 << 20


class DiskRefused(G2dUserError):
    """The disk is in use, holds data, or is too small; names the disk and the reason."""


@dataclass(frozen=True, slots=True)
class DiskInfo:
    device: str  # as given (/dev/disk/by-id/... stays so)
    kernel_name: str  # sda, nvme0n1, loop3
    size: int  # bytes
    partitions: tuple[str, ...]  # /dev/sda1, ...
    mounts: tuple[str, ...]  # "/dev/sda2 on /mnt"
    pools: tuple[str, ...]  # imported pools with a vdev on the disk
    holders: tuple[str, ...]  # dm-0, md127 (kernel names)
    signatures: tuple[str, ...]  # "gpt on /dev/sda", "ext4 on /dev/sda2"

    @property
    def in_use(self) -> list[str]:
        """Reasons no install may touch the disk, even forced, in the order found."""
        reasons = []
        if self.mounts:
            reasons.append(f"it is mounted ({', '.join(self.mounts)})")
        if self.pools:
            reasons.append(f"it is in the imported ZFS pool {', '.join(self.pools)}")
        if self.holders:
            reasons.append(f"it is held by {', '.join(self.holders)}")
        return reasons

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def _kernel_name(device: str) -> str:
    name = Path(os.path.realpath(device)).name
    if not (Path("/sys/class/block") / name).exists():
        raise DiskRefused(f"{device} is not a block device on this machine")
    if (Path("/sys/class/block") / name / "partition").exists():
        raise DiskRefused(
            f"{device} is a partition, not a disk", hint="name the whole disk, like /dev/sda"
        )
    return name


def _partitions(name: str) -> list[str]:
    base = Path("/sys/block") / name
    found = [p.name for p in base.iterdir() if (p / "partition").exists()]
    found.sort(key=lambda n: int((base / n / "partition").read_text()))
    return [f"/dev/{p}" for p in found]


def _holders(name: str, partitions: list[str]) -> list[str]:
    dirs = [Path("/sys/block") / name / "holders"]
    dirs += [Path("/sys/block") / name / Path(p).name / "holders" for p in partitions]
    return sorted({h.name for d in dirs if d.is_dir() for h in d.iterdir()})


def _mounts(host: Host, nodes: list[str]) -> list[str]:
    out = host.run(["findmnt", "--json", "--list", "-o", "SOURCE,TARGET"]).stdout
    real = {os.path.realpath(n): n for n in nodes}
    found = []
    for fs in json.loads(out or '{"filesystems": []}')["filesystems"]:
        source = fs.get("source") or ""
        if source.startswith("/dev/") and os.path.realpath(source) in real:
            found.append(f"{real[os.path.realpath(source)]} on {fs['target']}")
    return found


def _pools(host: Host, nodes: list[str]) -> list[str]:
    try:
        done = host.run(["zpool", "status", "-P"], check=False)
    except CommandNotFound:
        return []  # no ZFS here: no imported pool either
    if not done.ok and "invalid option 'P'" in done.stderr:  # zfs-fuse: bare names
        done = host.run(["zpool", "status"], check=False)
    if not done.ok:
        return []
    wanted = {os.path.realpath(n) for n in nodes} | {Path(n).name for n in nodes}
    wanted |= {Path(os.path.realpath(n)).name for n in nodes}
    pools, pool = [], None
    for line in done.lines():
        words = line.split()
        if line.strip().startswith("pool:"):
            pool = words[1]
        elif pool and words and {words[0], os.path.realpath(words[0])} & wanted:
            pools.append(pool)
    return list(dict.fromkeys(pools))


def _signatures(host: Host, nodes: list[str]) -> list[str]:
    found = []
    for node in nodes:
        done = host.run(["wipefs", "--json", node], check=False)
        if not done.ok or not done.stdout.strip():
            continue
        kinds = []
        for sig in json.loads(done.stdout).get("signatures", []):
            if sig["type"] not in kinds:
                kinds.append(sig["type"])
        found += [f"{kind} on {node}" for kind in kinds]
    return found


def inspect_disk(host: Host, device: str) -> DiskInfo:
    """Everything ``check_disk`` needs to know about ``device``; changes nothing."""
    name = _kernel_name(device)
    size = int(host.run(["blockdev", "--getsize64", device]).stdout.strip())
    partitions = _partitions(name)
    nodes = [device, *partitions]
    return DiskInfo(
        device=device,
        kernel_name=name,
        size=size,
        partitions=tuple(partitions),
        mounts=tuple(_mounts(host, nodes)),
        pools=tuple(_pools(host, nodes)),
        holders=tuple(_holders(name, partitions)),
        signatures=tuple(_signatures(host, nodes)),
    )


def _mib(n: int) -> str:
    return f"{-(-n // MIB)} MiB"


def check_disk(info: DiskInfo, needed: int, *, force: bool = False) -> None:
    """Refuse a disk in use (mounted, in a pool, held) always; one holding data unless
    ``force``; one smaller than ``needed`` bytes always."""
    if info.in_use:
        raise DiskRefused(
            f"{info.device} is in use: {'; '.join(info.in_use)}",
            hint="unmount it, export the pool or stop what holds it; force does not override this",
        )
    if info.signatures and not force:
        raise DiskRefused(
            f"{info.device} holds data: {', '.join(info.signatures)}",
            hint="everything on it would be destroyed; pass force to install anyway",
        )
    if info.size < needed:
        raise DiskRefused(
            f"{info.device} is too small: {_mib(info.size)}, the install needs {_mib(needed)}",
            hint="use a larger disk, or a smaller ESP",
        )
