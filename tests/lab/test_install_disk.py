"""The disk side of ``install`` on real disks: sparse files on loop devices (with partition
scanning), partitioned with sgdisk, ext4/xfs/btrfs from their mkfs, ZFS from zfs-fuse; the
source a sealed generation on this machine or pulled over ssh from the lab's sshd.

zfs-fuse cannot boot anything, so a ZFS install is checked by importing the written pool.
The ESP is made (mkfs.vfat) but never mounted: this kernel has no vfat.
"""

from __future__ import annotations

import os
import re
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.lineage import Origin
from g2d.core.uri import parse_boot, parse_target
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost
from g2d.hosts.ssh import SshHost
from g2d.install.configure import InstallFacts, hostid_bytes
from g2d.install.data import SourceRefused
from g2d.install.disk_inspect import DiskRefused, inspect_disk
from g2d.install.plan import ConsentRequired, InstallOptions, install_disk, plan_install
from g2d.lab.loopdev import LoopMount
from g2d.lab.process import random_token
from g2d.lab.sshd import SshServer
from g2d.lab.zfs_fuse import ZfsPool
from g2d.storage.base import Backend, BackendKind, SnapRef, StorageError
from g2d.storage.lineage import branch_op, create_op, load_lineage, seal_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import backend_class, pool_of

LOCAL = LocalHost()
GIB = 1 << 30
SMALL = InstallOptions(hostname="saturn", esp_mib=40)  # a 1 GiB disk has room for the rest


def run(*argv: str) -> str:
    return LOCAL.run(list(argv)).stdout


# --- sources --------------------------------------------------------------------------------


def seal_new_generation(backend: Backend, root: str, state: Path, fill: object) -> str:
    """g1 in lineage ``root``, filled by ``fill(path)``, sealed; returns its snapshot name."""
    writer = LineageWriter(backend, root, pool_of(backend, root), state)
    now = datetime.now(UTC)
    writer.run("create", create_op(backend, None, Origin(stage3="stage3-test"), now))
    mounted = backend.mountpoint(f"{root}/g1")
    assert mounted
    fill(Path(mounted))  # type: ignore[operator]
    writer.run("seal g1", seal_op(backend, f"{root}/g1", now))
    newest = load_lineage(backend, root).generation("g1").newest_sealed
    assert newest is not None
    return newest.name


def fill_rich(tree: Path) -> None:
    """A tree with what a tar copy loses unless told: xattrs, an ACL, a device node, owners."""
    (tree / "etc").mkdir()
    (tree / "etc/os-release").write_text("NAME=Gentoo\n")
    (tree / "etc/fstab").write_text("# from the stage3\n")
    (tree / "data").write_text("payload\n")
    run("setfattr", "-n", "user.g2d-test", "-v", "kept", str(tree / "data"))
    run("setfacl", "-m", "u:1234:r", str(tree / "data"))
    os.chown(tree / "data", 1234, 5678)
    (tree / "dev").mkdir()
    run("mknod", str(tree / "dev/null"), "c", "1", "3")


def fill_small(tree: Path) -> None:
    (tree / "etc").mkdir()
    (tree / "etc/os-release").write_text("NAME=Gentoo\n")
    (tree / "data").write_text("payload\n")
    os.chown(tree / "data", 1234, 5678)


def fill_owned_and_devices(tree: Path) -> None:
    fill_small(tree)
    (tree / "dev").mkdir()
    run("mknod", str(tree / "dev/null"), "c", "1", "3")


def check_owned_and_devices(tree: Path) -> None:
    assert (tree / "data").read_text() == "payload\n"
    st = (tree / "data").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    dev = (tree / "dev/null").stat()
    assert (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)


@pytest.fixture
def plain_source(tmp_path: Path) -> tuple[str, str]:
    """A sealed plain generation in tmp_path/src/sys; returns (work= text, snapshot)."""
    root = tmp_path / "src" / "sys"
    root.mkdir(parents=True)
    snap = seal_new_generation(backend_class(BackendKind.plain)(LOCAL), str(root),
                               tmp_path / "state", fill_rich)  # fmt: skip
    return f"dir://{root}/g1@safe", snap


def zfs_source(pool: ZfsPool, host: Host, state: Path) -> tuple[str, str]:
    root = f"{pool.name}/sys"
    LOCAL.run(["zfs", "create", root])
    snap = seal_new_generation(backend_class(BackendKind.zfs)(host), root, state, fill_small)
    return root, snap


def check_rich_tree(tree: Path) -> None:
    data = tree / "data"
    assert data.read_text() == "payload\n"
    assert run("getfattr", "--only-values", "-n", "user.g2d-test", str(data)) == "kept"
    assert "user:1234:r--" in run("getfacl", "-n", "--omit-header", str(data))
    st = data.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    dev = (tree / "dev/null").stat()
    assert (os.major(dev.st_rdev), os.minor(dev.st_rdev)) == (1, 3)


# --- ext4, xfs, btrfs from a plain or btrfs generation ------------------------------------


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_install_a_plain_generation_onto_each_file_system(
    fs: str, loop_disk, plain_source: tuple[str, str], tmp_path: Path
) -> None:
    disk = loop_disk()
    work, snap = plain_source
    boot = parse_boot(f"boot={fs}:///dev/{Path(disk).name}:/g1")
    options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "target"))
    plan = plan_install(parse_target(work), boot, source_host=LOCAL,
                        state_dir=tmp_path / "state", options=options)  # fmt: skip
    seen: list[InstallFacts] = []
    facts = install_disk(plan, yes=True, boot_hook=seen.append)
    assert seen == [facts]
    assert facts.root_device == f"{disk}p2" and facts.esp_device == f"{disk}p1"
    assert facts.kernel_root_args() == [
        f"root=UUID={facts.root_uuid}",
        f"rootfstype={fs}",
        "g2d.rootdir=/g1",
    ]
    assert not Path(facts.top).exists()  # unmounted, mount point removed
    check = tmp_path / "check"
    check.mkdir()
    run("mount", "-o", "ro", f"{disk}p2", str(check))
    try:
        tree = check / "g1"
        check_rich_tree(tree)
        assert (tree / "etc/hostname").read_text() == "saturn\n"
        assert (tree / "etc/fstab").read_text() == (
            f"# /etc/fstab written by g2d install ({boot.argument})\n"
            f"UUID={facts.root_uuid}\t/\t{fs}\tdefaults\t0\t{0 if fs == 'btrfs' else 1}\n"
            f"PARTUUID={facts.esp_partuuid}\t/efi\tvfat\tumask=0077\t0\t2\n"
        )
        assert run("getfattr", "--only-values", "-n", "user.g2d.installed-from", str(tree)) == (
            f"local:{work.removeprefix('dir://').removesuffix('@safe')}@{snap}"
        )
    finally:
        run("umount", str(check))
    assert run("blkid", "-p", "-s", "TYPE", "-o", "value", f"{disk}p1").strip() == "vfat"
    meta = backend_class(BackendKind.plain)(LOCAL).get_meta(work[len("dir://") : -len("@safe")])
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z {re.escape(str(boot))}", meta["g2d:installed-to"])


def test_install_a_btrfs_generation_as_a_subvolume(
    btrfs_mount: LoopMount, loop_disk, tmp_path: Path
) -> None:
    root = f"{btrfs_mount.mountpoint}/sys"
    Path(root).mkdir()
    backend = backend_class(BackendKind.btrfs)(LOCAL)
    snap = seal_new_generation(backend, root, tmp_path / "state", fill_small)
    disk = loop_disk()
    boot = parse_boot(f"boot=btrfs:///dev/{Path(disk).name}:/g1")
    options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "target"))
    plan = plan_install(parse_target(f"btrfs://{root}/g1@safe"), boot, source_host=LOCAL,
                        state_dir=tmp_path / "state", options=options)  # fmt: skip
    assert f"local: btrfs send {root}/.g2d-snap/g1@{snap}/{snap} | local: btrfs receive " \
        f"{tmp_path}/target/.g2d-snap/.receiving-g1" in plan.render()  # fmt: skip
    facts = install_disk(plan, yes=True)
    assert facts.kernel_root_args() == [
        f"root=UUID={facts.root_uuid}",
        "rootfstype=btrfs",
        "rootflags=subvol=/g1",
    ]
    check = tmp_path / "check"
    check.mkdir()
    run("mount", "-o", "ro,subvol=/g1", f"{disk}p2", str(check))
    try:
        assert (check / "data").read_text() == "payload\n"
        assert (check / "etc/fstab").read_text() == (
            f"# /etc/fstab written by g2d install ({boot.argument})\n"
            f"UUID={facts.root_uuid}\t/\tbtrfs\tsubvol=/g1\t0\t0\n"
            f"PARTUUID={facts.esp_partuuid}\t/efi\tvfat\tumask=0077\t0\t2\n"
        )
    finally:
        run("umount", str(check))


@pytest.mark.parametrize("kind,fs", [("zfs", "ext4"), ("btrfs", "xfs")])
def test_a_zfs_or_btrfs_generation_onto_ext4_or_xfs_arrives_as_its_tree(
    kind: str, fs: str, request: pytest.FixtureRequest, loop_disk, tmp_path: Path
) -> None:
    if kind == "zfs":
        pool: ZfsPool = request.getfixturevalue("zfs_pool")
        root = f"{pool.name}/sys"
        LOCAL.run(["zfs", "create", root])
    else:
        root = f"{request.getfixturevalue('btrfs_mount').mountpoint}/sys"
        Path(root).mkdir()
    backend = backend_class(BackendKind(kind))(LOCAL)
    # zfs-fuse keeps no xattrs or ACLs: its tree has owners and a device node
    fill = fill_rich if kind == "btrfs" else fill_owned_and_devices
    snap = seal_new_generation(backend, root, tmp_path / "state", fill)
    sent = backend.snapshot(SnapRef(f"{root}/g1", snap))
    disk = loop_disk()
    boot = parse_boot(f"boot={fs}:///dev/{Path(disk).name}:/g1")
    options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "target"))
    work = parse_target(f"{kind}://{root}/g1@safe")
    # first cut off after 4 KiB (the sender reads to its end): nothing of it stays
    cut = replace(options, stream_filter=("sh", "-c", "head -c 4096; exec cat >/dev/null"))
    plan = plan_install(work, boot, source_host=LOCAL, state_dir=tmp_path / "state", options=cut)
    with pytest.raises(StorageError) as cut_off:
        install_disk(plan, yes=True)
    into = f"{tmp_path}/target/g1"
    # the receiving tar fails (cut in a member) or takes a short archive (cut between two):
    # the missing end marker says so either way
    tar_failed = f"the stream of local:{root}/g1@{snap} into {into} was cut off (local: tar " \
        "exited with 2); "  # fmt: skip
    assert str(cut_off.value) in (
        f"{prefix}the stream into {into} was cut off; nothing of it was kept"
        for prefix in ("", tar_failed)
    )
    assert not Path(into).exists() and os.listdir(f"{tmp_path}/target/.g2d-snap") == []
    plan = plan_install(work, boot, source_host=LOCAL, state_dir=tmp_path / "state",
                        options=options)  # fmt: skip
    assert plan.resumed == ("disk",)
    shown = plan.render()
    if kind == "zfs":  # zfs-fuse shows no .zfs/snapshot: the tree is read from a clone
        guid = sent.guid
        assert f"local: zfs clone -o mountpoint=/run/g2d/tree/{guid} -o readonly=on -o " \
            f"'g2d:temporary=read {root}/g1@{snap} as a tree' {root}/g1@{snap} " \
            f"{pool.name}/g2d-tree-{guid}" in shown  # fmt: skip
        assert f"local: zfs destroy -f {pool.name}/g2d-tree-{guid}" in shown
        top = f"/run/g2d/tree/{guid}"
    else:
        top = f"{root}/.g2d-snap/g1@{snap}/{snap}"
    parent, name = top.rsplit("/", 1)
    assert f"'--transform=s|^\\.|tree|S' -C {top} . --no-recursion -C {parent} {name} | " \
        f"local: tar --extract" in shown  # fmt: skip
    facts = install_disk(plan, yes=True)
    assert facts.kernel_root_args() == [
        f"root=UUID={facts.root_uuid}", f"rootfstype={fs}", "g2d.rootdir=/g1"]  # fmt: skip
    # the temporary clone is gone (also after the cut-off run); the source lineage as it was
    if kind == "zfs":
        assert "g2d-tree-" not in run("zfs", "list", "-H", "-o", "name")
        assert not Path(top).exists()
    listed = load_lineage(backend, root).generations
    assert [g.volume.name for g in listed if g.volume] == [f"{root}/g1"]
    check = tmp_path / "check"
    check.mkdir()
    run("mount", "-o", "ro", f"{disk}p2", str(check))
    try:
        tree = check / "g1"
        (check_rich_tree if kind == "btrfs" else check_owned_and_devices)(tree)
        assert (tree / "etc/hostname").read_text() == "saturn\n"
        # the installed directory is the sent snapshot, by its guid and its metadata
        installed = backend_class(BackendKind.plain)(LOCAL, str(check))
        got = installed.snapshot(SnapRef(str(tree), snap))
        assert (got.guid, got.created) == (sent.guid, sent.created)
        assert dict(got.meta) == dict(sent.meta) and sent.meta["g2d:gen"] == "g1"
        assert not [a for a in run("getfattr", "-d", "-m", "user.g2d-snap", str(tree)).split()]
    finally:
        run("umount", str(check))
    assert backend.get_meta(f"{root}/g1")["g2d:installed-to"].endswith(str(boot))


# --- ZFS --------------------------------------------------------------------------------------


def import_pool(pool: str, altroot: Path) -> None:
    LOCAL.run(["zpool", "import", "-d", "/dev", "-R", str(altroot), pool], timeout=120)


def test_install_a_zfs_generation_onto_a_new_pool(
    zfs_pool: ZfsPool, loop_disk, tmp_path: Path
) -> None:
    root, snap = zfs_source(zfs_pool, LOCAL, tmp_path / "state")
    disk = loop_disk()
    pool = f"inst-{random_token()}"
    boot = parse_boot(f"boot=zfs:///dev/{Path(disk).name}:/{pool}/g1")
    options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "alt"))
    plan = plan_install(parse_target(f"zfs://{root}/g1@safe"), boot, source_host=LOCAL,
                        state_dir=tmp_path / "state", options=options)  # fmt: skip
    text = plan.render()
    assert f"zpool create -f -o ashift=12 -o cachefile=none -O compression=on -O xattr=on " \
        f"-m none -R {tmp_path / 'alt'} {pool} {disk}p2" in text  # fmt: skip
    assert f"local: zfs send -p {root}/g1@{snap} | local: zfs receive -u {pool}/g1" in text
    facts = install_disk(plan, yes=True)
    assert facts.kernel_root_args() == [f"root=ZFS={pool}/g1"]
    assert pool not in run("zpool", "list", "-H", "-o", "name")  # exported
    import_pool(pool, tmp_path / "check")
    try:
        listed = run("zfs", "list", "-H", "-o", "name", "-r", "-t", "all", pool)
        assert listed == f"{pool}\n{pool}/g1\n{pool}/g1@{snap}\n"
        got = run(
            "zfs",
            "get",
            "-H",
            "-o",
            "property,value",
            "mountpoint,canmount,compression,g2d:gen,g2d:installed-from",
            f"{pool}/g1",
        )
        assert got == textwrap.dedent(f"""\
            mountpoint\t{tmp_path / 'check'}
            canmount\tnoauto
            compression\ton
            g2d:gen\tg1
            g2d:installed-from\tlocal:{root}/g1@{snap}
        """)  # fmt: skip
        assert run("zpool", "list", "-H", "-o", "bootfs", pool) == f"{pool}/g1\n"
        assert run("zfs", "get", "-H", "-o", "value", "g2d:sealed", f"{pool}/g1@{snap}") != "-\n"
        run("zfs", "mount", "-o", "ro", f"{pool}/g1")
        tree = tmp_path / "check"
        assert (tree / "etc/hostid").read_bytes() == hostid_bytes(facts.hostid or "")
        assert (tree / "etc/fstab").read_text() == (
            f"# /etc/fstab written by g2d install ({boot.argument})\n"
            f"# / is the ZFS dataset {pool}/g1 (mountpoint=/, the pool's bootfs)\n"
            f"PARTUUID={facts.esp_partuuid}\t/efi\tvfat\tumask=0077\t0\t2\n"
        )
        assert (tree / "data").stat().st_uid == 1234
    finally:
        _unmount_and_export(pool)
    src = backend_class(BackendKind.zfs)(LOCAL).get_meta(f"{root}/g1")
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z {re.escape(str(boot))}", src["g2d:installed-to"])


def _unmount_and_export(pool: str, gen: str | None = "g1") -> None:
    if gen:
        LOCAL.run(["zfs", "unmount", f"{pool}/{gen}"], check=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            LOCAL.run(["zpool", "export", pool])
            return
        except CommandFailed as e:
            if "busy" not in e.tail or time.monotonic() > deadline:
                LOCAL.run(["zpool", "export", "-f", pool])
                return
            time.sleep(0.5)


def test_a_zfs_lineage_arrives_as_clones(zfs_pool: ZfsPool, loop_disk, tmp_path: Path) -> None:
    root, s1 = zfs_source(zfs_pool, LOCAL, tmp_path / "state")
    backend = backend_class(BackendKind.zfs)(LOCAL)
    writer = LineageWriter(backend, root, zfs_pool.name, tmp_path / "state")
    now = datetime.now(UTC)
    writer.run("branch", branch_op(backend, f"{root}/g1@safe", None, Origin(), now))
    writer.run("seal g2", seal_op(backend, f"{root}/g2", now))
    s2 = load_lineage(backend, root).generation("g2").newest_sealed.name  # type: ignore[union-attr]
    disk = loop_disk()
    pool = f"inst-{random_token()}"
    boot = parse_boot(f"boot=zfs:///dev/{Path(disk).name}:/{pool}/g2")
    options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "alt"),
                             lineage=True)  # fmt: skip
    plan = plan_install(parse_target(f"zfs://{root}/g2@safe"), boot, source_host=LOCAL,
                        state_dir=tmp_path / "state", options=options)  # fmt: skip
    assert [s.why for s in plan.parts[1].plan.steps] == [
        f"send {root}/g1@{s1} -> {pool}/g1@{s1} (full stream)",
        f"send {root}/g2@{s2} -> {pool}/g2@{s2} (clone from its origin from {root}/g1@{s1})",
    ]
    install_disk(plan, yes=True)
    import_pool(pool, tmp_path / "check")
    try:
        listed = run("zfs", "list", "-H", "-o", "name,origin", "-r", "-t", "all", pool)
        assert listed == textwrap.dedent(f"""\
            {pool}\t-
            {pool}/g1\t-
            {pool}/g1@{s1}\t-
            {pool}/g2\t{pool}/g1@{s1}
            {pool}/g2@{s2}\t-
        """)  # fmt: skip
        assert run("zpool", "list", "-H", "-o", "bootfs", pool) == f"{pool}/g2\n"
        got = run("zfs", "get", "-H", "-o", "value", "canmount,g2d:parent", f"{pool}/g2")
        assert got == f"noauto\n{root}/g1@{s1}\n"
    finally:
        _unmount_and_export(pool, "g2")


# --- a remote source, a stream cut off, a re-run ----------------------------------------------


def test_a_remote_zfs_source_and_a_cut_off_stream_completed_by_a_rerun(
    zfs_pool: ZfsPool, sshd: SshServer, loop_disk, tmp_path: Path
) -> None:
    with SshHost(sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key,
                 host_keys=[sshd.host_public_key]) as remote:  # fmt: skip
        # made here (each command over ssh costs a round trip); installed from over there
        root, snap = zfs_source(zfs_pool, LOCAL, tmp_path / "state")
        disk = loop_disk()
        pool = f"inst-{random_token()}"
        boot = parse_boot(f"boot=zfs:///dev/{Path(disk).name}:/{pool}/g2")
        work = parse_target(f"zfs://{sshd.user}@{sshd.host}:{sshd.port}:/{root}/g1@safe")
        options = InstallOptions(hostname="saturn", esp_mib=40, work_dir=str(tmp_path / "alt"))
        # the receiver sees 4 KiB and the end of the stream; the sender runs to its end (a
        # sender killed half way leaves zfs-fuse calling its pool busy for half a minute)
        cut = replace(options, stream_filter=("sh", "-c", "head -c 4096; exec cat >/dev/null"))
        plan = plan_install(work, boot, source_host=remote, state_dir=tmp_path / "state",
                            options=cut)  # fmt: skip
        filtered = "sh -c 'head -c 4096; exec cat >/dev/null'"
        assert f"{remote.name}: zfs send -p {root}/g1@{snap} | local: {filtered} | " \
            f"local: zfs receive -u {pool}/g2  # send {remote.name}:{root}/g1@{snap} " \
            f"into {pool}/g2" in plan.render()  # fmt: skip
        with pytest.raises(StorageError) as cut_off:
            install_disk(plan, yes=True)
        assert str(cut_off.value).startswith(
            f"the stream of {remote.name}:{root}/g1@{snap} into {pool}/g2 was cut off ("
        )
        assert str(cut_off.value).endswith(
            f"the receive into {pool}/g2 did not complete: {pool}/g2@{snap} is missing"
        )
        assert run("zfs", "list", "-H", "-o", "name", "-r", pool) == f"{pool}\n"  # nothing half
        again = plan_install(work, boot, source_host=remote, state_dir=tmp_path / "state",
                             options=options)  # fmt: skip
        assert again.resumed == ("disk",) and again.ids == plan.ids
        assert "  [disk] (done by an earlier run)" in again.render()
        install_disk(again, yes=True)
    import_pool(pool, tmp_path / "check")
    try:
        listed = run("zfs", "list", "-H", "-o", "name", "-r", "-t", "all", pool)
        assert listed == f"{pool}\n{pool}/g2\n{pool}/g2@{snap}\n"
        got = run("zfs", "get", "-H", "-o", "value", "g2d:installed-from", f"{pool}/g2")
        assert got == f"{remote.name}:{root}/g1@{snap}\n"
        assert run("zpool", "list", "-H", "-o", "bootfs", pool) == f"{pool}/g2\n"
    finally:
        _unmount_and_export(pool, "g2")


def test_a_new_generation_in_an_existing_pool(zfs_pool: ZfsPool, tmp_path: Path) -> None:
    root, _ = zfs_source(zfs_pool, LOCAL, tmp_path / "state")
    boot = parse_boot(f"boot=zfs://{zfs_pool.name}/saturn/g1")
    LOCAL.run(["zfs", "create", f"{zfs_pool.name}/saturn"])
    options = InstallOptions(hostname="saturn", work_dir=str(tmp_path / "work"))
    plan = plan_install(parse_target(f"zfs://{root}/g1@safe"), boot, source_host=LOCAL,
                        state_dir=tmp_path / "state", options=options)  # fmt: skip
    assert "sgdisk" not in plan.render() and "zpool create" not in plan.render()
    facts = install_disk(plan, yes=True)
    assert facts.root_device is None and facts.esp_device is None
    ds = f"{zfs_pool.name}/saturn/g1"
    got = run("zfs", "get", "-H", "-o", "property,value", "mountpoint,canmount,mounted", ds)
    assert got == "mountpoint\t/\ncanmount\tnoauto\nmounted\tno\n"
    assert run("zpool", "list", "-H", "-o", "bootfs", zfs_pool.name) == "-\n"  # left as it was
    backend = backend_class(BackendKind.zfs)(LOCAL)
    backend.apply(backend.destroy_plan(f"{zfs_pool.name}/saturn", force=True))
    backend.apply(backend.destroy_plan(root, force=True))


# --- refusals: nothing is written ------------------------------------------------------------


def _plan(work: str, boot: str, tmp_path: Path, **kw: object) -> object:
    return plan_install(
        parse_target(work),
        parse_boot(boot),
        source_host=LOCAL,
        state_dir=tmp_path / "state",
        options=SMALL,
        **kw,
    )  # type: ignore[arg-type]


def test_a_mounted_disk_is_refused_even_forced(
    loop_disk, plain_source: tuple[str, str], tmp_path: Path
) -> None:
    disk = loop_disk()
    run("mkfs.ext4", "-q", "-F", disk)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", disk, str(mnt))
    try:
        with pytest.raises(DiskRefused) as refused:
            _plan(plain_source[0], f"boot=ext4://{disk}:/g1", tmp_path, force=True)
    finally:
        run("umount", str(mnt))
    assert str(refused.value) == f"{disk} is in use: it is mounted ({disk} on {mnt})"
    assert refused.value.hint == (
        "unmount it, export the pool or stop what holds it; force does not override this"
    )


def test_a_disk_in_an_imported_pool_is_refused(
    zfs_fuse: object, loop_disk, plain_source: tuple[str, str], tmp_path: Path
) -> None:
    disk = loop_disk()
    pool = f"busy-{random_token()}"
    run("zpool", "create", "-o", "cachefile=none", "-m", "none", pool, disk)
    try:
        with pytest.raises(DiskRefused) as refused:
            _plan(plain_source[0], f"boot=ext4://{disk}:/g1", tmp_path)
    finally:
        _unmount_and_export(pool, None)
    assert str(refused.value) == f"{disk} is in use: it is in the imported ZFS pool {pool}"


def test_a_disk_holding_data_is_refused_unless_forced(
    loop_disk, plain_source: tuple[str, str], tmp_path: Path
) -> None:
    disk = loop_disk()
    run("mkfs.ext4", "-q", "-F", disk)
    boot = f"boot=ext4://{disk}:/g1"
    with pytest.raises(DiskRefused) as refused:
        _plan(plain_source[0], boot, tmp_path)
    assert str(refused.value) == f"{disk} holds data: ext4 on {disk}"
    assert refused.value.hint == "everything on it would be destroyed; pass force to install anyway"
    plan = _plan(plain_source[0], boot, tmp_path, force=True)
    with pytest.raises(ConsentRequired) as no:
        install_disk(plan)  # type: ignore[arg-type]
    assert str(no.value) == f"installing onto {boot} destroys what is on it; nothing was done"
    assert inspect_disk(LOCAL, disk).signatures == (f"ext4 on {disk}",)  # untouched


def test_a_disk_too_small_says_the_size_needed(
    loop_disk, plain_source: tuple[str, str], tmp_path: Path
) -> None:
    disk = loop_disk(256 << 20)
    with pytest.raises(DiskRefused) as refused:
        _plan(plain_source[0], f"boot=xfs://{disk}:/g1", tmp_path)
    # GPT 2 MiB + ESP 40 MiB + the least xfs takes, 300 MiB
    assert str(refused.value) == f"{disk} is too small: 256 MiB, the install needs 342 MiB"


def test_an_unsealed_source_is_refused_unless_forced(loop_disk, tmp_path: Path) -> None:
    root = tmp_path / "src" / "sys"
    root.mkdir(parents=True)
    backend = backend_class(BackendKind.plain)(LOCAL)
    writer = LineageWriter(backend, str(root), pool_of(backend, str(root)), tmp_path / "state")
    writer.run("create", create_op(backend, None, Origin(), datetime.now(UTC)))
    backend.apply(backend.snapshot_plan([f"{root}/g1"], "draft"))
    disk = loop_disk()
    with pytest.raises(SourceRefused) as refused:
        _plan(f"dir://{root}/g1@draft", f"boot=ext4://{disk}:/g1", tmp_path)
    assert str(refused.value) == f"local:{root}/g1@draft is not sealed"
    plan = _plan(f"dir://{root}/g1@draft", f"boot=ext4://{disk}:/g1", tmp_path, force=True)
    assert plan.source.ref.name == "draft"  # type: ignore[attr-defined]
