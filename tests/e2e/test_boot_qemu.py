"""An installed generation boots: a GPT disk image (ESP + root), the lab stage3 on ext4 or
btrfs, the lab kernel with g2d's initramfs, systemd-boot with g2d's entries; qemu (TCG,
OVMF) boots it and the stage3's init prints its marker on the serial console.

The disk side (partitioning, mkfs, unpacking the stage3) is done here by hand with plain
commands (sgdisk, mkfs, tar) until install's disk code lands; from the ESP and the mounted
root on, everything is g2d's boot side. This host's kernel has no vfat, so the ESP is
written through mtools (``EspImage``) instead of being mounted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from g2d.core.boot_entries import (
    BootSet,
    Generation,
    KernelCommandLine,
    LoaderSettings,
    RootFs,
    RootIdentity,
)
from g2d.hosts.local import LocalHost
from g2d.install.boot import (
    SYSTEMD_BOOT_EFI,
    KernelFiles,
    install_boot,
    install_modules_plan,
    verify_esp,
)
from g2d.install.esp import EspImage, list_dir, read_text
from g2d.install.initramfs import publish_initramfs
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.lab_names import Stamp, Variant, boot_marker
from g2d.lab.lab_stage3_files import write_init
from g2d.lab.layout import LabLayout
from g2d.lab.process import processes_with, tail
from g2d.lab.qemu import BootFailed, BootRun, boot_image, boot_kernel
from g2d.storage.apply import apply_plan

pytestmark = pytest.mark.slow

IMAGE_MIB = 1024
ESP_MIB = 64
BOOT_TIMEOUT = 240.0  # TCG on a busy 2-core box; a UEFI boot takes 15-40 s here
LOADER = LoaderSettings(timeout=0)  # no menu wait in tests
TOOLS = (
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("sgdisk", "gdisk"),
    ("sfdisk", "fdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mkfs.btrfs", "btrfs-progs"),
    ("losetup", "mount"),
    ("mcopy", "mtools"),
)
local = LocalHost()


@dataclass(frozen=True)
class LabParts:
    kernel_dir: Path  # a copy of the lab kernel, with its initramfs
    root: Path  # the lab stage3, unpacked, with the kernel's modules installed
    stamp: Stamp

    @property
    def version(self) -> str:
        return self.kernel_dir.name

    @property
    def marker(self) -> str:
        return boot_marker(Variant.openrc, self.stamp)

    def kernels(self) -> dict[str, KernelFiles]:
        return {self.version: KernelFiles.in_dir(self.kernel_dir)}


@dataclass(frozen=True)
class Disk:
    image: Path
    esp: EspImage
    top: Path  # the root file system's top level, mounted
    uuid: str


@pytest.fixture(autouse=True)
def _boot_tools(start_component: Callable) -> None:
    for program, package in TOOLS:
        start_component("qemu boot", lambda p=program, k=package: _need(p, k))
    start_component("qemu boot", _need_systemd_boot)


def _need(program: str, package: str) -> None:
    if not shutil.which(program) and not shutil.which(program, path="/usr/sbin:/sbin"):
        raise ComponentUnavailable(
            "qemu boot", f"{program} not found", hint=f"apt-get install {package}"
        )


def _need_systemd_boot() -> None:
    if not SYSTEMD_BOOT_EFI.is_file():
        raise ComponentUnavailable(
            "qemu boot", f"{SYSTEMD_BOOT_EFI} is missing", hint="apt-get install systemd-boot-efi"
        )


@pytest.fixture(scope="module")
def lab_parts(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> LabParts:
    (kernel,) = (lab_world.kernels / "current").iterdir()
    work = tmp_path_factory.mktemp("boot-parts")
    kernel_dir = work / kernel.name
    shutil.copytree(kernel, kernel_dir)  # lab_world is read-only; the initramfs goes here
    publish_initramfs(kernel_dir, require=("ext4", "btrfs"))
    autobuilds = lab_world.releases / "amd64/autobuilds/current-stage3-amd64-openrc"
    (stage3,) = autobuilds.glob("stage3-amd64-openrc-*.tar.xz")
    stamp = Stamp(stage3.name.removeprefix("stage3-amd64-openrc-").removesuffix(".tar.xz"))
    root = work / "root"
    root.mkdir()
    local.run(["tar", "-xJpf", stage3, "-C", root, "--numeric-owner"], timeout=600)
    apply_plan(install_modules_plan(root, kernel_dir), {"local": local})
    return LabParts(kernel_dir, root, stamp)


@pytest.fixture
def make_disk(tmp_path: Path) -> Iterator[Callable[[RootFs], tuple[Disk, ExitStack]]]:
    """make_disk(fs) -> (Disk with its root mounted, the undo stack that unmounts and
    detaches: close it before booting)."""
    undo = ExitStack()

    def make(fs: RootFs) -> tuple[Disk, ExitStack]:
        image = tmp_path / "disk.img"
        with open(image, "xb") as f:
            f.truncate(IMAGE_MIB << 20)
        local.run([
            "sgdisk",
            "--new", f"1:0:+{ESP_MIB}M", "--typecode", "1:EF00", "--change-name", "1:ESP",
            "--new", "2:0:0", "--typecode", "2:8304", "--change-name", "2:root",
            image,
        ])  # fmt: skip
        # one loop device per partition (offset + size): the partition nodes of a
        # --partscan loop device need udev, which a container may not have
        table = json.loads(local.run(["sfdisk", "--json", image]).stdout)["partitiontable"]
        esp_dev, root_dev = (_loop_partition(image, p, undo) for p in table["partitions"])
        local.run(["mkfs.vfat", "-F", "32", "-n", "ESP", esp_dev])
        mkfs = {"ext4": ["mkfs.ext4", "-q", "-F"], "btrfs": ["mkfs.btrfs", "-q", "-f"]}[fs]
        local.run([*mkfs, root_dev], timeout=300)
        uuid = local.run(["blkid", "-s", "UUID", "-o", "value", root_dev]).stdout.strip()
        top = tmp_path / "top"
        top.mkdir()
        local.run(["mount", root_dev, top])
        undo.callback(local.run, ["umount", top])
        return Disk(image, EspImage(Path(esp_dev)), top, uuid), undo

    try:
        yield make
    finally:
        undo.close()


def _loop_partition(image: Path, part: dict[str, int], undo: ExitStack) -> str:
    argv = [
        "losetup", "--show", "--find",
        "--offset", str(part["start"] * 512), "--sizelimit", str(part["size"] * 512),
        image,
    ]  # fmt: skip
    dev = local.run(argv).stdout.strip()
    undo.callback(local.run, ["losetup", "--detach", dev])
    return dev


def _copy_root(parts: LabParts, dest: Path) -> None:
    local.run(["cp", "-a", f"{parts.root}/.", dest], timeout=600)


def _boot(disk: Disk, undo: ExitStack, workdir: Path, marker: str) -> BootRun:
    undo.close()  # unmount and detach: qemu gets the whole image, written out
    run = boot_image(disk.image, workdir, marker=marker, timeout=BOOT_TIMEOUT).require()
    print(f"UEFI boot to the marker: {run.seconds:.1f} s")
    return run


def test_an_ext4_install_boots(lab_parts: LabParts, make_disk, tmp_path: Path) -> None:
    disk, undo = make_disk(RootFs.ext4)
    _copy_root(lab_parts, disk.top)
    assert (disk.top / "lib").is_symlink()  # merged /usr survived the modules
    assert (disk.top / "lib/modules" / lab_parts.version / "kernel/fs/btrfs/btrfs.ko").is_file()
    gen = Generation("g1", RootIdentity.by_uuid(RootFs.ext4, disk.uuid), lab_parts.version)
    boot = BootSet((gen,), current="g1")
    assert install_boot(disk.esp, boot, lab_parts.kernels(), settings=LOADER) == ()
    assert verify_esp(disk.esp, boot, settings=LOADER) == ()
    run = _boot(disk, undo, tmp_path / "qemu", lab_parts.marker)
    assert run.line == lab_parts.marker
    assert f"root=UUID={disk.uuid} rootfstype=ext4 rw" in run.console


def test_a_btrfs_install_boots_its_current_generation(
    lab_parts: LabParts, make_disk, tmp_path: Path
) -> None:
    """Two generations as subvolumes, each init with its own marker: g1 installed first,
    then g2 added as current with g1 as the fallback. The default entry boots g2."""
    disk, undo = make_disk(RootFs.btrfs)
    local.run(["btrfs", "subvolume", "create", disk.top / "g1"])
    _copy_root(lab_parts, disk.top / "g1")
    local.run(["btrfs", "subvolume", "snapshot", disk.top / "g1", disk.top / "g2"])
    g2_stamp = Stamp("20250115T120000Z")
    write_init(disk.top / "g2", variant=Variant.openrc, stamp=g2_stamp)
    g1, g2 = (
        Generation(n, RootIdentity.by_uuid(RootFs.btrfs, disk.uuid, subvolume=n), lab_parts.version)
        for n in ("g1", "g2")
    )
    install_boot(disk.esp, BootSet((g1,), current="g1"), lab_parts.kernels(), settings=LOADER)
    boot = BootSet((g1, g2), current="g2", previous="g1")
    assert install_boot(disk.esp, boot, lab_parts.kernels(), settings=LOADER) == ()
    assert list_dir(disk.esp, "loader/entries") == ["g2d-g1.conf", "g2d-g2.conf"]
    assert read_text(disk.esp, "loader/loader.conf") == (
        "default g2d-g2.conf\ntimeout 0\neditor no\nconsole-mode keep\n"
    )
    assert verify_esp(disk.esp, boot, settings=LOADER) == ()
    run = _boot(disk, undo, tmp_path / "qemu", boot_marker(Variant.openrc, g2_stamp))
    assert "rootflags=subvol=g2 rw" in run.console


def test_the_initramfs_says_when_the_root_is_not_there(lab_parts: LabParts, tmp_path: Path) -> None:
    """Direct kernel boot (no firmware): a root UUID no disk has ends in the initramfs's
    own failure line, and g2d.onfail=poweroff ends the machine."""
    missing = "00000000-0000-4000-8000-000000000000"
    root = RootIdentity.by_uuid(RootFs.ext4, missing)
    cmdline = KernelCommandLine(
        consoles=("ttyS0",), extra=("g2d.rootwait=1", "g2d.onfail=poweroff")
    )
    run = boot_kernel(
        lab_parts.kernel_dir / "vmlinuz",
        lab_parts.kernel_dir / "initramfs",
        cmdline.render(root),
        tmp_path / "qemu",
        marker=lab_parts.marker,
        timeout=BOOT_TIMEOUT,
    )
    assert (run.ended, run.line) == (
        "failure",
        f"g2d-initramfs: FAILED: no device for root=UUID={missing} after 1s",
    )
    print(f"direct kernel boot to the initramfs's failure: {run.seconds:.1f} s")


def test_qemu_is_stopped_at_the_timeout(lab_parts: LabParts, tmp_path: Path) -> None:
    workdir = tmp_path / "qemu-timeout"
    run = boot_kernel(
        lab_parts.kernel_dir / "vmlinuz",
        lab_parts.kernel_dir / "initramfs",
        "console=ttyS0",
        workdir,
        marker=lab_parts.marker,
        timeout=1.0,
    )
    assert (run.ended, run.line) == ("timeout", "")
    assert 1.0 <= run.seconds < 10.0
    assert processes_with(str(workdir)) == []  # qemu's argv names its console file in workdir
    with pytest.raises(BootFailed) as err:
        run.require()
    assert str(err.value) == (
        f"the guest did not print its marker (timeout after {run.seconds:.1f} s)\n"
        + tail(run.console, 30)
    )
