"""Boot entries as text: kernel command lines, systemd-boot's files and rEFInd's stanzas."""

from __future__ import annotations

import pytest

from g2d.core.boot_entries import (
    BootSet,
    Generation,
    InvalidBootSpec,
    KernelCommandLine,
    LoaderSettings,
    RootFs,
    RootIdentity,
    initramfs_cannot_boot,
    systemd_boot_files,
)
from g2d.core.refind_conf import refind_conf

UUID = "0f3c2a5e-9d7b-4c1a-8e2f-6a5b4c3d2e1f"
PARTUUID = "2af01b1a-1d29-4edc-968a-d81cc850e86a"
KERNEL = "6.1.0-56-cloud-amd64"


def gen(name: str, root: RootIdentity | None = None, kernel: str = KERNEL) -> Generation:
    return Generation(name, root or RootIdentity.by_uuid(RootFs.ext4, UUID), kernel)


@pytest.mark.parametrize(
    ("root", "args"),
    [
        (RootIdentity.by_uuid("ext4", UUID), ("root=UUID=" + UUID, "rootfstype=ext4")),
        (RootIdentity.by_uuid("xfs", UUID.upper()), ("root=UUID=" + UUID, "rootfstype=xfs")),
        (
            RootIdentity.by_uuid("btrfs", UUID, subvolume="sys/g2"),
            ("root=UUID=" + UUID, "rootfstype=btrfs", "rootflags=subvol=sys/g2"),
        ),
        (
            RootIdentity.by_partuuid("ext4", PARTUUID),
            (f"root=PARTUUID={PARTUUID}", "rootfstype=ext4"),
        ),
        (RootIdentity.zfs("saturn/g2"), ("root=ZFS=saturn/g2",)),
    ],
)
def test_root_kernel_args(root: RootIdentity, args: tuple[str, ...]) -> None:
    assert root.kernel_args() == args


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: RootIdentity(RootFs.ext4),
            "a root on ext4 needs exactly one of uuid or partuuid, got 'ext4 '",
        ),
        (
            lambda: RootIdentity(RootFs.ext4, uuid=UUID, partuuid=PARTUUID),
            f"a root on ext4 needs exactly one of uuid or partuuid, got "
            f"'ext4 uuid={UUID} partuuid={PARTUUID}'",
        ),
        (
            lambda: RootIdentity.by_uuid("ext4", "not-a-uuid"),
            "'not-a-uuid' is not a UUID (8-4-4-4-12 hex digits)",
        ),
        (
            lambda: RootIdentity.by_uuid("ext4", UUID, subvolume="g2"),
            "subvolume 'g2' is not a btrfs subvolume path of a btrfs root",
        ),
        (
            lambda: RootIdentity.by_uuid("btrfs", UUID, subvolume="/g2 x"),
            "subvolume '/g2 x' is not a btrfs subvolume path of a btrfs root",
        ),
        (
            lambda: RootIdentity(RootFs.xfs, uuid=UUID, dataset="p/x"),
            "a root on xfs has no dataset, got 'p/x'",
        ),
        (
            lambda: RootIdentity(RootFs.zfs, uuid=UUID, dataset="p/x"),
            "a root on zfs is named by its dataset (pool/ds) alone, got "
            f"'zfs uuid={UUID} dataset=p/x'",
        ),
        (
            lambda: RootIdentity.zfs("-p/x"),
            "a root on zfs is named by its dataset (pool/ds) alone, got 'zfs dataset=-p/x'",
        ),
    ],
)
def test_bad_roots_are_refused(make, message: str) -> None:
    with pytest.raises(InvalidBootSpec) as err:
        make()
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("name", "kernel", "message"),
    [
        ("g2+1", KERNEL, "generation name 'g2+1' cannot name a boot entry"),
        ("../g2", KERNEL, "generation name '../g2' cannot name a boot entry"),
        ("", KERNEL, "generation name '' cannot name a boot entry"),
        ("g2", "6.1/../x", "kernel version '6.1/../x' is not a kernel release name"),
    ],
)
def test_bad_generations_are_refused(name: str, kernel: str, message: str) -> None:
    with pytest.raises(InvalidBootSpec) as err:
        gen(name, kernel=kernel)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("names", "current", "previous", "message"),
    [
        ((), "g1", None, "a boot set needs at least one generation"),
        (("g1", "g1"), "g1", None, "generation names repeat: g1, g1"),
        (("g1", "g2"), "g3", None, "current generation 'g3' is not in ['g1', 'g2']"),
        (("g1", "g2"), "g2", "g2", "previous generation 'g2' must be another one of ['g1', 'g2']"),
        (("g1", "g2"), "g2", "g0", "previous generation 'g0' must be another one of ['g1', 'g2']"),
    ],
)
def test_bad_boot_sets_are_refused(names, current, previous, message: str) -> None:
    with pytest.raises(InvalidBootSpec) as err:
        BootSet(tuple(gen(n) for n in names), current=current, previous=previous)
    assert str(err.value) == message


def test_command_line_puts_the_serial_console_last() -> None:
    root = RootIdentity.by_uuid("btrfs", UUID, subvolume="g2")
    assert KernelCommandLine().render(root) == (
        f"root=UUID={UUID} rootfstype=btrfs rootflags=subvol=g2 rw "
        "console=tty0 console=ttyS0,115200"
    )
    quiet = KernelCommandLine(consoles=("ttyS1,9600",), read_write=False, extra=("quiet",))
    assert (
        quiet.render(RootIdentity.zfs("saturn/g2"))
        == "root=ZFS=saturn/g2 ro console=ttyS1,9600 quiet"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("a b",), "kernel argument 'a b' must be one word without quotes"),
        (('x="y"',), "kernel argument 'x=\"y\"' must be one word without quotes"),
        (("root=/dev/sda1",), "kernel argument 'root=/dev/sda1' is set by g2d"),
        (("console=tty1",), "kernel argument 'console=tty1' is set by g2d"),
    ],
)
def test_bad_kernel_arguments_are_refused(extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidBootSpec) as err:
        KernelCommandLine(extra=extra)
    assert str(err.value) == message


def test_systemd_boot_files_one_entry_per_generation_default_current() -> None:
    g1 = gen("g1", kernel="6.1.0-55-cloud-amd64")
    g2 = gen("g2", RootIdentity.zfs("saturn/g2"))
    boot = BootSet((g1, g2), current="g2", previous="g1")
    files = systemd_boot_files(boot, settings=LoaderSettings(timeout=5))
    assert files == {
        "loader/entries/g2d-g1.conf": (
            "title      Gentoo g1 (6.1.0-55-cloud-amd64)\n"
            "linux      /g2d/6.1.0-55-cloud-amd64/vmlinuz\n"
            "initrd     /g2d/6.1.0-55-cloud-amd64/initramfs\n"
            f"options    root=UUID={UUID} rootfstype=ext4 rw console=tty0 console=ttyS0,115200\n"
        ),
        "loader/entries/g2d-g2.conf": (
            f"title      Gentoo g2 ({KERNEL})\n"
            f"linux      /g2d/{KERNEL}/vmlinuz\n"
            f"initrd     /g2d/{KERNEL}/initramfs\n"
            "options    root=ZFS=saturn/g2 rw console=tty0 console=ttyS0,115200\n"
        ),
        "loader/loader.conf": "default g2d-g2.conf\ntimeout 5\neditor no\nconsole-mode keep\n",
    }
    assert boot.kernels == ("6.1.0-55-cloud-amd64", KERNEL)


def test_refind_conf_lists_current_then_fallback_then_older() -> None:
    boot = BootSet(tuple(gen(n) for n in ("g1", "g2", "g3", "g10")), current="g3", previous="g2")
    text = refind_conf(boot, KernelCommandLine(consoles=("ttyS0",)), LoaderSettings(timeout=0))
    options = f'    options "root=UUID={UUID} rootfstype=ext4 rw console=ttyS0"'

    def stanza(name: str, note: str = "") -> str:
        return (
            f'menuentry "Gentoo {name} ({KERNEL})" {{\n'
            f"    loader  /g2d/{KERNEL}/vmlinuz\n"
            f"    initrd  /g2d/{KERNEL}/initramfs\n"
            f"{options}\n{note}}}\n"
        )

    assert text == (
        "# written by g2d: one stanza per installed generation, the current one first\n"
        "timeout 0\nscanfor manual\ndefault_selection 1\n\n"
        + stanza("g3")
        + "\n"
        + stanza("g2", "    # the previous generation, to fall back to\n")
        + "\n"
        + stanza("g10")
        + "\n"
        + stanza("g1")
    )


def test_what_the_initramfs_cannot_boot() -> None:
    assert initramfs_cannot_boot(RootIdentity.by_uuid("btrfs", UUID)) is None
    assert initramfs_cannot_boot(RootIdentity.zfs("saturn/g2")) == (
        "root=ZFS=saturn/g2: g2d's initramfs cannot import ZFS pools"
    )
    assert initramfs_cannot_boot(RootIdentity.by_partuuid("ext4", PARTUUID)) == (
        f"root=PARTUUID={PARTUUID}: g2d's initramfs finds roots by UUID only"
    )


def test_loader_timeout_bounds() -> None:
    with pytest.raises(InvalidBootSpec) as err:
        LoaderSettings(timeout=-1)
    assert str(err.value) == "loader timeout -1 is not 0..600 seconds"
