"""Preparing a root from the lab's real stage3s: extraction, /etc/portage, atoms, patchfiles,
services, users, profile/timezone/locales. Hostile tarballs are made here, at test time."""

from __future__ import annotations

import io
import logging
import os
import secrets
import shutil
import stat
import tarfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from g2d.core.package_sets import PackageTree
from g2d.core.service_lines import InitSystem
from g2d.core.site_users import SiteUser
from g2d.core.tar_safety import UnsafeArchive
from g2d.hosts.local import LocalHost
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import FsType, mount_loop
from g2d.lab.zfs_fuse import ZfsPool
from g2d.rootfs.atoms import UnknownAtoms, check_atoms
from g2d.rootfs.extract import ExtractRefused, extract_stage3
from g2d.rootfs.patchfiles import PatchReport, copy_patchfiles
from g2d.rootfs.portage_files import load_package_tree, write_portage_files
from g2d.rootfs.services import ServicesFailed, apply_services, detect_init
from g2d.rootfs.system_config import profile_link, set_locales, set_profile, set_timezone
from g2d.rootfs.users import UsersFailed, add_users

HOST = LocalHost()


def stage3(lab: LabLayout, variant: str) -> Path:
    current = lab.releases / "amd64/autobuilds" / f"current-stage3-amd64-{variant}"
    (found,) = current.glob(f"stage3-amd64-{variant}-*.tar.xz")
    return found.resolve()


@pytest.fixture(scope="module")
def roots(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The openrc and systemd stage3s, extracted once; tests change copies only."""
    out = {}
    for variant in ("openrc", "systemd"):
        root = tmp_path_factory.mktemp(f"root-{variant}")
        extract_stage3(stage3(lab_world, variant), root)
        out[variant] = root
    return out


@pytest.fixture(scope="module")
def members(
    lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory
) -> list[tarfile.TarInfo]:
    """The openrc stage3's headers, read by Python's tarfile (not by the code under test)."""
    plain = tmp_path_factory.mktemp("plain") / "stage3.tar"
    HOST.run(["xz", "-dc", "-T0", stage3(lab_world, "openrc")], stdout=plain)
    with tarfile.open(plain) as tar:
        found = tar.getmembers()
    plain.unlink()
    return found


@pytest.fixture
def copy_root(roots: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A copy of a root made of hard links: cheap, and safe because every writer under test
    replaces files (rename) rather than writing into them."""

    def copy(variant: str) -> Path:
        dest = tmp_path / f"copy-{variant}"
        if not dest.exists():
            HOST.run(["cp", "-a", "--link", roots[variant], dest])
        return dest

    return copy


# --- extraction -------------------------------------------------------------------------


def _same_as_archive(members: list[tarfile.TarInfo], root: Path) -> dict[str, int]:
    """Every member as lstat sees it in ``root`` equals the archive's header; counts by kind."""
    counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "devices": 0, "fifos": 0}
    for m in members:
        path = root / m.name
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (m.uid, m.gid), m.name
        if m.issym():
            assert os.readlink(path) == m.linkname, m.name
            counts["symlinks"] += 1
            continue
        assert stat.S_IMODE(st.st_mode) == m.mode, m.name
        if m.islnk():
            assert os.path.samefile(path, root / m.linkname), m.name
            counts["hardlinks"] += 1
        elif m.isdir():
            counts["dirs"] += 1
        elif m.ischr() or m.isblk():
            assert stat.S_ISCHR(st.st_mode) == m.ischr(), m.name
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (m.devmajor, m.devminor)
            counts["devices"] += 1
        elif m.isfifo():
            assert stat.S_ISFIFO(st.st_mode), m.name
            counts["fifos"] += 1
        else:
            assert stat.S_ISREG(st.st_mode) and st.st_size == m.size, m.name
            assert int(st.st_mtime) == int(m.mtime), m.name
            counts["files"] += 1
    return counts


def test_stage3_extracts_with_owners_modes_links_and_devices(
    lab_world: LabLayout, roots: dict[str, Path], members: list[tarfile.TarInfo]
) -> None:
    counts = _same_as_archive(members, roots["openrc"])
    assert counts["devices"] >= 5 and counts["hardlinks"] >= 1 and counts["symlinks"] >= 100
    assert sum(counts.values()) == 7135  # every member of the archive (tar -tv lists as many)
    listing = HOST.run(["tar", "-tvf", stage3(lab_world, "openrc")]).lines()
    assert len(listing) == sum(counts.values())
    assert detect_init(roots["openrc"]) is InitSystem.openrc
    assert detect_init(roots["systemd"]) is InitSystem.systemd


def _xattr_archive(tmp_path: Path) -> Path:
    """A small root with a file capability, a user xattr and an ACL, packed as catalyst does."""
    src = tmp_path / "xattr-src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/ping").write_text("#!/bin/sh\n")
    os.chown(src / "bin/ping", 250, 250)  # before setcap: a chown drops file capabilities
    HOST.run(["setcap", "cap_net_raw+ep", src / "bin/ping"])
    os.setxattr(src / "bin/ping", "user.pax.flags", b"em")
    HOST.run(["setfacl", "-m", "u:250:rwx", src / "bin"])
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    out = tmp_path / "xattrs.tar.xz"
    HOST.run(["tar", "--create", "--xz", f"--file={out}", f"--directory={src}", "--xattrs",
              "--xattrs-include=*.*", "--acls", "--numeric-owner", "."])  # fmt: skip
    return out


def _check_xattrs(root: Path) -> None:
    assert HOST.run(["getcap", root / "bin/ping"]).stdout.split()[1] == "cap_net_raw=ep"
    assert os.getxattr(root / "bin/ping", "user.pax.flags") == b"em"
    assert "user:250:rwx" in HOST.run(["getfacl", "--omit-header", root / "bin"]).lines()
    assert os.lstat(root / "bin/ping").st_uid == 250
    assert os.lstat(root / "null").st_rdev == os.makedev(1, 3)


def test_xattrs_acls_and_device_nodes_survive(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = extract_stage3(_xattr_archive(tmp_path), root)
    assert (done.members, done.compression) == (4, "xz")
    _check_xattrs(root)


def test_extract_into_btrfs_subvolumes(
    lab_world: LabLayout,
    tmp_path: Path,
    start_component: Callable[..., object],
    members: list[tarfile.TarInfo],
) -> None:
    mounted = start_component(
        "btrfs on a loop device", lambda: mount_loop(tmp_path / "btrfs", FsType.btrfs, size_mib=640)
    )
    with mounted:  # type: ignore[attr-defined]
        mnt: Path = mounted.mountpoint  # type: ignore[attr-defined]
        for name in ("g1", "x"):
            HOST.run(["btrfs", "subvolume", "create", mnt / name])
        done = extract_stage3(stage3(lab_world, "openrc"), mnt / "g1", scratch=tmp_path)
        assert sum(_same_as_archive(members, mnt / "g1").values()) == done.members == 7135
        extract_stage3(_xattr_archive(tmp_path), mnt / "x", scratch=tmp_path)
        _check_xattrs(mnt / "x")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".g2d")) == []


def _bad_tarball(tmp_path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    """(name, content for a file, or link target: '->x' a symlink, '=>x' a hard link)."""
    path = tmp_path / "bad.tar.xz"
    with tarfile.open(path, "w:xz", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE if link.startswith("->") else tarfile.LNKTYPE
                info.linkname = link[2:]
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return path


def test_hostile_tarballs_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    bad = _bad_tarball(
        tmp_path,
        [
            ("ok", b"fine", None),
            ("../x", b"x", None),
            ("/etc/x", b"x", None),
            ("evil", None, "->/etc"),
            ("evil/cron.d/job", b"* * * * * root sh", None),
            ("shadow", None, "=>/etc/shadow"),
        ],
    )
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    root.mkdir()
    scratch.mkdir()
    with pytest.raises(UnsafeArchive) as err:
        extract_stage3(bad, root, scratch=scratch)
    assert str(err.value) == (
        f"{bad}: refused, 4 members would land outside the root:\n"
        "  ../x: a '..' component\n"
        "  /etc/x: an absolute path\n"
        "  evil/cron.d/job: goes through the symlink evil -> /etc, which leads out of the root\n"
        "  shadow: a hard link to /etc/shadow (an absolute path)"
    )
    assert err.value.hint == "nothing was extracted; use a trusted stage3"
    assert list(root.iterdir()) == [] and list(scratch.iterdir()) == []


def test_a_root_that_is_not_empty_or_a_file_that_is_not_tar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    ok = _bad_tarball(tmp_path, [("a", b"a", None)])
    with pytest.raises(ExtractRefused) as err:
        extract_stage3(ok, root)
    assert str(err.value) == f"{root}: is not empty (etc)"
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(ExtractRefused) as err:
        extract_stage3(junk, tmp_path / "root" / "etc")
    assert str(err.value) == f"{junk}: is not a tar archive (nor xz, zstd, gzip or bzip2 of one)"


# --- /etc/portage, atoms, profile -----------------------------------------------------


def test_package_sets_rendered_into_a_root(
    lab_world: LabLayout, copy_root: Callable[[str], Path]
) -> None:
    root = copy_root("openrc")
    stage3_make_conf = (root / "etc/portage/make.conf").read_text()
    tree = load_package_tree(lab_world.packages)
    for profile in ("plasma", "hardened/selinux"):  # the second replaces the first
        pset = tree.select(profile)
        write_portage_files(root, pset, extra={"MAKEOPTS": "-j2"})
    etc = root / "etc/portage"
    assert sorted(p.name for p in etc.iterdir() if p.name.startswith("package.")) == [
        "package.accept_keywords",
        "package.license",
        "package.mask",
        "package.unmask",
        "package.use",
    ]
    for name, text in pset.portage_files().items():
        assert [p.name for p in (etc / name).iterdir()] == ["g2d-site"]
        assert (etc / name / "g2d-site").read_text() == text
    assert (etc / "package.use/g2d-site").read_text().splitlines()[1:] == [
        "# packages/common.uses",
        "app-misc/hello doc -nls",
    ]
    assert (etc / "make.conf").read_text() == stage3_make_conf + (
        "\n# set by g2d from the site's package sets\n"
        'BINPKG_FORMAT="gpkg"\nEMERGE_DEFAULT_OPTS="--binpkg-respect-use=y"\n'
        'USE="hardened selinux"\nMAKEOPTS="-j2"\n'
    )
    set_profile(root, pset.system_profile())
    assert (
        profile_link(root)
        == "../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0/hardened/selinux"
    )
    assert (root / "etc/portage/make.profile/parent").is_file()


def test_a_stage3_file_in_place_of_a_directory_is_kept(
    lab_world: LabLayout, copy_root: Callable[[str], Path]
) -> None:
    root = copy_root("systemd")
    (root / "etc/portage/package.use").write_text("sys-apps/local-edit foo\n")
    write_portage_files(root, load_package_tree(lab_world.packages).select("systemd"))
    assert sorted(p.name for p in (root / "etc/portage/package.use").iterdir()) == [
        "00-local",
        "g2d-site",
    ]
    assert (root / "etc/portage/package.use/00-local").read_text() == "sys-apps/local-edit foo\n"


def test_every_lab_atom_is_known_and_unknown_ones_are_listed_together(
    lab_world: LabLayout, tmp_path: Path
) -> None:
    repos = [lab_world.gentoo_repo]
    tree = load_package_tree(lab_world.packages)
    for stem in tree.stems():
        assert check_atoms(tree.select(stem).atom_lines(), repos) > 0
    packages = tmp_path / "packages"
    shutil.copytree(lab_world.packages, packages)
    with (packages / "23.0/openrc.pkgs").open("a") as f:
        f.write("app-misc/nonesuch\n=dev-libs/libdemo-9.9\n@no-such-set\n")
    with (packages / "common.uses").open("a") as f:
        f.write("not-an-atom foo\n")
    with pytest.raises(UnknownAtoms) as err:
        check_atoms(load_package_tree(packages).select("openrc").atom_lines(), repos)
    assert str(err.value) == (
        f"4 unknown atoms (repositories: {lab_world.gentoo_repo}):\n"
        "  packages/23.0/openrc.pkgs:2: app-misc/nonesuch: no such package\n"
        "  packages/23.0/openrc.pkgs:3: =dev-libs/libdemo-9.9: no version matches "
        "(the repository has 1.4, 1.5, 2.0, 2.1)\n"
        "  packages/23.0/openrc.pkgs:4: @no-such-set: no such set\n"
        "  packages/common.uses:2: not-an-atom: not a valid atom"
    )


def test_timezone_and_locales(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("openrc")
    set_timezone(root, "Europe/Berlin")
    assert os.readlink(root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert (root / "etc/timezone").read_text() == "Europe/Berlin\n"
    set_locales(root, ["en_US.UTF-8", "de_DE.UTF-8"])
    assert (root / "etc/locale.gen").read_text().splitlines()[1:] == [
        "en_US.UTF-8 UTF-8",
        "de_DE.UTF-8 UTF-8",
    ]
    assert (root / "etc/env.d/02locale").read_text() == 'LANG="en_US.utf8"\n'
    assert (root / "etc/locale.conf").read_text() == "LANG=en_US.utf8\n"


# --- patchfiles, services, users ---------------------------------------------------------


def test_patchfiles_land_inside_the_root_with_owners_and_modes(
    copy_root: Callable[[str], Path], tmp_path: Path
) -> None:
    root = copy_root("openrc")
    overlay = tmp_path / "patchfiles"
    files = {
        "etc/issue": (0o600, 0, 0),
        "etc/sudoers.d/sysop": (0o440, 0, 0),
        "var/lib/portage/binpkgs/.keep": (0o644, 250, 250),
        "var/lock/g2d-marker": (0o644, 0, 0),  # the root's /var/lock -> /run/lock (absolute)
        "root/.zshrc": (0o644, 0, 0),
        "home/sysop/.profile": (0o600, 1000, 1000),
        "srv/crypto/.keep": (0o644, 0, 0),
        "portage/repos.conf/lab.conf": (0o644, 0, 0),
    }
    for rel, (mode, uid, gid) in files.items():
        path = overlay / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{rel}\n")
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    os.chown(overlay / "home/sysop", 1000, 1000)
    os.chmod(overlay / "home/sysop", 0o700)
    (overlay / "etc/motd").symlink_to("issue")
    (overlay / "README").write_text("not copied\n")
    report = copy_patchfiles(overlay, root)
    assert report == PatchReport(files=8, directories=8, symlinks=1, skipped=("README",))
    where = {rel: rel for rel in files} | {
        "var/lock/g2d-marker": "run/lock/g2d-marker",
        "portage/repos.conf/lab.conf": "etc/portage/repos.conf/lab.conf",
    }
    for rel, (mode, uid, gid) in files.items():
        st = os.lstat(root / where[rel])
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid), rel
        assert (root / where[rel]).read_text() == f"{rel}\n"
    assert not Path("/run/lock/g2d-marker").exists()
    assert os.readlink(root / "etc/motd") == "issue"
    home = os.lstat(root / "home/sysop")
    assert (stat.S_IMODE(home.st_mode), home.st_uid) == (0o700, 1000)
    assert stat.S_IMODE(os.lstat(root / "etc").st_mode) == 0o755


def _install_greeter(root: Path, lab: LabLayout, init: InitSystem) -> None:
    """What emerging app-misc/greeter installs (the emerge step is another module's; its
    files are copied from the lab repository so the services have something to enable).
    Its init script only for OpenRC, as USE=-systemd would: Debian's systemctl would
    otherwise hand it to update-rc.d."""
    files = lab.gentoo_repo / "app-misc/greeter/files"
    if init is InitSystem.openrc:
        shutil.copy(files / "greeter.initd", root / "etc/init.d/greeter")
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(files / "greeter.service", unit_dir / "greeter.service")


def test_openrc_services(lab_world: LabLayout, copy_root: Callable[[str], Path]) -> None:
    root = copy_root("openrc")
    _install_greeter(root, lab_world, InitSystem.openrc)
    tree = load_package_tree(lab_world.packages)
    done = apply_services(root, tree.select("openrc").services())
    assert done.applied == ("rc-update add greeter default", "rc-update add greeter default")
    assert os.readlink(root / "etc/runlevels/default/greeter") == "/etc/init.d/greeter"
    with pytest.raises(ServicesFailed) as err:
        apply_services(root, tree.select("plasma").services())
    assert str(err.value) == (
        f"{root}: cannot apply the openrc services:\n"
        "  packages/23.0/desktop/plasma.services:1: rc-update add sddm-lab default: "
        "/etc/init.d/sddm-lab does not exist"
    )


def test_systemd_services_match_systemctl(
    lab_world: LabLayout, copy_root: Callable[[str], Path]
) -> None:
    tree = load_package_tree(lab_world.packages)
    ours, theirs = (
        copy_root("systemd"),
        copy_root("openrc").rename(copy_root("openrc").parent / "theirs"),
    )
    shutil.rmtree(theirs)
    HOST.run(["cp", "-a", ours, theirs])
    for root in (ours, theirs):
        _install_greeter(root, lab_world, InitSystem.systemd)
    done = apply_services(ours, tree.select("systemd").services())
    assert done.init is InitSystem.systemd
    assert done.applied == ("systemctl enable greeter.service", "systemctl enable greeter.service")
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl is not installed here to compare with")
    HOST.run(["systemctl", f"--root={theirs}", "enable", "greeter.service"])

    def wanted(root: Path) -> dict[str, str]:
        wants = root / "etc/systemd/system/multi-user.target.wants"
        return {
            p.name: os.path.realpath(root / os.readlink(p).lstrip("/")) for p in wants.iterdir()
        }

    assert {k: v.replace(str(ours), "") for k, v in wanted(ours).items()} == {
        k: v.replace(str(theirs), "") for k, v in wanted(theirs).items()
    }
    assert os.readlink(ours / "etc/systemd/system/multi-user.target.wants/greeter.service") == (
        "/usr/lib/systemd/system/greeter.service"
    )


def test_users_with_a_hashed_password_and_an_ssh_key(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("openrc")
    password = secrets.token_urlsafe(12)
    digest = HOST.run(["openssl", "passwd", "-6", "-stdin"], stdin=password.encode()).stdout.strip()
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1YWIgdGVzdCBrZXkgb25seQ sysop@dom0"
    sysop = SiteUser("sysop", ("users", "portage"), "/bin/bash", digest, (key,))
    admin = SiteUser("root", shell="/bin/sh", ssh_authorized_keys=(key,))
    (account, root_account) = add_users(root, [sysop, admin])
    passwd = dict(line.split(":", 1) for line in (root / "etc/passwd").read_text().splitlines())
    assert passwd["sysop"] == f"x:{account.uid}:{account.gid}::/home/sysop:/bin/bash"
    assert passwd["root"].endswith(":/root:/bin/sh")
    shadow = dict(line.split(":", 2)[:2] for line in (root / "etc/shadow").read_text().splitlines())
    with warnings.catch_warnings():  # crypt(3) from the stdlib, deprecated but here in 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    assert shadow["sysop"] == digest and crypt.crypt(password, shadow["sysop"]) == digest
    groups = {
        line.split(":")[0]: line.split(":")[3]
        for line in (root / "etc/group").read_text().splitlines()
    }
    assert "sysop" in groups["users"].split(",") and "sysop" in groups["portage"].split(",")
    for acct, home in ((account, "home/sysop"), (root_account, "root")):
        keys = root / home / ".ssh/authorized_keys"
        assert keys.read_text() == key + "\n"
        assert [
            (stat.S_IMODE(os.lstat(p).st_mode), os.lstat(p).st_uid) for p in (keys.parent, keys)
        ] == [
            (0o700, acct.uid),
            (0o600, acct.uid),
        ]
    with pytest.raises(UsersFailed) as err:
        add_users(root, [SiteUser("op", ("wheel", "users", "audit"), "/bin/zsh")])
    assert str(err.value) == (
        f"{root}: cannot add the site's users:\n"
        "  op: group wheel does not exist in the root\n"
        "  op: group audit does not exist in the root\n"
        "  op: shell /bin/zsh does not exist in the root"
    )


def test_tree_of_lab_packages_loads_as_the_lab_writes_it(lab_world: LabLayout) -> None:
    from g2d.lab.packagesets import set_files

    assert load_package_tree(lab_world.packages) == PackageTree(set_files())


def test_a_root_that_stores_no_acls_is_extracted_without_them(
    tmp_path: Path, zfs_pool: ZfsPool, caplog: pytest.LogCaptureFixture
) -> None:
    # zfs-fuse takes no POSIX ACL: tar --acls would warn once per member (thousands of log
    # lines for a stage3); the extraction says it once and keeps everything else
    root = zfs_pool.mountpoint
    assert root is not None
    with caplog.at_level(logging.INFO, logger="g2d"):
        extract_stage3(_xattr_archive(tmp_path), root, scratch=tmp_path)
    assert f"{root} stores no POSIX ACLs: extracting without them" in caplog.messages
    assert not [m for m in caplog.messages if "Cannot set POSIX ACLs" in m]
    assert os.lstat(root / "bin/ping").st_uid == 250  # (zfs-fuse keeps no user xattr either)
    assert os.lstat(root / "null").st_rdev == os.makedev(1, 3)
    assert not (root / ".g2d-acl-probe").exists()
