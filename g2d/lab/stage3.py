"""A lab stage3: a real root file system that a chroot (or a kernel) can run, with Portage.

The userland is Debian's (debootstrap minbase, cached, see ``lab_debootstrap``); on top
go Portage as a system install (``lab_portage``), the lab ebuild repository at
``/var/db/repos/gentoo``, ``/etc/portage`` with the variant's profile link, a ``portage``
user, and an init that prints a marker line. Then real ``emerge`` runs inside the root and
installs the profile's @system stand-ins, so ``/var/db/pkg`` is a vdb Portage wrote itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.chroot import Chroot
from g2d.lab.lab_debootstrap import DebootstrapSpec, base_tarball, unpack_base
from g2d.lab.lab_names import Stamp, Variant
from g2d.lab.lab_portage import install_portage
from g2d.lab.lab_stage3_files import write_identity, write_init, write_portage_config
from g2d.lab.lab_users import add_portage_user

REPO_IN_ROOT = "var/db/repos/gentoo"
DISTDIR_IN_ROOT = "var/cache/distfiles"
RELEASE_KEY_IN_ROOT = "usr/share/openpgp-keys/gentoo-release.asc"
EMERGE_TIMEOUT = 1200.0
# a fresh environment for emerge inside: what a root login on the console would have
CHROOT_ENV = {"TERM": "dumb", "USER": "root", "LANG": "C.UTF-8"}


class Stage3BuildFailed(G2dUserError):
    """A lab stage3 root could not be made; names the root and the step."""


@dataclass(frozen=True)
class Stage3Root:
    """A finished root directory, ready to be packed by ``releases.pack_stage3``."""

    root: Path
    variant: Variant
    stamp: Stamp
    portage_version: str
    installed: tuple[str, ...]  # category/pf of every vdb entry, sorted


def build_stage3_root(
    dest: Path,
    *,
    variant: Variant,
    stamp: Stamp,
    repo: Path,
    cache_dir: Path,
    install: Sequence[str] = ("@system",),
    distfiles: Mapping[str, bytes] | None = None,
    release_key: Path | None = None,
    base: DebootstrapSpec | None = None,
) -> Stage3Root:
    """Make the root at ``dest`` (replaced if it exists).

    repo: the lab ebuild repository (copied to /var/db/repos/gentoo).
    cache_dir: where the debootstrap tarball is kept between builds.
    install: atoms emerge installs inside the root (``--oneshot``, so world stays empty).
    distfiles: name -> bytes for packages in ``install`` that have a SRC_URI; they are
    offered in /var/cache/distfiles while emerge runs and removed afterwards.
    release_key: the lab release key (armoured public key), installed where Gentoo's
    sec-keys/openpgp-keys-gentoo-release puts it, for emerge --sync and emerge-webrsync.
    """
    profile_dir = repo / "profiles" / variant.profile()
    if not profile_dir.is_dir():
        raise Stage3BuildFailed(
            f"the repository {repo} has no profile {variant.profile()}",
            hint="build the lab repository first (g2d.lab.repo.build_repo)",
        )
    tarball = base_tarball(cache_dir, base)
    _clear(dest)
    unpack_base(tarball, dest)
    version = install_portage(dest)
    add_portage_user(dest)
    _copy_repo(repo, dest / REPO_IN_ROOT)
    write_portage_config(dest, repo_name=_repo_name(repo), profile=variant.profile())
    write_identity(dest, variant=variant, stamp=stamp)
    write_init(dest, variant=variant, stamp=stamp)
    if release_key is not None:
        keyring = dest / RELEASE_KEY_IN_ROOT
        keyring.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release_key, keyring)
        os.chmod(keyring, 0o644)
    _emerge_into(dest, install, distfiles or {})
    return Stage3Root(dest, variant, stamp, version, tuple(vdb_entries(dest)))


def restamp_root(stage: Stage3Root, stamp: Stamp) -> Stage3Root:
    """The same root as another build: only what names the build (os-release, the init's
    marker) changes. Cheaper than a second build when two builds need not differ."""
    write_identity(stage.root, variant=stage.variant, stamp=stamp)
    write_init(stage.root, variant=stage.variant, stamp=stamp)
    return Stage3Root(stage.root, stage.variant, stamp, stage.portage_version, stage.installed)


def is_lab_root(path: Path) -> bool:
    """Whether ``path`` holds a root this module built (its os-release says so)."""
    try:
        return "\nVARIANT_ID=g2d-lab-" in (path / "usr/lib/os-release").read_text()
    except OSError:
        return False


def _clear(dest: Path) -> None:
    """Remove an earlier lab root at ``dest``; anything else there is refused, not deleted."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise Stage3BuildFailed(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not is_lab_root(dest):
            raise Stage3BuildFailed(
                f"{dest} is not empty and is not a lab stage3 root",
                hint="the lab replaces only a root it built; pick an empty directory",
            )
        shutil.rmtree(dest)


def _repo_name(repo: Path) -> str:
    name = (repo / "profiles" / "repo_name").read_text().strip()
    if not name:
        raise Stage3BuildFailed(f"{repo}/profiles/repo_name is empty")
    return name


def _copy_repo(repo: Path, dest: Path) -> None:
    shutil.copytree(repo, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    # owned by portage:portage as emerge --sync leaves it (FEATURES=usersync syncs as owner)
    for top, dirs, files in os.walk(dest):
        for name in (*dirs, *files):
            os.lchown(os.path.join(top, name), 250, 250)
    os.lchown(dest, 250, 250)


def _emerge_into(root: Path, atoms: Sequence[str], distfiles: Mapping[str, bytes]) -> None:
    distdir = root / DISTDIR_IN_ROOT
    distdir.mkdir(parents=True, exist_ok=True)
    for name, data in distfiles.items():
        (distdir / name).write_bytes(data)
    try:
        with Chroot(root, resolv_conf=False) as ch:
            # compiled once here rather than by every emerge run in every test
            compile_all = ["python3", "-m", "compileall", "-q", "/usr/lib/python3/dist-packages"]
            ch.run(compile_all, env=CHROOT_ENV)
            if atoms:
                ch.run(
                    ["emerge", "--oneshot", "--quiet-build=y", "--color=n", *atoms],
                    env=CHROOT_ENV,
                    capture=False,
                    timeout=EMERGE_TIMEOUT,
                )
    finally:
        for name in distfiles:
            (distdir / name).unlink(missing_ok=True)
        shutil.rmtree(root / "var/tmp/portage", ignore_errors=True)
        (root / "var/tmp/portage").mkdir(parents=True, exist_ok=True)


def vdb_entries(root: Path) -> list[str]:
    """``category/pf`` of every package the root's vdb records."""
    vdb = root / "var/db/pkg"
    if not vdb.is_dir():
        return []
    return sorted(
        f"{cat.name}/{pkg.name}"
        for cat in vdb.iterdir()
        if cat.is_dir()
        for pkg in cat.iterdir()
        if (pkg / "CONTENTS").exists() or (pkg / "SLOT").exists()
    )
