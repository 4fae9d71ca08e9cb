"""Module load order from depmod's files, and the initramfs's cpio archive format."""

from __future__ import annotations

import pytest

from g2d.core.cpio_newc import Entry, write_newc
from g2d.core.kernel_modules import ModuleIndex, UnknownModule, module_name

# shaped like the lab kernel's own files (6.1.0-56-cloud-amd64), cut down
DEP = (
    "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n"
    "kernel/fs/btrfs/btrfs.ko: kernel/crypto/xor.ko kernel/lib/raid6/raid6_pq.ko"
    " kernel/lib/zstd/zstd_compress.ko kernel/lib/libcrc32c.ko\n"
    "kernel/crypto/xor.ko:\n"
    "kernel/lib/raid6/raid6_pq.ko:\n"
    "kernel/lib/zstd/zstd_compress.ko:\n"
    "kernel/lib/libcrc32c.ko:\n"
    "kernel/crypto/xxhash_generic.ko:\n"
    "kernel/crypto/blake2b_generic.ko:\n"
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko"
    " kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/arch/x86/crypto/crc32c-intel.ko.xz:\n"
)
BUILTIN = "kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n"
SOFTDEP = """\
# Soft dependencies extracted from modules themselves.
softdep btrfs pre: blake2b-256
softdep btrfs pre: xxhash64
softdep btrfs pre: crypto-crc32c
softdep libcrc32c pre: crc32c
softdep vfio post: vfio_iommu_type1
"""
ALIAS = """\
alias crypto-blake2b-256 blake2b_generic
alias blake2b-256 blake2b_generic
alias crypto-xxhash64 xxhash_generic
alias crypto-crc32c crc32c_intel
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk
"""


@pytest.fixture
def index() -> ModuleIndex:
    return ModuleIndex.parse(DEP, BUILTIN, SOFTDEP, ALIAS)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("kernel/fs/btrfs/btrfs.ko", "btrfs"),
        ("kernel/arch/x86/crypto/crc32c-intel.ko.xz", "crc32c_intel"),
        ("kernel/x/a-b.ko.zst", "a_b"),
        ("crc32c-intel", "crc32c_intel"),
    ],
)
def test_module_name(path: str, name: str) -> None:
    assert module_name(path) == name


def test_dependencies_and_soft_dependencies_come_first(index: ModuleIndex) -> None:
    assert index.load_order(["virtio_blk", "btrfs", "ext4"]) == (
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/crypto/blake2b_generic.ko",
        "kernel/crypto/xxhash_generic.ko",
        "kernel/arch/x86/crypto/crc32c-intel.ko.xz",
        "kernel/crypto/xor.ko",
        "kernel/lib/raid6/raid6_pq.ko",
        "kernel/lib/zstd/zstd_compress.ko",
        "kernel/lib/libcrc32c.ko",
        "kernel/fs/btrfs/btrfs.ko",
    )


def test_each_module_once_and_built_ins_skipped(index: ModuleIndex) -> None:
    assert index.load_order(["xfs", "ext4"], optional=["btrfs", "nvme", "crc32c-intel"]) == (
        "kernel/arch/x86/crypto/crc32c-intel.ko.xz",  # libcrc32c's soft "crc32c", via alias
        "kernel/lib/libcrc32c.ko",
        "kernel/fs/xfs/xfs.ko",
        "kernel/crypto/blake2b_generic.ko",
        "kernel/crypto/xxhash_generic.ko",
        "kernel/crypto/xor.ko",
        "kernel/lib/raid6/raid6_pq.ko",
        "kernel/lib/zstd/zstd_compress.ko",
        "kernel/fs/btrfs/btrfs.ko",
    )


def test_a_required_module_the_kernel_lacks_is_refused(index: ModuleIndex) -> None:
    with pytest.raises(UnknownModule) as err:
        index.load_order(["virtio_blk", "zfs"])
    assert str(err.value) == "the kernel has no module 'zfs' and does not build it in"
    assert err.value.hint == "check the kernel config, or leave the module out"


def test_cpio_newc_layout() -> None:
    data = write_newc(
        [
            Entry.directory("dev"),
            Entry.char_device("dev/console", 5, 1),
            Entry.file("init", b"#!/bin/sh\n", 0o755),
            Entry.symlink("sh", "busybox"),
        ]
    )
    # header: magic, then 13 8-digit hex fields; the name padded so data starts 4-aligned
    first = data[:110]
    assert first[:6] == b"070701"
    fields = [int(first[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
    assert fields == [1, 0o40755, 0, 0, 2, 0, 0, 0, 0, 0, 0, 4, 0]
    assert data[110:114] == b"dev\0"
    console = data.index(b"dev/console\0") - 110
    cfields = [int(data[console + 6 + 8 * i : console + 14 + 8 * i], 16) for i in range(13)]
    assert cfields[1] == 0o20600 and cfields[9:11] == [5, 1]
    assert data.endswith(b"TRAILER!!!\0" + b"\0" * (-(110 + 11) % 4))
    assert len(data) % 4 == 0
    assert write_newc([Entry.file("a", b"x")]) == write_newc([Entry.file("a", b"x")])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([Entry.file("a/b", b"")], "cpio member 'a/b' comes before its directory 'a'"),
        ([Entry.file("a", b""), Entry.file("a", b"")], "cpio member 'a' appears twice"),
    ],
)
def test_cpio_refuses_what_the_kernel_cannot_unpack(entries, message: str) -> None:
    with pytest.raises(ValueError) as err:
        write_newc(entries)
    assert str(err.value) == message


def test_cpio_entry_paths_are_relative() -> None:
    with pytest.raises(ValueError) as err:
        Entry.file("/init", b"")
    assert str(err.value) == "cpio member path '/init' must be relative and non-empty"
