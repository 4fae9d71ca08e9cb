"""Make the received root belong to its new disk: fstab, hostname, hostid, bootfs; then
check it read-only and record the install.

``InstallFacts`` is what the boot side gets: where the installed tree is mounted, and the
identifiers its kernel command line and loader entries need. Files are written by plan
steps (``printf '%s' TEXT | dd of=PATH``), so the dry run shows their whole content.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from g2d.core.boot_entries import RootIdentity
from g2d.core.errors import G2dUserError
from g2d.core.partition_plan import DiskLayout
from g2d.core.plan import Command, Plan, Step
from g2d.core.uri import BootTarget, FsKind
from g2d.hosts.base import Host
from g2d.storage.base import BackendKind

HOST = "local"


class VerifyFailed(G2dUserError):
    """The installed root does not say what the install wrote; names what differs."""


@dataclass(frozen=True, slots=True)
class InstallFacts:
    """What the boot side needs, valid while the install runs its boot hook."""

    fs: FsKind
    tree: str  # the installed root, mounted read-write on this machine
    top: str  # the new file system's top (ZFS: the pool's altroot)
    root_device: str | None  # the root partition (None: into an existing pool)
    root_uuid: str | None  # ext4/xfs/btrfs file system UUID
    root_partuuid: str | None
    root_subdir: str | None  # the root inside its file system (/g1); None on ZFS
    root_is_subvolume: bool  # btrfs subvolume (rootflags=subvol=); else a plain directory
    pool: str | None
    dataset: str | None
    esp_device: str | None
    esp_uuid: str | None  # FAT serial, XXXX-XXXX
    esp_partuuid: str | None
    esp_mount: str  # where the installed system mounts the ESP (/efi)
    hostid: str | None  # ZFS installs: 8 hex digits, as /etc/hostid holds them

    def root_identity(self) -> RootIdentity:
        """How the kernel finds this root: the dataset, or the file system's UUID plus the
        subvolume or the directory (``g2d.rootdir=``) that holds the generation."""
        if self.fs is FsKind.zfs:
            return RootIdentity.zfs(str(self.dataset))
        inside = self.root_subdir if self.root_subdir not in (None, "/") else ""
        if self.root_is_subvolume:
            return RootIdentity.by_uuid(self.fs.value, str(self.root_uuid), subvolume=inside or "")
        return RootIdentity.by_uuid(self.fs.value, str(self.root_uuid), directory=inside or "")

    def kernel_root_args(self) -> list[str]:
        """The root on the kernel command line, as Gentoo's initramfs tools read it (plus
        ``g2d.rootdir=`` for a root in a directory, which g2d's initramfs reads)."""
        return list(self.root_identity().kernel_args())

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def facts_for(target: BootTarget, layout: DiskLayout | None, top: str, esp_mount: str,
              hostid: str | None, kind: BackendKind) -> InstallFacts:  # fmt: skip
    subdir = str(target.path) if target.path is not None else None
    tree = top if target.fs is FsKind.zfs else posixpath.join(top, target.name.lstrip("/"))
    ids = layout.ids if layout else None
    return InstallFacts(
        fs=target.fs,
        tree=tree,
        top=top,
        root_device=layout.root if layout else None,
        root_uuid=ids.fs_uuid if ids and target.fs is not FsKind.zfs else None,
        root_partuuid=ids.root_partuuid if ids else None,
        root_subdir=subdir,
        root_is_subvolume=kind is BackendKind.btrfs,
        pool=target.pool,
        dataset=target.dataset,
        esp_device=layout.esp if layout else None,
        esp_uuid=ids.esp_uuid if ids else None,
        esp_partuuid=ids.esp_partuuid if ids else None,
        esp_mount=esp_mount,
        hostid=hostid,
    )


def fstab_text(facts: InstallFacts, boot: BootTarget) -> str:
    lines = [f"# /etc/fstab written by g2d install ({boot.argument})"]
    if facts.fs is FsKind.zfs:
        lines.append(f"# / is the ZFS dataset {facts.dataset} (mountpoint=/, the pool's bootfs)")
    else:
        options = f"subvol={facts.root_subdir}" if facts.root_is_subvolume else "defaults"
        passno = "0" if facts.fs is FsKind.btrfs else "1"  # fsck.btrfs does nothing
        lines.append(f"UUID={facts.root_uuid}\t/\t{facts.fs}\t{options}\t0\t{passno}")
    if facts.esp_partuuid:
        lines.append(f"PARTUUID={facts.esp_partuuid}\t{facts.esp_mount}\tvfat\tumask=0077\t0\t2")
    return "\n".join(lines) + "\n"


def hostid_bytes(hostid: str) -> bytes:
    """/etc/hostid as zgenhostid writes it: the 32-bit value in this machine's byte order
    (little-endian on x86 and arm64, where Gentoo's ZFS runs)."""
    return int(hostid, 16).to_bytes(4, "little")


def _write(path: str, text: str, why: str) -> Step:
    return Step(why, (Command(HOST, ("printf", "%s", text)),
                      Command(HOST, ("dd", f"of={path}", "status=none"))))  # fmt: skip


def _write_bytes(path: str, data: bytes, why: str) -> Step:
    escaped = "".join(f"\\x{b:02x}" for b in data)  # printf's format turns these into bytes
    return Step(why, (Command(HOST, ("printf", escaped)),
                      Command(HOST, ("dd", f"of={path}", "status=none"))))  # fmt: skip


def _boots_as_root(ds: str) -> Step:
    return Step.run(HOST, ["zfs", "set", "mountpoint=/", ds], f"{ds} is / when it boots")


def configure_plan(facts: InstallFacts, boot: BootTarget, hostname: str) -> Plan:
    """Mount the root (ZFS), then fstab, hostname, hostid and bootfs."""
    steps: list[Step] = []
    tree = facts.tree
    if facts.fs is FsKind.zfs:
        ds = facts.dataset
        assert ds is not None
        # canmount first: zfs-fuse mounts a canmount=on dataset when its mountpoint is set
        steps.append(Step.run(HOST, ["zfs", "set", "canmount=noauto", ds],
                              "only the boot loader's choice mounts as /"))  # fmt: skip
        if facts.root_device is None:  # an existing pool, maybe this machine's own: not over /
            steps.append(Step.run(HOST, ["zfs", "set", f"mountpoint={tree}", ds],
                                  f"mount {ds} at {tree} while installing"))  # fmt: skip
        else:  # a new pool has an altroot: / is below it
            steps.append(_boots_as_root(ds))
        steps += [
            Step.run(HOST, ["zfs", "mount", ds], f"mount {ds} at {tree}",
                     done_if=["findmnt", "--source", ds, "--mountpoint", tree]),
        ]  # fmt: skip
    steps.append(Step.run(HOST, ["mkdir", "-p", "--", f"{tree}/etc", f"{tree}{facts.esp_mount}"],
                          "directories for the files below and the ESP's mount point"))  # fmt: skip
    steps.append(_write(f"{tree}/etc/fstab", fstab_text(facts, boot), "/etc/fstab"))
    steps.append(_write(f"{tree}/etc/hostname", f"{hostname}\n", f"hostname {hostname}"))
    if facts.fs is FsKind.zfs and facts.hostid:
        steps.append(
            _write_bytes(
                f"{tree}/etc/hostid",
                hostid_bytes(facts.hostid),
                f"hostid {facts.hostid}: the pool's owner when it boots",
            )
        )
        if facts.root_device is not None:  # a new pool boots this; an existing one keeps its own
            argv = ["zpool", "set", f"bootfs={facts.dataset}", str(facts.pool)]
            steps.append(Step.run(HOST, argv, f"the pool boots {facts.dataset}"))
    return Plan.of(f"configure {boot.name}", steps)


def record_target_plan(facts: InstallFacts, items: dict[str, str]) -> Plan:
    """``g2d:*`` keys on the installed volume (ZFS properties; ``user.g2d.*`` xattrs on the
    volume's top directory on btrfs and plain, as the storage contract keeps them)."""
    steps = []
    for key in sorted(items):
        if facts.fs is FsKind.zfs:
            argv = ["zfs", "set", f"{key}={items[key]}", str(facts.dataset)]
        else:
            name = "user.g2d." + key.removeprefix("g2d:")
            argv = ["setfattr", "-n", name, "-v", items[key], "--", facts.tree]
        steps.append(Step.run(HOST, argv, f"record {key}"))
    return Plan.of("record the install on the target", steps)


def remount_ro_plan(facts: InstallFacts) -> Plan:
    if facts.fs is FsKind.zfs:
        ds = str(facts.dataset)
        return Plan.of("mount the root read-only", [
            Step.run(HOST, ["zfs", "unmount", ds], f"unmount {ds}"),
            Step.run(HOST, ["zfs", "mount", "-o", "ro", ds], f"mount {ds} read-only"),
        ])  # fmt: skip
    dev = str(facts.root_device)
    return Plan.of("mount the root read-only", [
        Step.run(HOST, ["umount", facts.top], f"unmount {facts.top}"),
        Step.run(HOST, ["mount", "-o", "ro", "-t", facts.fs.value, dev, facts.top],
                 f"mount {dev} read-only at {facts.top}"),
    ])  # fmt: skip


def finish_plan(facts: InstallFacts) -> Plan:
    """Unmount; export a new pool (the disk can go), or give a generation in an existing
    pool its mountpoint / (canmount=noauto: nothing mounts it now)."""
    if facts.fs is FsKind.zfs:
        ds = str(facts.dataset)
        steps = [Step.run(HOST, ["zfs", "unmount", ds], f"unmount {ds}")]
        if facts.root_device is not None:
            steps.append(Step.run(HOST, ["zpool", "export", str(facts.pool)],
                                  f"export {facts.pool}: the disk can go"))  # fmt: skip
        else:  # canmount=noauto: this does not mount it over /
            steps.append(_boots_as_root(ds))
        return Plan.of("unmount", steps)
    return Plan.of("unmount", [
        Step.run(HOST, ["umount", facts.top], f"unmount {facts.top}"),
        Step.run(HOST, ["rmdir", "--", facts.top], f"remove the mount point {facts.top}"),
    ])  # fmt: skip


def _blkid(host: Host, device: str) -> dict[str, str]:
    out = host.run(["blkid", "-p", "-o", "export", device]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def verify(host: Host, facts: InstallFacts, boot: BootTarget, hostname: str) -> None:
    """With the root mounted read-only: the files say what was written, and every fstab
    line names a device that blkid finds with that identifier."""
    tree = Path(facts.tree)
    found = host.run(["findmnt", "--json", "--target", facts.tree, "-o", "OPTIONS"]).stdout
    options = json.loads(found)["filesystems"][0]["options"].split(",")
    if "ro" not in options:
        raise VerifyFailed(f"{facts.tree} is not mounted read-only ({','.join(options)})")
    expected = {"etc/fstab": fstab_text(facts, boot), "etc/hostname": f"{hostname}\n"}
    for rel, text in expected.items():
        got = (tree / rel).read_text() if (tree / rel).is_file() else None
        if got != text:
            raise VerifyFailed(f"{tree / rel} does not hold what the install wrote: {got!r}")
    if facts.fs is FsKind.zfs and facts.hostid:
        got_id = (tree / "etc/hostid").read_bytes()
        if got_id != hostid_bytes(facts.hostid):
            raise VerifyFailed(f"{tree}/etc/hostid holds {got_id.hex()}, not {facts.hostid}")
    for line in expected["etc/fstab"].splitlines():
        if line.startswith("#"):
            continue
        spec = line.split("\t")[0]
        key, _, value = spec.partition("=")
        device = facts.root_device if key == "UUID" else facts.esp_device
        probed = _blkid(host, str(device))
        have = probed.get("UUID" if key == "UUID" else "PART_ENTRY_UUID")
        if have != value:
            raise VerifyFailed(f"fstab names {spec}, but blkid says {device} has {key}={have}")
