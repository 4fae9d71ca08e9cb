"""A file system on a loop device: sparse image, `losetup`, mkfs, mount, and the way back.

Each teardown is registered on the undo stack the moment its setup succeeds, so a failure at
any step (or `close()`) unwinds exactly what was done: umount, `losetup --detach`, delete the
mount point and the image.
"""

from __future__ import annotations

import enum
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from g2d.core.errors import CommandFailed
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import find_program, random_token, run


class FsType(enum.StrEnum):
    btrfs = enum.auto()
    ext4 = enum.auto()
    xfs = enum.auto()

    def package(self) -> str:
        return {"btrfs": "btrfs-progs", "ext4": "e2fsprogs", "xfs": "xfsprogs"}[self.value]

    def default_size_mib(self) -> int:
        # mkfs.xfs 6.1 refuses anything under 300 MB; btrfs wants ~110 MiB for dup metadata
        return {"btrfs": 256, "ext4": 128, "xfs": 320}[self.value]

    def mkfs_argv(self, mkfs: str, device: str) -> list[str]:
        options = {
            "btrfs": ["-q", "-f"],
            "ext4": ["-q", "-F"],
            "xfs": ["-q", "-f", "-m", "reflink=1"],  # so `cp --reflink` works, as on btrfs
        }[self.value]
        return [mkfs, *options, device]


@dataclass
class LoopMount:
    fstype: FsType
    image: Path
    device: str
    mountpoint: Path
    _undo: ExitStack = field(default_factory=ExitStack, repr=False)

    def close(self) -> None:
        """Unmount, detach the loop device, delete the mount point and the image."""
        self._undo.close()

    def __enter__(self) -> LoopMount:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _kernel_has(fstype: FsType) -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == fstype.value for line in f if line.strip())


def _remove_unmounted(path: Path) -> None:
    if not os.path.ismount(path):
        shutil.rmtree(path)


def mount_loop(directory: Path, fstype: FsType | str, *, size_mib: int | None = None) -> LoopMount:
    """Make a sparse image in `directory`, put `fstype` on it and mount it beside the image."""
    fstype = FsType(fstype)
    component = f"{fstype} on a loop device"
    if os.geteuid() != 0:
        raise ComponentUnavailable(component, "loop devices and mount need root")
    if not Path("/dev/loop-control").exists():
        raise ComponentUnavailable(component, "/dev/loop-control is missing")
    losetup = find_program("losetup", component=component, package="mount")
    mkfs = find_program(f"mkfs.{fstype}", component=component, package=fstype.package())
    size = (size_mib or fstype.default_size_mib()) << 20

    name = f"{fstype}-{random_token()}"
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / f"{name}.img"
    shared = directory / f"{name}.shared"
    mountpoint = shared / "mnt"
    with ExitStack() as undo:
        with open(image, "xb") as f:
            f.truncate(size)  # sparse
        undo.callback(image.unlink, missing_ok=True)
        device = run([losetup, "--show", "--find", image]).stdout.strip()
        undo.callback(run, [losetup, "--detach", device])
        run(fstype.mkfs_argv(mkfs, device), timeout=300)
        # The file system is mounted inside a shared self-bind: where / is private
        # (containers), a namespace made later (a chroot, emerge's) would otherwise keep its
        # own copy of the mount, and the loop device busy, after our umount (g2d.hosts.chroot).
        shared.mkdir()
        # whatever a user left beside the mount point (a lock, a staging sibling) goes too
        undo.callback(_remove_unmounted, shared)
        run(["mount", "--bind", shared, shared])
        undo.callback(run, ["umount", shared])
        run(["mount", "--make-shared", shared])
        mountpoint.mkdir()
        undo.callback(mountpoint.rmdir)
        try:
            run(["mount", "-t", fstype.value, device, mountpoint])
        except CommandFailed as exc:
            if not _kernel_has(fstype):  # no module can be loaded into this kernel
                raise ComponentUnavailable(component, f"the kernel has no {fstype}") from exc
            raise
        undo.callback(run, ["umount", mountpoint])
        mounted = LoopMount(fstype, image, device, mountpoint)
        mounted._undo = undo.pop_all()
        return mounted
