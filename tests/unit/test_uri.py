"""Target URIs: every form the old tool wrote, hostile input, and round trips."""

from __future__ import annotations

import json
import pickle
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from g2d.core.errors import InvalidTarget
from g2d.core.uri import (
    Backend,
    BootTarget,
    FsKind,
    HostAddress,
    Target,
    parse_any,
    parse_boot,
    parse_target,
)

ROOT_AT_SRV = HostAddress("10.1.0.1", user="root")

# text -> the value it parses to. Each text is canonical: str(value) gives it back.
GOOD_TARGETS: list[tuple[str, Target]] = [
    # bare names from the old deploy.sh / update.sh (work=zpool/plasma, work=pool/set)
    ("zpool/plasma", Target(Backend.auto, "zpool/plasma")),
    ("pool/set", Target(Backend.auto, "pool/set")),
    ("btrfs_mount/subvol", Target(Backend.auto, "btrfs_mount/subvol")),
    ("tank", Target(Backend.auto, "tank")),
    ("wSys/plasma@g1-s1", Target(Backend.auto, "wSys/plasma", "g1-s1")),
    ("/path/to/rootfs", Target(Backend.auto, "/path/to/rootfs")),
    ("/", Target(Backend.auto, "/")),  # update.sh work=/ : the running system
    ("/srv/roots/g1@safe", Target(Backend.auto, "/srv/roots/g1", "safe")),
    # install.sh sources
    ("zfs://wSys/hardened@safe", Target(Backend.zfs, "wSys/hardened", "safe")),
    (
        "zfs://root@10.1.0.1:/wSys/gnome@safe",
        Target(Backend.zfs, "wSys/gnome", "safe", ROOT_AT_SRV),
    ),
    (
        "zfs://root@localhost:/pool/set@safe",
        Target(Backend.zfs, "pool/set", "safe", HostAddress("localhost", user="root")),
    ),
    (
        "zfs://user@host:2222:/pool/set",
        Target(Backend.zfs, "pool/set", None, HostAddress("host", "user", 2222)),
    ),
    ("zfs://backup:/tank/g2", Target(Backend.zfs, "tank/g2", None, HostAddress("backup"))),
    (
        "zfs://root@[::1]:2222:/tank/g2",
        Target(Backend.zfs, "tank/g2", None, HostAddress("::1", "root", 2222)),
    ),
    ("zfs://tank/a:b/c", Target(Backend.zfs, "tank/a:b/c")),
    (
        "zfs://tank/sys/g1@autosnap_2024-01-01_00:00:01_hourly",
        Target(Backend.zfs, "tank/sys/g1", "autosnap_2024-01-01_00:00:01_hourly"),
    ),
    ("btrfs:///mnt/btr/g1", Target(Backend.btrfs, "/mnt/btr/g1")),
    (
        "btrfs://admin@saturn.lan:/mnt/btr/g2@safe",
        Target(Backend.btrfs, "/mnt/btr/g2", "safe", HostAddress("saturn.lan", "admin")),
    ),
    ("dir:///srv/roots/g1+x", Target(Backend.dir, "/srv/roots/g1+x")),
    ("dir:///", Target(Backend.dir, "/")),
    ("dir://root@h:/", Target(Backend.dir, "/", None, HostAddress("h", "root"))),
    ("dir:///a:/b", Target(Backend.dir, "/a:/b")),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_TARGETS, ids=[t for t, _ in GOOD_TARGETS])
def test_good_target(text: str, expected: Target) -> None:
    target = parse_target(text)
    assert target == expected
    assert str(target) == text
    assert parse_target(str(target)) == target
    assert Target.from_json(json.loads(json.dumps(target.to_json()))) == target
    assert pickle.loads(pickle.dumps(target)) == target


def test_parsed_fields() -> None:
    t = parse_target("zfs://root@10.1.0.1:/wSys/gnome@safe")
    assert (t.backend, t.dataset, t.pool, t.snapshot, t.path) == (
        Backend.zfs,
        "wSys/gnome",
        "wSys",
        "safe",
        None,
    )
    assert t.is_remote and not t.is_path
    assert t.parts == ("wSys", "gnome")
    assert t.host is not None
    assert (t.host.user, t.host.name, t.host.port) == ("root", "10.1.0.1", None)
    assert t.host.destination == "root@10.1.0.1"
    assert not t.host.is_loopback()

    p = parse_target("/path/to/rootfs")
    assert (p.backend, p.dataset, p.pool, str(p.path), p.parts) == (
        Backend.auto,
        None,
        None,
        "/path/to/rootfs",
        ("path", "to", "rootfs"),
    )
    assert parse_target("/").parts == ()


def test_localhost_with_a_user_is_remote() -> None:
    t = parse_target("zfs://root@localhost:/pool/set@safe")
    assert t.is_remote
    assert t.host is not None and t.host.is_loopback()
    assert HostAddress("::1").is_loopback()
    assert parse_target("zfs://pool/set@safe").host is None


def test_to_json() -> None:
    assert parse_target("zfs://user@host:2222:/pool/set@safe").to_json() == {
        "uri": "zfs://user@host:2222:/pool/set@safe",
        "backend": "zfs",
        "host": {"user": "user", "name": "host", "port": 2222},
        "dataset": "pool/set",
        "path": None,
        "pool": "pool",
        "snapshot": "safe",
    }
    assert parse_target("dir:///srv/g1").to_json() == {
        "uri": "dir:///srv/g1",
        "backend": "dir",
        "host": None,
        "dataset": None,
        "path": "/srv/g1",
        "pool": None,
        "snapshot": None,
    }


def test_helpers() -> None:
    t = parse_target("zfs://root@10.1.0.1:/wSys/gnome")
    assert str(t.with_snapshot("safe")) == "zfs://root@10.1.0.1:/wSys/gnome@safe"
    assert t.with_snapshot("safe").with_snapshot(None) == t
    assert str(parse_target("saturn@s1").child("g2")) == "saturn/g2"
    assert str(parse_target("dir:///").child("g1")) == "dir:///g1"
    assert Target.parse("pool/set") == parse_target("pool/set")
    with pytest.raises(InvalidTarget) as e:
        t.with_snapshot("bad name")
    assert str(e.value) == (
        "invalid target 'zfs://root@10.1.0.1:/wSys/gnome@bad name': "
        "snapshot name 'bad name' contains white space"
    )
    with pytest.raises(InvalidTarget) as e:
        t.child("-rf")
    assert str(e.value) == (
        "invalid target 'zfs://root@10.1.0.1:/wSys/gnome/-rf': "
        "dataset component '-rf' starts with '-'"
    )


def test_enums_answer_questions() -> None:
    assert Backend.auto.is_sensed() and not Backend.zfs.is_sensed()
    assert Backend.zfs.takes_dataset() and not Backend.dir.takes_dataset()
    assert Backend.btrfs.takes_path() and Backend.dir.takes_path()
    assert not Backend.auto.takes_path() and not Backend.auto.takes_dataset()
    assert [b.scheme() for b in Backend] == [None, "zfs", "btrfs", "dir"]
    assert [f.backend() for f in FsKind] == [Backend.zfs, Backend.btrfs, Backend.dir, Backend.dir]
    assert [f for f in FsKind if f.has_pools()] == [FsKind.zfs]
    assert [f for f in FsKind if f.has_snapshots()] == [FsKind.zfs, FsKind.btrfs]


# text -> the whole message of the InvalidTarget it raises.
BAD_TARGETS: list[tuple[str, str]] = [
    ("", "empty target"),
    ("pool//set", "empty component ('//') in 'pool//set'"),
    ("pool/set/", "trailing '/' in 'pool/set/'"),
    ("pool/set/@safe", "trailing '/' in 'pool/set/'"),
    ("/srv//g1", "empty component ('//') in '/srv//g1'"),
    ("/srv/g1/", "trailing '/' in '/srv/g1/'"),
    ("zfs://", "nothing after 'zfs://'"),
    ("dir://", "nothing after 'dir://'"),
    ("pool/../etc", "dataset component '..' is not allowed"),
    ("pool/.", "dataset component '.' is not allowed"),
    ("/srv/../etc", "path component '..' is not allowed"),
    ("dir:///srv/./g1", "path component '.' is not allowed"),
    ("pool/my set", "contains white space (' ' at position 7)"),
    ("pool/set\n", "contains white space ('\\n' at position 8)"),
    ("pool/\tx", "contains white space ('\\t' at position 5)"),
    ("pool/set\x00", "contains the control character '\\x00' at position 8"),
    ("pool/a;rm", "dataset component 'a;rm' contains the shell metacharacter ';'"),
    ("pool/$(reboot)", "dataset component '$(reboot)' contains the shell metacharacter '$'"),
    ("/srv/`id`", "path component '`id`' contains the shell metacharacter '`'"),
    ("/srv/a|b", "path component 'a|b' contains the shell metacharacter '|'"),
    ("pool/a>b", "dataset component 'a>b' contains the shell metacharacter '>'"),
    ("pool/a*", "dataset component 'a*' contains the shell metacharacter '*'"),
    ("pool/a#b", "dataset component 'a#b' contains the shell metacharacter '#'"),
    ("pool/a+b", "dataset component 'a+b' contains '+', which g2d does not allow"),
    ("pool/a%b", "dataset component 'a%b' contains '%', which g2d does not allow"),
    ("pool/é", "dataset component 'é' contains 'é', which g2d does not allow"),
    ("pool/-rf", "dataset component '-rf' starts with '-'"),
    ("-oProxyCommand=x/y", "pool name '-oProxyCommand=x' starts with '-'"),
    ("/srv/-g1", "path component '-g1' starts with '-'"),
    ("pool@-s", "snapshot name '-s' starts with '-'"),
    ("1pool/set", "pool name '1pool' does not start with a letter"),
    ("_pool/set", "pool name '_pool' does not start with a letter"),
    ("mirror/set", "pool name 'mirror' is reserved by ZFS"),
    ("mirrored/set", "pool name 'mirrored' is reserved by ZFS"),
    ("raidz/set", "pool name 'raidz' is reserved by ZFS"),
    ("raidz2/set", "pool name 'raidz2' is reserved by ZFS"),
    ("draid/set", "pool name 'draid' is reserved by ZFS"),
    ("spare/set", "pool name 'spare' is reserved by ZFS"),
    ("log/set", "pool name 'log' is reserved by ZFS"),
    ("c0t0d0/set", "pool name 'c0t0d0' looks like a Solaris disk name"),
    ("zfs://ta:nk/g1", "pool name 'ta:nk' contains ':'"),
    ("@safe", "snapshot 'safe' has no dataset or path"),
    ("zfs://@safe", "snapshot 'safe' has no dataset"),
    ("zfs://root@h:/@safe", "snapshot 'safe' has no dataset"),
    ("pool/set@", "'@' is not followed by a snapshot name"),
    ("pool/set@a@b", "more than one '@'"),
    ("pool@s/x", "snapshot name 's/x' contains '/'"),
    ("zfs://root@host/pool", "snapshot name 'host/pool' contains '/'"),
    ("nfs://host/export", "unknown scheme 'nfs'"),
    ("ssh://root@h:/srv", "unknown scheme 'ssh'"),
    ("ext4:///mnt/x", "unknown scheme 'ext4'"),
    ("ZFS://pool/set", "scheme 'ZFS' is not lower case"),
    ("zfs:pool/set", "scheme 'zfs:' is not followed by '//'"),
    ("zfs:///pool/set", "a ZFS dataset name does not start with '/'"),
    ("zfs://root@h://pool/set", "a ZFS dataset name does not start with '/'"),
    ("zfs://root@h:/", "no dataset after the host"),
    ("zfs:///dev/sda:/usb/g1", "names a disk and a dataset, which makes a boot target"),
    ("dir://srv/g1", "dir:// takes an absolute path"),
    ("btrfs://mnt/g1", "btrfs:// takes an absolute path"),
    ("root@host:/pool/set", "a remote target names its backend"),
    ("zfs://user@host:0:/pool/set", "port '0' is not a number from 1 to 65535"),
    ("zfs://user@host:65536:/pool/set", "port '65536' is not a number from 1 to 65535"),
    ("zfs://user@host:022:/pool/set", "port '022' is not a number from 1 to 65535"),
    ("zfs://user@host:ssh:/pool/set", "port 'ssh' is not a number from 1 to 65535"),
    ("zfs://user@host::/pool/set", "port '' is not a number from 1 to 65535"),
    ("zfs://:/pool/set", "host name is empty"),
    ("zfs://root@:/pool/set", "host name is empty"),
    ("zfs://@host:/pool/set", "user name is empty"),
    ("zfs://-oProxyCommand@h:/p/s", "user name '-oProxyCommand' starts with '-'"),
    ("zfs://root@-oProxyCommand:/p/s", "host name '-oProxyCommand' starts with '-'"),
    ("zfs://ro$t@host:/pool/set", "user name 'ro$t' is not a valid user name"),
    ("zfs://a@b@host:/pool/set", "user name 'a@b' is not a valid user name"),
    ("zfs://root@ho_st:/pool/set", "host name 'ho_st' is not a valid host name"),
    ("zfs://root@host.:/pool/set", "host name 'host.' is not a valid host name"),
    ("zfs://root@10.1.0.256:/pool/set", "host name '10.1.0.256' is not a valid IPv4 address"),
    ("zfs://root@[fe80::1%eth0]:/p/s", "host name 'fe80::1%eth0' is not a valid IPv6 address"),
    ("zfs://root@[::1:/pool/set", "host '[::1' has no closing ']'"),
    ("zfs://root@[host]:/pool/set", "host '[host]': brackets are only for IPv6 addresses"),
    ("zfs://root@::1:/pool/set", "host '::1' has more than one ':'"),
    ("work=pool/set", "starts with the key 'work='"),
    ("boot=zfs:///dev/sda:/usb/g1", "a boot target is not a source or work target"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_TARGETS, ids=[repr(t) for t, _ in BAD_TARGETS])
def test_bad_target(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget) as e:
        parse_target(text)
    assert e.value.text == text
    assert e.value.reason == reason
    assert str(e.value) == f"invalid target {text!r}: {reason}"


def test_whole_messages_with_hints() -> None:
    cases = [
        (
            "pool/a+b",
            "invalid target 'pool/a+b': dataset component 'a+b' contains '+', "
            "which g2d does not allow",
            "a bare relative name may be a ZFS dataset, so it follows ZFS's rules "
            "(letters, digits and _ . : -); write an absolute path for a directory",
        ),
        (
            "zfs://pool/-x",
            "invalid target 'zfs://pool/-x': dataset component '-x' starts with '-'",
            "a leading '-' could be read as an option by zfs, btrfs, rsync or ssh",
        ),
        (
            "zfs:///pool/set",
            "invalid target 'zfs:///pool/set': a ZFS dataset name does not start with '/'",
            "write zfs://pool/set for the local dataset 'pool/set'",
        ),
        (
            "zfs:///dev/sda:/usb/g1",
            "invalid target 'zfs:///dev/sda:/usb/g1': "
            "names a disk and a dataset, which makes a boot target",
            "give it as boot=zfs:///dev/sda:/usb/g1",
        ),
        (
            "nfs://host/export",
            "invalid target 'nfs://host/export': unknown scheme 'nfs'",
            "g2d takes zfs://, btrfs:// and dir://, or a bare dataset name or absolute path",
        ),
        (
            "zfs://root@::1:/pool/set",
            "invalid target 'zfs://root@::1:/pool/set': host '::1' has more than one ':'",
            "write an IPv6 address in brackets, like root@[::1]:/pool/set",
        ),
        (
            "raidz1/set",
            "invalid target 'raidz1/set': pool name 'raidz1' is reserved by ZFS",
            "zpool create refuses 'log' and names starting with mirror, raidz, draid or spare",
        ),
    ]
    for text, message, hint in cases:
        with pytest.raises(InvalidTarget) as e:
            parse_target(text)
        assert (str(e.value), e.value.hint) == (message, hint)


def test_zfs_length_limits() -> None:
    # ZFS_MAX_DATASET_NAME_LEN is 256 with the NUL: 255 characters pass, 256 do not.
    name = "tank/" + "d" * 250
    assert len(name) == 255
    assert parse_target(name).dataset == name
    with pytest.raises(InvalidTarget) as e:
        parse_target(name + "d")
    assert e.value.reason == "dataset name is 256 characters long; ZFS allows at most 255"
    assert parse_target(name[:-2] + "@s").snapshot == "s"
    with pytest.raises(InvalidTarget) as e:
        parse_target(name[:-1] + "@s")
    assert e.value.reason == (
        "dataset name with its snapshot is 256 characters long; ZFS allows at most 255"
    )
    # A pool name leaves room for "/$ORIGIN@$ORIGIN": 239 characters at most.
    assert parse_target("p" * 239).pool == "p" * 239
    with pytest.raises(InvalidTarget) as e:
        parse_target("p" * 240)
    assert e.value.reason == "pool name is 240 characters long; ZFS allows at most 239"
    # zfs_max_dataset_nesting is 50: at most 49 levels below the pool.
    assert len(parse_target("/".join(["t"] * 50)).parts) == 50
    with pytest.raises(InvalidTarget) as e:
        parse_target("/".join(["t"] * 51))
    assert e.value.reason == "dataset has 50 levels below its pool; ZFS allows at most 49"


def test_path_length_limits() -> None:
    assert parse_target("/" + "x" * 255).parts == ("x" * 255,)
    with pytest.raises(InvalidTarget) as e:
        parse_target("/" + "x" * 256)
    assert e.value.reason == "path component is 256 characters long; at most 255 are allowed"
    long_path = "/a" * 2048
    with pytest.raises(InvalidTarget) as e:
        parse_target(long_path)
    assert e.value.reason == "path is 4096 characters long; at most 4095 are allowed"


def test_values_check_themselves() -> None:
    with pytest.raises(InvalidTarget) as e:
        Target(Backend.zfs, "/srv/g1")
    assert str(e.value) == (
        "invalid target 'zfs:///srv/g1': a ZFS dataset name does not start with '/'"
    )
    with pytest.raises(InvalidTarget) as e:
        Target(Backend.auto, "/srv/g1", host=HostAddress("h"))
    assert str(e.value) == "invalid target 'h:/srv/g1': a remote target names its backend"
    with pytest.raises(InvalidTarget) as e:
        Target(Backend.dir, "")
    assert str(e.value) == "invalid target 'dir://': no path"
    with pytest.raises(InvalidTarget) as e:
        Target(Backend.zfs, "pool/a b")
    assert str(e.value) == (
        "invalid target 'zfs://pool/a b': dataset component 'a b' contains white space"
    )
    with pytest.raises(InvalidTarget) as e:
        BootTarget(FsKind.zfs, "/dev/disk/by-path/pci-0000:", "usb/g1")
    assert str(e.value) == (
        "invalid target 'zfs:///dev/disk/by-path/pci-0000::/usb/g1': "
        "device path component 'pci-0000:' ends with ':'"
    )
    with pytest.raises(InvalidTarget) as e:
        BootTarget(FsKind.xfs, None, "/g1")
    assert str(e.value) == "invalid target 'xfs:///g1': xfs boot targets name a device"
    with pytest.raises(InvalidTarget) as e:
        HostAddress("h", port=70000)
    assert str(e.value) == "invalid target 'h:70000': port 70000 is not a number from 1 to 65535"
    with pytest.raises(InvalidTarget) as e:
        HostAddress("h", port=True)
    assert str(e.value) == "invalid target 'h:True': port True is not a number from 1 to 65535"


def test_error_survives_pickling() -> None:
    with pytest.raises(InvalidTarget) as e:
        parse_target("pool/-x")
    again = pickle.loads(pickle.dumps(e.value))
    assert (str(again), again.hint) == (str(e.value), e.value.hint)


# --- boot targets ---------------------------------------------------------------------------

GOOD_BOOTS: list[tuple[str, BootTarget]] = [
    ("zfs:///dev/sda:/usb/g1", BootTarget(FsKind.zfs, "/dev/sda", "usb/g1")),
    ("zfs:///dev/nvme0n1:/saturn/g2", BootTarget(FsKind.zfs, "/dev/nvme0n1", "saturn/g2")),
    ("zfs:///dev/sdj:/saturn/sys/g2", BootTarget(FsKind.zfs, "/dev/sdj", "saturn/sys/g2")),
    ("zfs://saturn/g2", BootTarget(FsKind.zfs, None, "saturn/g2")),
    ("btrfs:///dev/sdb:/g1", BootTarget(FsKind.btrfs, "/dev/sdb", "/g1")),
    ("ext4:///dev/loop3:/g1", BootTarget(FsKind.ext4, "/dev/loop3", "/g1")),
    ("xfs:///dev/vda:/roots/g1", BootTarget(FsKind.xfs, "/dev/vda", "/roots/g1")),
    (
        "zfs:///dev/disk/by-path/pci-0000:00:1f.2-ata-1:/usb/g1",
        BootTarget(FsKind.zfs, "/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "usb/g1"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_BOOTS, ids=[t for t, _ in GOOD_BOOTS])
def test_good_boot(text: str, expected: BootTarget) -> None:
    for given_text in (text, f"boot={text}"):
        boot = parse_boot(given_text)
        assert boot == expected
        assert str(boot) == text
        assert boot.argument == f"boot={text}"
        assert parse_boot(str(boot)) == boot
        assert BootTarget.from_json(json.loads(json.dumps(boot.to_json()))) == boot
    assert parse_any(f"boot={text}") == expected


def test_boot_fields() -> None:
    b = parse_boot("boot=zfs:///dev/nvme0n1:/saturn/g2")
    assert b.to_json() == {
        "uri": "zfs:///dev/nvme0n1:/saturn/g2",
        "fs": "zfs",
        "device": "/dev/nvme0n1",
        "pool": "saturn",
        "dataset": "saturn/g2",
        "path": None,
        "generation": "g2",
    }
    assert b.formats_disk and b.parts == ("saturn", "g2")
    e = parse_boot("ext4:///dev/loop3:/g1")
    assert (e.pool, e.dataset, str(e.path), e.generation) == (None, None, "/g1", "g1")
    assert not parse_boot("zfs://saturn/g2").formats_disk


@pytest.mark.parametrize(
    ("device", "number", "node"),
    [
        ("/dev/sda", 2, "/dev/sda2"),
        ("/dev/vda", 3, "/dev/vda3"),
        ("/dev/nvme0n1", 2, "/dev/nvme0n1p2"),
        ("/dev/mmcblk0", 1, "/dev/mmcblk0p1"),
        ("/dev/loop3", 2, "/dev/loop3p2"),
        ("/dev/disk/by-id/ata-Disk_123", 2, "/dev/disk/by-id/ata-Disk_123-part2"),
    ],
)
def test_partition_nodes(device: str, number: int, node: str) -> None:
    assert BootTarget(FsKind.zfs, device, "usb/g1").partition(number) == node


def test_partition_needs_a_disk() -> None:
    with pytest.raises(ValueError, match=r"^zfs://saturn/g2 names no disk$"):
        parse_boot("zfs://saturn/g2").partition(2)
    with pytest.raises(ValueError, match=r"^partition numbers start at 1, not 0$"):
        parse_boot("zfs:///dev/sda:/usb/g1").partition(0)


BAD_BOOTS: list[tuple[str, str]] = [
    ("", "empty boot target"),
    ("boot=", "nothing after 'boot='"),
    ("usb/g1", "a boot target names its file system"),
    ("dir:///dev/sda:/g1", "unknown file system 'dir'"),
    ("ntfs:///dev/sda:/g1", "unknown file system 'ntfs'"),
    ("Zfs:///dev/sda:/usb/g1", "scheme 'Zfs' is not lower case"),
    ("zfs://", "nothing after 'zfs://'"),
    ("zfs:///dev/sda", "no pool and dataset after the device '/dev/sda'"),
    ("ext4:///dev/sda", "no path after the device '/dev/sda'"),
    ("zfs:///dev/sda:/", "no pool and dataset"),
    ("zfs:///dev/sda:/usb", "names only the pool 'usb'"),
    ("zfs://saturn", "names only the pool 'saturn'"),
    ("zfs:///dev/sda://usb/g1", "a ZFS dataset name does not start with '/'"),
    ("zfs:///dev/sda:/usb//g1", "empty component ('//') in 'usb//g1'"),
    ("zfs:///dev/sda:/1usb/g1", "pool name '1usb' does not start with a letter"),
    ("zfs:///dev/sda:/mirror/g1", "pool name 'mirror' is reserved by ZFS"),
    ("zfs:///dev/sda:/usb/g1@safe", "a boot target takes no snapshot"),
    ("zfs://root@h:/dev/sda:/usb/g1", "a boot target is a disk on this machine; it takes no host"),
    ("zfs:///etc/passwd:/usb/g1", "device '/etc/passwd' is not under /dev/"),
    ("zfs:///dev/:/usb/g1", "trailing '/' in '/dev/'"),
    ("zfs:///dev/../sda:/usb/g1", "device path component '..' is not allowed"),
    ("zfs:///dev/-sda:/usb/g1", "device path component '-sda' starts with '-'"),
    (
        "zfs:///dev/sd;a:/usb/g1",
        "device path component 'sd;a' contains the shell metacharacter ';'",
    ),
    ("btrfs:///dev/sdb:/", "names the top of the new file system"),
    ("btrfs:///dev/sdb:/g1/", "trailing '/' in '/g1/'"),
    ("xfs:///dev/sdb:/../g1", "path component '..' is not allowed"),
    ("ext4://mnt/g1", "ext4 boot targets name a device"),
    ("install=zfs://saturn/g2", "starts with the key 'install='"),
    ("boot=zfs:///dev/sda:/usb/my g1", "contains white space (' ' at position 27)"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_BOOTS, ids=[repr(t) for t, _ in BAD_BOOTS])
def test_bad_boot(text: str, reason: str) -> None:
    with pytest.raises(InvalidTarget) as e:
        parse_boot(text)
    assert e.value.text == text
    assert e.value.reason == reason
    assert str(e.value) == f"invalid target {text!r}: {reason}"


def test_boot_whole_messages_with_hints() -> None:
    with pytest.raises(InvalidTarget) as e:
        parse_boot("boot=zfs:///dev/sda:/usb")
    assert str(e.value) == "invalid target 'boot=zfs:///dev/sda:/usb': names only the pool 'usb'"
    assert e.value.hint == "a ZFS boot target names a pool and a dataset below it, like usb/g1"
    with pytest.raises(InvalidTarget) as e:
        parse_boot("zfs:///dev/sda")
    assert str(e.value) == (
        "invalid target 'zfs:///dev/sda': no pool and dataset after the device '/dev/sda'"
    )
    assert e.value.hint == "write zfs:///dev/sda:/pool/g1"


def test_parse_any() -> None:
    assert parse_any("pool/set") == Target(Backend.auto, "pool/set")
    assert parse_any("boot=zfs://saturn/g2") == BootTarget(FsKind.zfs, None, "saturn/g2")
    with pytest.raises(InvalidTarget) as e:
        parse_any("zfs:///dev/sda:/usb/g1")
    assert e.value.hint == "give it as boot=zfs:///dev/sda:/usb/g1"


# --- properties -----------------------------------------------------------------------------

SHELL_META = set("|&;<>()$`\\\"'*?[]#~!{}^=%,")


def _safe(word: str) -> bool:
    """What every accepted name component must be: no option, no metacharacter, no space."""
    return (
        bool(word)
        and not word.startswith("-")
        and not any(ch.isspace() or ch in SHELL_META or not ch.isprintable() for ch in word)
    )


def _words(value: Target | BootTarget) -> list[str]:
    words = list(value.parts)
    if isinstance(value, Target):
        if value.snapshot is not None:
            words.append(value.snapshot)
        if value.host is not None:
            words.append(value.host.name)
            if value.host.user is not None:
                words.append(value.host.user)
    elif value.device is not None:
        words += value.device.split("/")[1:]
    return words


_TAIL = string.ascii_letters + string.digits + "_.:-"
zfs_words = st.text(_TAIL, min_size=1, max_size=12).filter(
    lambda w: not w.startswith("-") and w not in (".", "..")
)
# First letters that no reserved pool name starts with (mirror, raidz, draid, spare, log, c0).
pools = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abefghijknopqtuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text(string.ascii_letters + string.digits + "_.-", max_size=10),
)
datasets = st.builds(
    lambda pool, rest: "/".join([pool, *rest]), pools, st.lists(zfs_words, max_size=5)
)
path_words = st.text(_TAIL + "+", min_size=1, max_size=12).filter(
    lambda w: not w.startswith("-") and w not in (".", "..")
)
paths = st.lists(path_words, max_size=5).map(lambda ws: "/" + "/".join(ws))
labels = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]|[a-z]", fullmatch=True)
host_names = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["localhost", "saturn", "10.1.0.1"]),
)
hosts = st.builds(
    HostAddress,
    name=host_names,
    user=st.none() | st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
)
snapshots = st.none() | zfs_words


@st.composite
def targets(draw: st.DrawFn) -> Target:
    backend = draw(st.sampled_from(Backend))
    if backend is Backend.zfs:
        name = draw(datasets)
    elif backend is Backend.auto:
        name = draw(datasets | paths)
    else:
        name = draw(paths)
    host = None if backend is Backend.auto else draw(st.none() | hosts)
    return Target(backend, name, draw(snapshots), host)


# A device component never ends with ':', since ':/' separates the device from the name.
device_words = path_words.filter(lambda w: not w.endswith(":"))
devices = st.sampled_from(["/dev/sda", "/dev/nvme0n1", "/dev/loop3", "/dev/disk/by-id/ata-X_1"]) | (
    st.lists(device_words, min_size=1, max_size=3).map(lambda ws: "/dev/" + "/".join(ws))
)


@st.composite
def boots(draw: st.DrawFn) -> BootTarget:
    fs = draw(st.sampled_from(FsKind))
    if fs is FsKind.zfs:
        name = draw(st.builds(lambda d, g: f"{d}/{g}", datasets, zfs_words))
        return BootTarget(fs, draw(st.none() | devices), name)
    name = draw(st.lists(path_words, min_size=1, max_size=4).map(lambda w: "/" + "/".join(w)))
    return BootTarget(fs, draw(devices), name)


# Shared CI machines stall now and then; a slow draw is not a failure of the parser.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(targets())
def test_printed_target_parses_back_equal(target: Target) -> None:
    assert parse_target(str(target)) == target
    assert Target.from_json(target.to_json()) == target


@PROPERTY
@given(boots())
def test_printed_boot_parses_back_equal(boot: BootTarget) -> None:
    assert parse_boot(str(boot)) == boot
    assert parse_boot(boot.argument) == boot
    assert BootTarget.from_json(boot.to_json()) == boot


# Text built mostly from the characters the grammar cares about, so the parser's corners are hit.
TRICKY = st.text(
    st.sampled_from(list("/:@.-_[]ab1zfsdirbtr ;$`'\"\n\t\\*?~#%+=é")) | st.characters(),
    max_size=40,
)
PREFIXES = st.sampled_from(["", "zfs://", "btrfs://", "dir://", "boot=zfs://", "ext4://", "/"])


@settings(PROPERTY, max_examples=1000)
@given(PREFIXES, TRICKY)
@example("", "root@localhost:/pool/set@safe")
@example("zfs://", "-oProxyCommand=sh@h:/p")
@example("dir://", "u@[::1]:22:/a:/b")
def test_accepted_text_is_safe_and_canonical(prefix: str, tail: str) -> None:
    text = prefix + tail
    for parse in (parse_target, parse_boot):
        try:
            value = parse(text)
        except InvalidTarget as e:
            assert e.text == text and e.reason
            continue
        words = _words(value)
        assert all(_safe(w) for w in words), (text, words)
        assert parse(str(value)) == value
        # The parser takes only canonical text: what it accepts, it prints back unchanged.
        assert str(value) == text.removeprefix("boot=")
