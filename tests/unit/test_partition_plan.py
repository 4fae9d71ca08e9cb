"""The disk layout of an install as commands: pure, with every identifier fixed up front."""

from __future__ import annotations

import pytest

from g2d.core.partition_plan import (
    MIB,
    DiskIds,
    DiskLayout,
    Encryption,
    LayoutError,
    ZfsFeatures,
    partition_plan,
)
from g2d.core.uri import parse_boot

IDS = DiskIds(
    disk_guid="11111111-1111-4111-8111-111111111111",
    esp_partuuid="22222222-2222-4222-8222-222222222222",
    bios_partuuid="33333333-3333-4333-8333-333333333333",
    root_partuuid="44444444-4444-4444-8444-444444444444",
    esp_serial="ABCD1234",
    fs_uuid="55555555-5555-4555-8555-555555555555",
    hostid="0a0b0c0d",
)
# the property tables `zfs get` prints: zfs-fuse 0.7 (pool v23) and OpenZFS 2.1
ZFS_FUSE = ZfsFeatures({"compression": "on | off | lzjb | gzip | gzip-[1-9] | zle",
                        "xattr": "on | off", "atime": "on | off"})  # fmt: skip
OPENZFS = ZfsFeatures(
    {"compression": "on | off | lzjb | gzip | gzip-[1-9] | zle | lz4 | zstd",
     "xattr": "on | off | dir | sa", "acltype": "off | nfsv4 | posix",
     "dnodesize": "legacy | auto | 1k | 2k", "relatime": "on | off"},
    encryption=True,
)  # fmt: skip


def test_zfs_options_follow_what_the_zfs_offers() -> None:
    assert ZFS_FUSE.dataset_options() == ["compression=on", "xattr=on"]
    assert OPENZFS.dataset_options() == [
        "compression=lz4", "acltype=posixacl", "xattr=sa", "dnodesize=auto", "relatime=on"
    ]  # fmt: skip


def test_a_zfs_pool_with_encryption_names_only_the_key_location() -> None:
    key = Encryption("file:///etc/zfs/saturn.key", "raw")
    layout = DiskLayout(parse_boot("zfs:///dev/nvme0n1:/saturn/g2"), IDS, "/run/g2d/i",
                        zfs=OPENZFS, encryption=key)  # fmt: skip
    assert layout.root == "/dev/nvme0n1p2"
    assert " ".join(layout.zpool_create_argv()) == (
        "zpool create -f -o ashift=12 -o cachefile=none -O compression=lz4 "
        "-O acltype=posixacl -O xattr=sa -O dnodesize=auto -O relatime=on "
        "-O encryption=aes-256-gcm -O keyformat=raw -O keylocation=file:///etc/zfs/saturn.key "
        "-m none -R /run/g2d/i saturn /dev/nvme0n1p2"
    )


def test_the_whole_plan_for_ext4_with_a_bios_boot_partition() -> None:
    layout = DiskLayout(parse_boot("ext4:///dev/sdb:/g1"), IDS, "/run/g2d/i", esp_mib=256,
                        bios_boot=True)  # fmt: skip
    gpt = (
        "sgdisk --disk-guid 11111111-1111-4111-8111-111111111111"
        " --new 1:0:+256M --typecode 1:EF00 --change-name 1:EFI"
        " --partition-guid 1:22222222-2222-4222-8222-222222222222"
        " --new 2:0:+1M --typecode 2:EF02 --change-name 2:BIOS"
        " --partition-guid 2:33333333-3333-4333-8333-333333333333"
        " --new 3:0:0 --typecode 3:8300 --change-name 3:g2d-root"
        " --partition-guid 3:44444444-4444-4444-8444-444444444444 /dev/sdb"
    )
    mkfs = "mkfs.ext4 -q -F -L g2d-root -U 55555555-5555-4555-8555-555555555555 /dev/sdb3"
    assert partition_plan(layout).render().splitlines() == [
        "plan: partition /dev/sdb and make ext4",
        "  1. local: wipefs --all --quiet /dev/sdb  # wipe the signatures on /dev/sdb",
        "  2. local: sgdisk --zap-all /dev/sdb  # destroy any old partition table on /dev/sdb",
        f"  3. local: {gpt}  # write the GPT on /dev/sdb",
        "  4. local: partx --update /dev/sdb  # have the kernel read the new table of /dev/sdb",
        "  5. local: wipefs --all --quiet /dev/sdb1  # wipe what was left in /dev/sdb1",
        "  6. local: wipefs --all --quiet /dev/sdb2  # wipe what was left in /dev/sdb2",
        "  7. local: wipefs --all --quiet /dev/sdb3  # wipe what was left in /dev/sdb3",
        "  8. local: mkfs.vfat -F 32 -n EFI -i ABCD1234 /dev/sdb1  # FAT32 on the ESP /dev/sdb1",
        f"  9. local: {mkfs}  # ext4 on /dev/sdb3",
        "  10. local: mkdir -p -- /run/g2d/i  # the mount point for the install",
        "  11. local: mount -t ext4 /dev/sdb3 /run/g2d/i  # mount /dev/sdb3 at /run/g2d/i",
    ]


def test_the_size_needed_counts_tables_esp_and_the_file_systems_least() -> None:
    xfs = DiskLayout(parse_boot("xfs:///dev/sdb:/g1"), IDS, "/i", esp_mib=40)
    assert xfs.size_needed(1 * MIB) == (2 + 40 + 300) * MIB  # xfs takes 300 MiB at least
    ext4 = DiskLayout(parse_boot("ext4:///dev/sdb:/g1"), IDS, "/i", esp_mib=40)
    assert ext4.size_needed(400 * MIB) == (2 + 40 + 400 + 100 + 32) * MIB  # data + a quarter


@pytest.mark.parametrize(
    ("kwargs", "message", "hint"),
    [
        ({"esp_mib": 32}, "an ESP of 32 MiB is too small for FAT32", "give at least 33 MiB"),
        ({"zfs": ZFS_FUSE, "encryption": Encryption("prompt")},
         "zfs:///dev/sdb:/usb/g1: this ZFS cannot encrypt",
         "install without a key location, or on a host whose ZFS has encryption"),
        ({}, "a ZFS layout needs the ZFS's features (ZfsFeatures)", None),
    ],
)  # fmt: skip
def test_layouts_that_cannot_work(kwargs: dict, message: str, hint: str | None) -> None:
    with pytest.raises(LayoutError) as refused:
        DiskLayout(parse_boot("zfs:///dev/sdb:/usb/g1"), IDS, "/i", **kwargs)
    assert (str(refused.value), refused.value.hint) == (message, hint)


def test_bad_encryption_and_label_options() -> None:
    with pytest.raises(LayoutError) as bad_key:
        Encryption("/etc/zfs/key")
    assert str(bad_key.value) == "key location '/etc/zfs/key' is neither prompt nor file:///..."
    with pytest.raises(LayoutError) as long_label:
        DiskLayout(parse_boot("xfs:///dev/sdb:/g1"), IDS, "/i", label="much-too-long")
    assert str(long_label.value) == "xfs labels take 12 characters at most, not 'much-too-long'"


def test_ids_round_trip_and_the_esp_uuid_is_how_blkid_shows_it() -> None:
    assert DiskIds.from_json(IDS.to_json()) == IDS
    assert IDS.esp_uuid == "ABCD-1234"
    fresh = DiskIds.new()
    assert fresh != DiskIds.new() and len(fresh.hostid) == 8 and len(fresh.esp_serial) == 8
