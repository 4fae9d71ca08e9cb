"""The boot side of install without booting: g2d's initramfs built from the lab kernel (read
back with the real cpio and zstd), and the ESP written by plan, as a directory and as a vfat
image through mtools, idempotently."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from g2d.core.boot_entries import (
    BootSet,
    Generation,
    LoaderSettings,
    RootFs,
    RootIdentity,
    systemd_boot_files,
)
from g2d.core.kernel_modules import UnknownModule
from g2d.core.refind_conf import REFIND_CONF, refind_conf
from g2d.hosts.local import LocalHost
from g2d.install.boot import (
    BootSetupFailed,
    KernelFiles,
    boot_plan,
    install_boot,
    stage_texts,
    verify_esp,
)
from g2d.install.esp import HOST, EspImage, list_dir, read_text
from g2d.install.initramfs import (
    Initramfs,
    InitramfsFailed,
    build_initramfs,
    is_static_elf,
    publish_initramfs,
)
from g2d.lab.layout import LabLayout
from g2d.storage.apply import apply_plan

UUID = "0f3c2a5e-9d7b-4c1a-8e2f-6a5b4c3d2e1f"
LOADER = LoaderSettings(timeout=1)
local = LocalHost()


@pytest.fixture(scope="module")
def kernel(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Initramfs:
    """A copy of the lab kernel with its initramfs published beside it."""
    (src,) = (lab_world.kernels / "current").iterdir()
    kernel_dir = tmp_path_factory.mktemp("kernels") / src.name
    shutil.copytree(src, kernel_dir)
    return publish_initramfs(kernel_dir, require=("ext4", "btrfs"))


def _listing(initramfs: Path) -> dict[str, str]:
    cpio = local.run(["cpio", "-itv", "--quiet"], stdin=local.run(["zstd", "-dc", initramfs]).out)
    # "crw-------   1 root root 5,   1 Jan  1  1970 dev/console": mode and name
    return {line.split()[-1]: line.split()[0] for line in cpio.lines() if "->" not in line} | {
        line.split()[-3]: "link->" + line.split()[-1] for line in cpio.lines() if "->" in line
    }


def test_the_initramfs_holds_busybox_init_and_the_modules_in_order(kernel: Initramfs) -> None:
    v = kernel.version
    assert kernel.path.name == "initramfs" and kernel.compression == "zstd"
    files = _listing(kernel.path)
    assert files["init"] == "-rwxr-xr-x"
    assert files["dev/console"] == "crw-------"
    assert files["bin/busybox"] == "-rwxr-xr-x"
    assert files["bin/sh"] == files["bin/switch_root"] == files["bin/findfs"] == "link->busybox"
    assert kernel.modules[""] == (
        "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_pci.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/scsi/scsi_common.ko",
        "kernel/drivers/scsi/scsi_mod.ko",
        "kernel/drivers/scsi/virtio_scsi.ko",
        "kernel/drivers/scsi/sd_mod.ko",
        "kernel/arch/x86/crypto/crc32c-intel.ko",
    )
    assert kernel.modules["ext4"] == ()  # built into the cloud kernel
    assert kernel.modules["btrfs"][-1] == "kernel/fs/btrfs/btrfs.ko"
    assert kernel.modules["xfs"] == ("kernel/lib/libcrc32c.ko", "kernel/fs/xfs/xfs.ko")
    for path in (p for paths in kernel.modules.values() for p in paths):
        assert files[f"lib/modules/{v}/{path}"] == "-rw-r--r--"
    for fs in ("", ".ext4", ".btrfs", ".xfs"):
        assert files[f"etc/g2d/modules{fs}"] == "-rw-r--r--"


def test_the_initramfs_is_reproducible(kernel: Initramfs, tmp_path: Path) -> None:
    again = build_initramfs(kernel.path.parent, tmp_path / "initramfs", require=("btrfs",))
    assert again.path.read_bytes() == kernel.path.read_bytes()


def test_a_kernel_without_a_required_module_is_refused(kernel: Initramfs, tmp_path: Path) -> None:
    with pytest.raises(UnknownModule) as err:
        build_initramfs(kernel.path.parent, tmp_path / "initramfs", require=("zfs",))
    assert str(err.value) == "the kernel has no module 'zfs' and does not build it in"
    assert not (tmp_path / "initramfs").exists()


def test_busybox_must_be_static(kernel: Initramfs, tmp_path: Path) -> None:
    assert is_static_elf(Path("/bin/busybox").read_bytes())
    assert not is_static_elf(Path("/bin/ls").read_bytes())
    with pytest.raises(InitramfsFailed) as err:
        build_initramfs(kernel.path.parent, tmp_path / "initramfs", busybox=Path("/bin/ls"))
    assert str(err.value) == (
        "/bin/ls is not a static x86-64 program; an initramfs has no libc for it"
    )
    assert err.value.hint == "apt-get install busybox-static"


def _gens(kernel: Initramfs, *names: str) -> tuple[Generation, ...]:
    root = RootIdentity.by_uuid(RootFs.ext4, UUID)
    return tuple(Generation(n, root, kernel.version) for n in names)


def test_the_esp_plan_is_idempotent_and_keeps_older_entries(
    kernel: Initramfs, tmp_path: Path
) -> None:
    esp = tmp_path / "esp"
    esp.mkdir()
    kernels = {kernel.version: KernelFiles.in_dir(kernel.path.parent)}
    g1, g2 = _gens(kernel, "g1", "g2")
    first = BootSet((g1,), current="g1")

    def apply(boot: BootSet) -> tuple[list[int], list[str]]:
        staged = stage_texts(systemd_boot_files(boot, settings=LOADER), tmp_path / "staged")
        plan = boot_plan(esp, boot, kernels, staged)
        return apply_plan(plan, {HOST: local}), [s.why for s in plan.steps]

    ran, whys = apply(first)
    v = kernel.version
    assert whys == [
        *(f"directory {d} on the ESP" for d in ("EFI", "EFI/BOOT")),
        "systemd-boot at the removable-media path",
        "directory EFI/systemd on the ESP",
        "systemd-boot at its own path",
        *(f"directory {d} on the ESP" for d in ("g2d", f"g2d/{v}")),
        f"kernel {v}",
        f"initramfs for {v}",
        *(f"directory {d} on the ESP" for d in ("loader", "loader/entries")),
        "boot entry loader/entries/g2d-g1.conf",
        "default entry: g1",
    ]
    assert ran == list(range(len(whys)))
    assert apply(first)[0] == []  # every step's effect is already there
    assert verify_esp(esp, first, settings=LOADER) == ()
    second = BootSet((g2,), current="g2", previous=None)
    apply(second)
    assert list_dir(esp, "loader/entries") == ["g2d-g1.conf", "g2d-g2.conf"]
    assert read_text(esp, "loader/loader.conf").startswith("default g2d-g2.conf\n")
    (esp / "loader/entries/g2d-g2.conf").write_text("title tampered\n")
    (esp / "EFI/BOOT/BOOTX64.EFI").unlink()
    assert verify_esp(esp, second, settings=LOADER) == (
        "EFI/BOOT/BOOTX64.EFI is missing",
        "loader/entries/g2d-g2.conf differs from what g2d would write",
    )


def test_a_vfat_image_is_written_through_mtools(kernel: Initramfs, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with open(image, "xb") as f:
        f.truncate(80 << 20)
    local.run(["mkfs.vfat", "-F", "32", "--offset", "2048", image, str(64 << 10)])
    esp = EspImage(image, offset=2048 * 512)
    g1, g2 = _gens(kernel, "g1", "g2")
    boot = BootSet((g1, g2), current="g2", previous="g1")
    kernels = {kernel.version: KernelFiles.in_dir(kernel.path.parent)}
    for _ in range(2):  # the second run overwrites with the same bytes
        assert install_boot(esp, boot, kernels, settings=LOADER, refind=True) == ()
    assert verify_esp(esp, boot, settings=LOADER) == ()
    assert read_text(esp, REFIND_CONF) == refind_conf(boot, settings=LOADER)
    assert list_dir(esp, "") == ["EFI", "g2d", "loader"]
    assert list_dir(esp, f"g2d/{kernel.version}") == ["initramfs", "vmlinuz"]


def test_missing_kernel_files_and_unbootable_roots(kernel: Initramfs, tmp_path: Path) -> None:
    bare = tmp_path / kernel.version
    bare.mkdir()
    shutil.copyfile(kernel.path.parent / "vmlinuz", bare / "vmlinuz")
    (g1,) = _gens(kernel, "g1")
    esp = tmp_path / "esp"
    with pytest.raises(BootSetupFailed) as err:
        install_boot(esp, BootSet((g1,), current="g1"), {kernel.version: KernelFiles.in_dir(bare)})
    assert str(err.value) == f"{bare}/initramfs is missing"
    assert err.value.hint == "build it with g2d.install.initramfs.publish_initramfs"
    assert not esp.exists()
    esp.mkdir()
    g3 = Generation("g3", RootIdentity.zfs("saturn/g3"), kernel.version)
    kernels = {kernel.version: KernelFiles.in_dir(kernel.path.parent)}
    warnings = install_boot(esp, BootSet((g1, g3), current="g3", previous="g1"), kernels)
    assert warnings == ("g3: root=ZFS=saturn/g3: g2d's initramfs cannot import ZFS pools",)
