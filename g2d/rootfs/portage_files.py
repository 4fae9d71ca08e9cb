"""Read the site's ``packages/`` tree, and write a profile's rendering into a root's /etc/portage.

package.use, package.accept_keywords, package.license, package.mask and package.unmask are
written as directories holding ``g2d-site``, the one file g2d owns and replaces on every
render: Portage reads such a directory's files in name order, so a stage3's own files and
what ``emerge --autounmask-write`` adds stay where they are. A plain file found in their
place is kept, moved to ``<name>/00-local``. make.conf is merged by key
(``core.make_conf``); a make.conf directory gets ``zz-g2d-site``, read last.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from g2d.core.package_sets import PackageSet, PackageTree
from g2d.rootfs.inroot import make_dirs, resolve_in_root, write_file

PORTAGE_DIR = PurePosixPath("etc/portage")
SITE_FILE = "g2d-site"
LOCAL_FILE = "00-local"
MAKE_CONF_PART = "zz-g2d-site"


def load_package_tree(packages: Path) -> PackageTree:
    """Every regular file under ``packages`` (a missing directory is an empty tree)."""
    files: dict[str, str] = {}
    if packages.is_dir():
        for path in sorted(packages.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(packages).as_posix()] = path.read_text()
    return PackageTree(files)


def write_portage_files(
    root: Path, package_set: PackageSet, *, extra: Mapping[str, str] | None = None
) -> list[Path]:
    """Write the profile's package.* files and make.conf into ``root``; the paths written.

    extra: make.conf values set after the site's (e.g. ``MAKEOPTS`` for the build host).
    """
    written = []
    for name, text in package_set.portage_files().items():
        directory = _as_directory(root, PORTAGE_DIR / name)
        written.append(write_file(root, directory / SITE_FILE, text))
    make_conf = PORTAGE_DIR / "make.conf"
    host_path = resolve_in_root(root, make_conf)
    if host_path.is_dir():
        text = package_set.make_conf("", extra)
        written.append(write_file(root, make_conf / MAKE_CONF_PART, text))
    else:
        existing = host_path.read_text() if host_path.exists() else ""
        written.append(write_file(root, make_conf, package_set.make_conf(existing, extra)))
    return written


def _as_directory(root: Path, rel: PurePosixPath) -> PurePosixPath:
    """``rel`` as a directory in the root; a file there becomes ``rel/00-local``."""
    path = resolve_in_root(root, rel)
    if path.is_file():
        keep = path.with_name(f".{path.name}.g2d-local")
        os.replace(path, keep)
        path.mkdir(mode=0o755)
        os.replace(keep, path / LOCAL_FILE)
    make_dirs(root, rel)
    return rel
