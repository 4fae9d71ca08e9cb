"""Copy the site's patchfiles overlay into a root, owners, modes, mtimes and xattrs as given.

The overlay holds ``etc/ var/ usr/ root/ home/ srv/`` (each lands at the same path in the
root; the old tool put ``srv/``'s content at the root's top, a defect) and ``portage/``,
which is ``/etc/portage`` (research/g2deploy-spec.md §1.1 steps 6-7, §3.3 step 1). Anything
else at the overlay's top is skipped and reported. Paths are resolved in the root as the
root sees them (``rootfs.inroot``): a root's ``/var/run -> /run`` is followed inside the
root, never out to the host. The overlay's own top directories are mount points of the
overlay, not content: the root's ``/etc`` keeps its owner and mode.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from g2d.rootfs.inroot import RootPathError, make_dirs, resolve_in_root, symlink

TOPS = {"etc": "etc", "var": "var", "usr": "usr", "root": "root", "home": "home", "srv": "srv",
        "portage": "etc/portage"}  # fmt: skip


@dataclass(frozen=True)
class PatchReport:
    files: int
    directories: int
    symlinks: int
    skipped: tuple[str, ...]  # overlay paths not copied (unknown tops, sockets, devices)


def copy_patchfiles(overlay: Path, root: Path) -> PatchReport:
    """Copy ``overlay`` into ``root`` (merging: nothing in the root is deleted)."""
    counts = {"files": 0, "directories": 0, "symlinks": 0}
    skipped: list[str] = []
    for entry in sorted(overlay.iterdir()) if overlay.is_dir() else []:
        dest_top = TOPS.get(entry.name)
        if dest_top is None or not entry.is_dir() or entry.is_symlink():
            skipped.append(entry.name)
            continue
        make_dirs(root, dest_top)
        for top, dirs, files in os.walk(entry):
            dirs.sort()
            here = PurePosixPath(dest_top) / Path(top).relative_to(entry).as_posix()
            for name in dirs:
                src = Path(top, name)
                if src.is_symlink():  # os.walk lists links to directories as directories
                    files.append(name)
                    continue
                _ensure_dir(root, here / name, os.lstat(src))
                counts["directories"] += 1
            for name in sorted(files):
                src = Path(top, name)
                kind = _copy_entry(src, root, here / name)
                if kind is None:
                    skipped.append(os.fspath(src.relative_to(overlay)))
                else:
                    counts[kind] += 1
    return PatchReport(skipped=tuple(skipped), **counts)


def _ensure_dir(root: Path, rel: PurePosixPath, meta: os.stat_result | None) -> None:
    path = resolve_in_root(root, rel)
    if not path.exists():
        path.mkdir()
    elif not path.is_dir():
        raise RootPathError(root, os.fspath(rel), "is not a directory, the patchfiles have one")
    if meta is not None:
        os.chown(path, meta.st_uid, meta.st_gid)
        os.chmod(path, stat.S_IMODE(meta.st_mode))
        os.utime(path, ns=(meta.st_atime_ns, meta.st_mtime_ns))


def _copy_entry(src: Path, root: Path, rel: PurePosixPath) -> str | None:
    meta = os.lstat(src)
    parent = resolve_in_root(root, rel.parent)
    dest = parent / rel.name
    if dest.is_dir() and not dest.is_symlink():
        raise RootPathError(root, os.fspath(rel), "is a directory, the patchfiles have a file")
    if stat.S_ISLNK(meta.st_mode):
        made = symlink(root, rel, os.readlink(src))
        os.lchown(made, meta.st_uid, meta.st_gid)
        return "symlinks"
    if not stat.S_ISREG(meta.st_mode):
        return None
    fd, tmp = tempfile.mkstemp(prefix=f".{rel.name}.", dir=parent)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            for attr in os.listxattr(fin.fileno()):
                os.setxattr(fout.fileno(), attr, os.getxattr(fin.fileno(), attr))
            os.fchown(fout.fileno(), meta.st_uid, meta.st_gid)
            os.fchmod(fout.fileno(), stat.S_IMODE(meta.st_mode))  # after chown: keeps setuid
        os.utime(tmp, ns=(meta.st_atime_ns, meta.st_mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return "files"
