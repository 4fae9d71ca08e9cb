"""The disk side of ``install`` as data: a GPT layout and the commands that make it.

Pure: every identifier the commands set (disk GUID, PARTUUIDs, the ESP's serial, the file
system UUID, the hostid) is chosen up front (``DiskIds.new``), so the plan is complete
before anything runs, fstab can be written from it, and a re-run of the same plan is the
same plan. Options that depend on the ZFS are chosen from what that ZFS reports
(``ZfsFeatures``), never from its version: zfs-fuse (pool v23) has no lz4, acltype,
xattr=sa, dnodesize or encryption.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from g2d.core.errors import G2dUserError
from g2d.core.plan import Plan, Step
from g2d.core.uri import BootTarget, FsKind

MIB = 1 << 20
GPT_OVERHEAD = 2 * MIB  # first-partition alignment (1 MiB) + backup GPT, rounded up
ESP_MIN_MIB = 33  # FAT32 needs 65525 clusters; mkfs.vfat -F 32 refuses less
# the least each file system takes before any data (mkfs.xfs 6.1 refuses < 300 MB)
FS_MIN = {FsKind.zfs: 64 * MIB, FsKind.btrfs: 114 * MIB, FsKind.ext4: 16 * MIB,
          FsKind.xfs: 300 * MIB}  # fmt: skip
GPT_ESP, GPT_BIOS, GPT_LINUX, GPT_ZFS = "EF00", "EF02", "8300", "BF00"


class LayoutError(G2dUserError):
    """A layout option that cannot work; names the option."""


@dataclass(frozen=True, slots=True)
class DiskIds:
    """Every identifier the install sets, chosen before it runs."""

    disk_guid: str
    esp_partuuid: str
    bios_partuuid: str
    root_partuuid: str
    esp_serial: str  # FAT volume id, 8 hex digits; blkid shows it as XXXX-XXXX
    fs_uuid: str  # ext4/xfs/btrfs file system UUID (unused on ZFS)
    hostid: str  # 8 hex digits, written to /etc/hostid on ZFS installs

    @classmethod
    def new(cls) -> DiskIds:
        return cls(*(str(uuid.uuid4()) for _ in range(4)), secrets.token_hex(4).upper(),
                   str(uuid.uuid4()), secrets.token_hex(4))  # fmt: skip

    @property
    def esp_uuid(self) -> str:
        return f"{self.esp_serial[:4]}-{self.esp_serial[4:]}"

    def to_json(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> DiskIds:
        return cls(**{k: data[k] for k in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ZfsFeatures:
    """What ``zpool create`` may ask of this ZFS: its property table (``zfs get`` with no
    arguments prints it) and whether it encrypts."""

    properties: Mapping[str, str]  # property -> allowed values text
    encryption: bool = False

    def values(self, prop: str) -> set[str]:
        return {w.strip() for w in self.properties.get(prop, "").split("|")}

    def dataset_options(self) -> list[str]:
        opts = []
        compression = self.values("compression")
        opts.append("compression=lz4" if "lz4" in compression else "compression=on")
        if "acltype" in self.properties:
            opts.append("acltype=posixacl")
        xattr = self.values("xattr")
        if "sa" in xattr:
            opts.append("xattr=sa")  # xattrs in the dnode: ACLs without extra reads
        elif "on" in xattr:
            opts.append("xattr=on")
        if "dnodesize" in self.properties:
            opts.append("dnodesize=auto")
        if "relatime" in self.properties:
            opts.append("relatime=on")
        return opts


@dataclass(frozen=True, slots=True)
class Encryption:
    """Native ZFS encryption with a key the user keeps: only its location goes in the pool."""

    keylocation: str  # file:///..., or "prompt"
    keyformat: str = "passphrase"

    def __post_init__(self) -> None:
        if self.keylocation != "prompt" and not self.keylocation.startswith("file:///"):
            raise LayoutError(
                f"key location {self.keylocation!r} is neither prompt nor file:///...",
                hint="give the key's absolute path as file:///path (it is never copied)",
            )
        if self.keyformat not in ("raw", "hex", "passphrase"):
            raise LayoutError(f"key format {self.keyformat!r} is not raw, hex or passphrase")


@dataclass(frozen=True, slots=True)
class DiskLayout:
    """A GPT: the ESP (1), a BIOS boot partition (2) where asked, the rest for the root."""

    target: BootTarget
    ids: DiskIds
    altroot: str  # where the new file system (or the pool's altroot) is mounted
    esp_mib: int = 512
    bios_boot: bool = False
    label: str = "g2d-root"
    zfs: ZfsFeatures | None = None
    encryption: Encryption | None = None

    def __post_init__(self) -> None:
        if self.target.device is None:
            raise LayoutError(f"{self.target} names no disk to partition")
        if self.esp_mib < ESP_MIN_MIB:
            raise LayoutError(f"an ESP of {self.esp_mib} MiB is too small for FAT32",
                              hint=f"give at least {ESP_MIN_MIB} MiB")  # fmt: skip
        if self.target.fs is FsKind.zfs and self.zfs is None:
            raise LayoutError("a ZFS layout needs the ZFS's features (ZfsFeatures)")
        if self.encryption and not (self.zfs and self.zfs.encryption):
            raise LayoutError(
                f"{self.target}: this ZFS cannot encrypt",
                hint="install without a key location, or on a host whose ZFS has encryption",
            )
        if self.target.fs is FsKind.xfs and len(self.label) > 12:
            raise LayoutError(f"xfs labels take 12 characters at most, not {self.label!r}")

    @property
    def disk(self) -> str:
        assert self.target.device is not None
        return self.target.device

    @property
    def esp(self) -> str:
        return self.target.partition(1)

    @property
    def root_number(self) -> int:
        return 3 if self.bios_boot else 2

    @property
    def root(self) -> str:
        return self.target.partition(self.root_number)

    def size_needed(self, data_bytes: int) -> int:
        """Bytes the disk needs: tables, ESP, BIOS boot, and the root with room for the data
        (a quarter more, at least the file system's own minimum)."""
        root = max(FS_MIN[self.target.fs], data_bytes + data_bytes // 4 + 32 * MIB)
        return GPT_OVERHEAD + self.esp_mib * MIB + (MIB if self.bios_boot else 0) + root

    def partition_argv(self) -> list[str]:
        n = self.root_number
        code = GPT_ZFS if self.target.fs is FsKind.zfs else GPT_LINUX
        return [
            "sgdisk",
            "--disk-guid", self.ids.disk_guid,
            "--new", f"1:0:+{self.esp_mib}M", "--typecode", f"1:{GPT_ESP}",
            "--change-name", "1:EFI", "--partition-guid", f"1:{self.ids.esp_partuuid}",
            *(["--new", "2:0:+1M", "--typecode", f"2:{GPT_BIOS}", "--change-name", "2:BIOS",
               "--partition-guid", f"2:{self.ids.bios_partuuid}"] if self.bios_boot else []),
            "--new", f"{n}:0:0", "--typecode", f"{n}:{code}",
            "--change-name", f"{n}:{self.label}",
            "--partition-guid", f"{n}:{self.ids.root_partuuid}",
            self.disk,
        ]  # fmt: skip

    def mkfs_argv(self) -> list[str]:
        fs, dev, label, fs_uuid = self.target.fs, self.root, self.label, self.ids.fs_uuid
        if fs is FsKind.ext4:
            return ["mkfs.ext4", "-q", "-F", "-L", label, "-U", fs_uuid, dev]
        if fs is FsKind.xfs:
            return ["mkfs.xfs", "-q", "-f", "-L", label, "-m", f"uuid={fs_uuid}", dev]
        if fs is FsKind.btrfs:
            return ["mkfs.btrfs", "-q", "-f", "-L", label, "-U", fs_uuid, dev]
        return self.zpool_create_argv()

    def zpool_create_argv(self) -> list[str]:
        assert self.zfs is not None and self.target.pool is not None
        enc = self.encryption
        return [
            "zpool", "create",
            "-f",                       # the disk was inspected; stale labels are expected
            "-o", "ashift=12",          # 4 KiB sectors: right for today's disks, harmless on 512
            "-o", "cachefile=none",     # this machine must not import it at boot
            *(a for o in self.zfs.dataset_options() for a in ("-O", o)),
            *(["-O", "encryption=aes-256-gcm", "-O", f"keyformat={enc.keyformat}",
               "-O", f"keylocation={enc.keylocation}"] if enc else []),
            "-m", "none",               # the pool's top is no file system anyone mounts
            "-R", self.altroot,         # everything mounts below here while installing
            self.target.pool, self.root,
        ]  # fmt: skip


def _step(argv: list[str], why: str, done_if: list[str] | None = None) -> Step:
    return Step.run("local", argv, why, done_if=done_if)


def partition_plan(layout: DiskLayout) -> Plan:
    """Wipe the disk, write the GPT, make the ESP and the root file system (or pool), and
    mount it at ``layout.altroot``. A run cut off half way is resumed from the install's
    journal, never by looking at the disk (which these steps destroy)."""
    disk, root, ids = layout.disk, layout.root, layout.ids
    steps = [
        _step(["wipefs", "--all", "--quiet", disk], f"wipe the signatures on {disk}"),
        _step(["sgdisk", "--zap-all", disk], f"destroy any old partition table on {disk}"),
        _step(layout.partition_argv(), f"write the GPT on {disk}"),
        _step(["partx", "--update", disk], f"have the kernel read the new table of {disk}"),
    ]
    parts = [layout.esp, *([layout.target.partition(2)] if layout.bios_boot else []), root]
    steps += [_step(["wipefs", "--all", "--quiet", p], f"wipe what was left in {p}") for p in parts]
    steps.append(_step(["mkfs.vfat", "-F", "32", "-n", "EFI", "-i", ids.esp_serial, layout.esp],
                       f"FAT32 on the ESP {layout.esp}"))  # fmt: skip
    fs = layout.target.fs
    if fs is FsKind.zfs:
        steps.append(_step(layout.mkfs_argv(), f"create pool {layout.target.pool} on {root}"))
    else:
        steps += [
            _step(layout.mkfs_argv(), f"{fs} on {root}"),
            _step(["mkdir", "-p", "--", layout.altroot], "the mount point for the install"),
            _step(["mount", "-t", fs.value, root, layout.altroot],
                  f"mount {root} at {layout.altroot}",
                  done_if=["findmnt", "--source", root, "--mountpoint", layout.altroot]),
        ]  # fmt: skip
    return Plan.of(f"partition {disk} and make {fs}", steps)
