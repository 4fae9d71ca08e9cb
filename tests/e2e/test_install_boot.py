"""``install`` end to end: a sealed generation made from the lab stage3 goes onto a loop disk
through the real disk side (``install_disk``) and boot side (the boot hook), and the disk
boots in qemu (TCG, OVMF, systemd-boot, g2d's initramfs) to the stage3's marker.

ext4 and btrfs get a plain generation, kept in the directory ``/g1`` of the new file
system (the initramfs switches into it: ``g2d.rootdir=/g1``). zfs-fuse cannot boot, so a
ZFS lineage install (with a runtime clone) is checked by importing the written pool and
reading the ESP through mtools.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.lineage import Origin
from g2d.hosts.local import LocalHost
from g2d.install.boot import SYSTEMD_BOOT_EFI
from g2d.install.esp import EspImage, list_dir, read_text
from g2d.install.request import InstallRequest, apply_install, prepare_install
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.lab_names import Stamp, Variant, boot_marker
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import LoopMount
from g2d.lab.process import random_token
from g2d.lab.qemu import boot_image
from g2d.lab.zfs_fuse import ZfsPool
from g2d.rootfs.extract import extract_stage3
from g2d.storage.base import BackendKind
from g2d.storage.lineage import branch_op, create_op, load_lineage, seal_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import backend_class, pool_of

pytestmark = pytest.mark.slow

LOCAL = LocalHost()
DISK_MIB = 1024
BOOT_TIMEOUT = 240.0  # TCG on a busy 2-core box; a UEFI boot takes 11-35 s here
TOOLS = (
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("sgdisk", "gdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("mkfs.btrfs", "btrfs-progs"),
)


def run(*argv: object) -> str:
    return LOCAL.run([str(a) for a in argv]).stdout


@pytest.fixture(autouse=True)
def _boot_tools(start_component: Callable) -> None:
    for program, package in TOOLS:
        start_component("install boot", lambda p=program, k=package: _need(p, k))
    start_component("install boot", _need_systemd_boot)


def _need(program: str, package: str) -> None:
    if not shutil.which(program) and not shutil.which(program, path="/usr/sbin:/sbin"):
        raise ComponentUnavailable("install boot", f"{program} not found",
                                   hint=f"apt-get install {package}")  # fmt: skip


def _need_systemd_boot() -> None:
    if not SYSTEMD_BOOT_EFI.is_file():
        raise ComponentUnavailable("install boot", f"{SYSTEMD_BOOT_EFI} is missing",
                                   hint="apt-get install systemd-boot-efi")  # fmt: skip


@pytest.fixture(scope="module")
def kernels(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernels repository holding a copy of the lab kernel (the initramfs goes beside it;
    lab_world is read-only)."""
    (kernel,) = (lab_world.kernels / "current").iterdir()
    repo = tmp_path_factory.mktemp("kernels")
    shutil.copytree(kernel, repo / "current" / kernel.name)
    return repo


@pytest.fixture(scope="module")
def stage3_g1(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[str, str]:  # fmt: skip
    """A plain lineage whose g1 is the lab stage3, sealed: (work=, boot marker)."""
    work = tmp_path_factory.mktemp("stage3-g1")
    root = work / "sys"
    root.mkdir()
    marker = seal_stage3(lab_world, BackendKind.plain, root, work)
    return f"dir://{root}/g1@safe", marker


def seal_stage3(lab_world: LabLayout, kind: BackendKind, root: Path, work: Path) -> str:
    """g1 of a new ``kind`` lineage at ``root``: the lab stage3, sealed; its boot marker."""
    autobuilds = lab_world.releases / "amd64/autobuilds/current-stage3-amd64-openrc"
    (stage3,) = autobuilds.glob("stage3-amd64-openrc-*.tar.xz")
    stamp = Stamp(stage3.name.removeprefix("stage3-amd64-openrc-").removesuffix(".tar.xz"))
    backend = backend_class(kind)(LOCAL)
    writer = LineageWriter(backend, str(root), pool_of(backend, str(root)), work / "state")
    now = datetime.now(UTC)
    writer.run("create", create_op(backend, None, Origin(stage3=stage3.name), now))
    extract_stage3(stage3, root / "g1", scratch=work)
    writer.run("seal g1", seal_op(backend, f"{root}/g1", now))
    return boot_marker(Variant.openrc, stamp)


@pytest.fixture
def make_disk(tmp_path: Path) -> Iterator[Callable[[], tuple[str, Path]]]:
    """``make_disk()`` -> (loop device with partition scanning, its image)."""
    with ExitStack() as undo:

        def make() -> tuple[str, Path]:
            image = tmp_path / f"disk-{random_token()}.img"
            with open(image, "xb") as f:
                f.truncate(DISK_MIB << 20)
            device = run("losetup", "--show", "--find", "--partscan", image).strip()
            undo.callback(LOCAL.run, ["losetup", "--detach", device], check=False)
            return device, image

        yield make


def _request(work: str, boot: str, tmp_path: Path, **kw: object) -> InstallRequest:
    return InstallRequest(
        work,
        boot,
        hostname="saturn",
        esp_mib=40,
        loader_timeout=0,
        work_dir=str(tmp_path / "target"),
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("fs", ["ext4", "btrfs"])
def test_a_stage3_generation_installed_onto_a_disk_boots(
    fs: str, stage3_g1: tuple[str, str], kernels: Path, make_disk, tmp_path: Path
) -> None:
    work, marker = stage3_g1
    disk, image = make_disk()
    request = _request(work, f"boot={fs}://{disk}:/g1", tmp_path)
    prepared = prepare_install(request, source_host=LOCAL, kernels=kernels,
                               state_dir=tmp_path / "state")  # fmt: skip
    uuid = prepared.plan.facts.root_uuid
    options = f"root=UUID={uuid} rootfstype={fs} g2d.rootdir=/g1 rw console=tty0 " \
        "console=ttyS0,115200"  # fmt: skip
    assert prepared.entries() == [{"entry": "g2d-g1", "generation": "g1",
                                   "kernel": prepared.boot.version, "role": "default",
                                   "options": options}]  # fmt: skip
    assert f"    g2d-g1 (default): {options}" in prepared.render()
    started = time.monotonic()
    outcome = apply_install(prepared, yes=True)
    print(f"install onto {fs}: {time.monotonic() - started:.1f} s")
    assert outcome.boot.cmdlines == {"g1": options} and outcome.boot.warnings == ()
    assert outcome.esp_files == ["g2d-g1.conf"]
    assert [(r["partition"], r["filesystem"], r["uuid"]) for r in outcome.layout] == [
        (f"{disk}p1", "vfat", outcome.facts.esp_uuid), (f"{disk}p2", fs, uuid),
    ]  # fmt: skip
    LOCAL.run(["losetup", "--detach", disk])  # qemu gets the whole image, written out
    boot = boot_image(image, tmp_path / "qemu", marker=marker, timeout=BOOT_TIMEOUT).require()
    print(f"UEFI boot of the {fs} install to the marker: {boot.seconds:.1f} s")
    assert "g2d-initramfs: root /dev/vda2 directory /g1 mounted (rw), starting " \
        "/sbin/init" in boot.console  # fmt: skip


def test_a_btrfs_stage3_generation_installed_onto_xfs_boots(
    lab_world: LabLayout, btrfs_mount: LoopMount, kernels: Path, make_disk, tmp_path: Path
) -> None:
    """A btrfs generation onto xfs: its tree (the snapshot read in place) by tar stream."""
    root = btrfs_mount.mountpoint / "sys"
    root.mkdir()
    marker = seal_stage3(lab_world, BackendKind.btrfs, root, tmp_path)
    disk, image = make_disk()
    request = _request(f"btrfs://{root}/g1@safe", f"boot=xfs://{disk}:/g1", tmp_path)
    prepared = prepare_install(request, source_host=LOCAL, kernels=kernels,
                               state_dir=tmp_path / "state")  # fmt: skip
    assert f"  # send the tree of local:{root}/g1@" in prepared.render()
    outcome = apply_install(prepared, yes=True)
    assert outcome.boot.cmdlines["g1"].startswith(
        f"root=UUID={outcome.facts.root_uuid} rootfstype=xfs g2d.rootdir=/g1 rw "
    )
    LOCAL.run(["losetup", "--detach", disk])
    boot = boot_image(image, tmp_path / "qemu", marker=marker, timeout=BOOT_TIMEOUT).require()
    print(f"UEFI boot of a btrfs generation installed onto xfs: {boot.seconds:.1f} s")
    assert "g2d-initramfs: root /dev/vda2 directory /g1 mounted (rw), starting " \
        "/sbin/init" in boot.console  # fmt: skip


# --- ZFS: a lineage with a runtime clone, checked by importing the pool ------------------------


def _zfs_lineage(pool: ZfsPool, state: Path) -> tuple[str, str, str]:
    """g1 (a few files) sealed, g2 branched from it and sealed: (root, g1 snap, g2 snap)."""
    root = f"{pool.name}/sys"
    LOCAL.run(["zfs", "create", root])
    backend = backend_class(BackendKind.zfs)(LOCAL)
    writer = LineageWriter(backend, root, pool.name, state)
    now = datetime.now(UTC)
    writer.run("create", create_op(backend, None, Origin(stage3="stage3-test"), now))
    tree = Path(str(backend.mountpoint(f"{root}/g1")))
    (tree / "etc").mkdir()
    (tree / "etc/os-release").write_text("NAME=Gentoo\n")
    writer.run("seal g1", seal_op(backend, f"{root}/g1", now))
    writer.run("branch", branch_op(backend, f"{root}/g1@safe", None, Origin(), now))
    writer.run("seal g2", seal_op(backend, f"{root}/g2", now))
    lineage = load_lineage(backend, root)
    s1, s2 = (lineage.generation(g).newest_sealed.name for g in ("g1", "g2"))  # type: ignore[union-attr]
    return root, s1, s2


def _export(pool: str) -> None:
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


def test_a_zfs_lineage_with_a_runtime_clone(
    zfs_pool: ZfsPool, kernels: Path, make_disk, tmp_path: Path
) -> None:
    root, s1, s2 = _zfs_lineage(zfs_pool, tmp_path / "state")
    disk, _ = make_disk()
    pool = f"inst-{random_token()}"
    request = _request(f"zfs://{root}/g2@safe", f"boot=zfs://{disk}:/{pool}/g2", tmp_path,
                       lineage=True, runtime=True)  # fmt: skip
    prepared = prepare_install(request, source_host=LOCAL, kernels=kernels,
                               state_dir=tmp_path / "state")  # fmt: skip
    assert prepared.runtime == "g3"
    assert [(e["entry"], e["role"]) for e in prepared.entries()] == [
        ("g2d-g3", "default"), ("g2d-g2", "fallback"), ("g2d-g1", ""),
    ]  # fmt: skip
    try:
        outcome = apply_install(prepared, yes=True)
    finally:  # a failed install keeps its pool imported for the re-run; the test has none
        if pool in run("zpool", "list", "-H", "-o", "name").split():
            _export(pool)
    version = prepared.boot.version
    assert outcome.boot.warnings == tuple(
        f"{g}: root=ZFS={pool}/{g}: g2d's initramfs cannot import ZFS pools"
        for g in ("g1", "g2", "g3")
    )
    assert pool not in run("zpool", "list", "-H", "-o", "name")  # exported
    esp = EspImage(Path(f"{disk}p1"))
    assert list_dir(esp, "loader/entries") == ["g2d-g1.conf", "g2d-g2.conf", "g2d-g3.conf"]
    assert read_text(esp, "loader/loader.conf") == (
        "default g2d-g3.conf\ntimeout 0\neditor no\nconsole-mode keep\n"
    )
    assert read_text(esp, "loader/entries/g2d-g2.conf") == textwrap.dedent(f"""\
        title      Gentoo g2 ({version})
        linux      /g2d/{version}/vmlinuz
        initrd     /g2d/{version}/initramfs
        options    root=ZFS={pool}/g2 rw console=tty0 console=ttyS0,115200
    """)  # fmt: skip
    assert list_dir(esp, f"g2d/{version}") == ["initramfs", "vmlinuz"]
    run("zpool", "import", "-d", "/dev", "-R", tmp_path / "check", pool)
    try:
        listed = run("zfs", "list", "-H", "-o", "name,origin,canmount,mountpoint", "-r", pool)
        alt = tmp_path / "check"
        assert listed == textwrap.dedent(f"""\
            {pool}\t-\ton\tnone
            {pool}/g1\t-\ton\tnone
            {pool}/g2\t{pool}/g1@{s1}\tnoauto\t{alt}
            {pool}/g3\t{pool}/g2@{s2}\tnoauto\t{alt}
        """)  # fmt: skip
        assert run("zpool", "list", "-H", "-o", "bootfs", pool) == f"{pool}/g3\n"
        got = run("zfs", "get", "-H", "-o", "value", "g2d:gen,g2d:parent,g2d:runtime-of",
                  f"{pool}/g3")  # fmt: skip
        assert got == f"g3\n{pool}/g2@{s2}\n{pool}/g2@{s2}\n"
        run("zfs", "mount", "-o", "ro", f"{pool}/g3")
        tree = tmp_path / "check"
        assert (tree / "etc/hostname").read_text() == "saturn\n"
        assert (tree / "lib/modules" / version / "modules.dep").is_file()
        assert f"# / is the ZFS dataset {pool}/g3 " in (tree / "etc/fstab").read_text()
        LOCAL.run(["zfs", "unmount", f"{pool}/g3"], check=False)
    finally:
        _export(pool)
    rows = json.loads(json.dumps(outcome.layout))
    assert [(r["partition"], r["filesystem"]) for r in rows] == [
        (f"{disk}p1", "vfat"), (f"{disk}p2", "zfs_member"),
    ]  # fmt: skip
