"""Roots kept in a directory (``g2d.rootdir=``), the install's root identity, the sibling
generations' roots and the kernel chosen from a kernels repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from g2d.core.boot_entries import InvalidBootSpec, KernelCommandLine, RootFs, RootIdentity
from g2d.core.uri import FsKind
from g2d.install.boot import BootSetupFailed
from g2d.install.boot_wiring import pick_kernel, sibling_root
from g2d.install.configure import InstallFacts

UUID = "0b8c7d1e-4a5f-4e2b-9c3d-7e6f5a4b3c2d"


def facts(fs: FsKind, *, subvolume: bool = False, dataset: str | None = None) -> InstallFacts:
    return InstallFacts(fs, "/t/g2", "/t", "/dev/sdb2", None if dataset else UUID, None,
                        None if dataset else "/g2", subvolume, "tank" if dataset else None,
                        dataset, "/dev/sdb1", None, None, "/efi", None)  # fmt: skip


def test_a_root_in_a_directory_is_named_on_the_command_line() -> None:
    root = RootIdentity.by_uuid("ext4", UUID, directory="/g1")
    assert KernelCommandLine(consoles=("ttyS0",)).render(root) == (
        f"root=UUID={UUID} rootfstype=ext4 g2d.rootdir=/g1 rw console=ttyS0"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RootIdentity.by_uuid("ext4", UUID, directory="g1"),
         "directory 'g1' is not an absolute path in an ext4, xfs or btrfs root without a "
         "subvolume"),
        (lambda: RootIdentity.by_uuid("btrfs", UUID, subvolume="g1", directory="/g1"),
         "directory '/g1' is not an absolute path in an ext4, xfs or btrfs root without a "
         "subvolume"),
        (lambda: KernelCommandLine(extra=("g2d.rootdir=/g2",)),
         "kernel argument 'g2d.rootdir=/g2' is set by g2d"),
    ],
)  # fmt: skip
def test_wrong_directories_are_refused(make, message: str) -> None:
    with pytest.raises(InvalidBootSpec) as err:
        make()
    assert str(err.value) == message


def test_the_install_facts_name_their_root_and_its_siblings() -> None:
    ext4 = facts(FsKind.ext4)
    assert ext4.kernel_root_args() == [f"root=UUID={UUID}", "rootfstype=ext4", "g2d.rootdir=/g2"]
    assert sibling_root(ext4, "g3").directory == "/g3"
    btrfs = facts(FsKind.btrfs, subvolume=True)
    assert btrfs.kernel_root_args() == [
        f"root=UUID={UUID}",
        "rootfstype=btrfs",
        "rootflags=subvol=/g2",
    ]
    assert sibling_root(btrfs, "g1").kernel_args()[2] == "rootflags=subvol=/g1"
    zfs = facts(FsKind.zfs, dataset="tank/sys/g2")
    assert zfs.kernel_root_args() == ["root=ZFS=tank/sys/g2"]
    assert sibling_root(zfs, "g3") == RootIdentity(RootFs.zfs, dataset="tank/sys/g3")


def test_the_newest_kernel_is_chosen_unless_one_is_named(tmp_path: Path) -> None:
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64", "6.12.1-gentoo"):
        (tmp_path / "current" / version).mkdir(parents=True)
        (tmp_path / "current" / version / "vmlinuz").write_bytes(b"")
    assert pick_kernel(tmp_path).name == "6.12.1-gentoo"
    assert pick_kernel(tmp_path, "6.1.0-9-amd64").name == "6.1.0-9-amd64"
    with pytest.raises(BootSetupFailed) as err:
        pick_kernel(tmp_path, "5.15.0")
    assert str(err.value) == f"kernel 5.15.0 is not published in {tmp_path}/current"
    assert err.value.hint == "published: 6.1.0-9-amd64, 6.1.0-10-amd64, 6.12.1-gentoo"
    with pytest.raises(BootSetupFailed) as none:
        pick_kernel(tmp_path / "empty")
    assert str(none.value) == f"no kernel is published in {tmp_path}/empty/current"
