"""Paths inside a system root, followed the way the root's own programs would follow them.

g2d writes into a root from the host. A root's symlinks are the root's: ``/etc/mtab ->
/proc/self/mounts`` or ``/var/lock -> /run/lock`` mean paths in the root, not on the host.
Opening ``root / "var/lock/x"`` on the host would follow the absolute link to the host's
``/run/lock``. Every g2d writer into a root resolves paths here, with chroot semantics:
an absolute link target starts again at the root, and ``..`` stops at the root. Writes are
atomic per file (a temporary name in the same directory, then rename), and the final
component is replaced, never written through.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from pathlib import Path, PurePosixPath

from g2d.core.errors import G2dUserError

MAX_HOPS = 40


class RootPathError(G2dUserError):
    def __init__(self, root: Path, rel: str, reason: str) -> None:
        super().__init__(os.fspath(root), rel, reason)
        self.root = root
        self.rel = rel
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.root}: /{self.rel.lstrip('/')}: {self.reason}"


def resolve_in_root(root: Path, rel: str | os.PathLike[str], *, follow_last: bool = True) -> Path:
    """The host path of ``rel`` in ``root``, symlinks followed as if chrooted into root."""
    todo = deque(PurePosixPath(os.fspath(rel)).parts)
    here: list[str] = []
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("/", ".", ""):
            continue
        if part == "..":
            if here:
                here.pop()
            continue
        path = root.joinpath(*here, part)
        if (todo or follow_last) and path.is_symlink():
            hops += 1
            if hops > MAX_HOPS:
                raise RootPathError(root, os.fspath(rel), "too many levels of symbolic links")
            target = os.readlink(path)
            if target.startswith("/"):
                here = []
            todo.extendleft(reversed(PurePosixPath(target).parts))
            continue
        here.append(part)
    return root.joinpath(*here)


def make_dirs(root: Path, rel: str | os.PathLike[str], mode: int = 0o755) -> Path:
    """``mkdir -p`` inside the root (new directories owned by root); the host path."""
    here = PurePosixPath("/")
    for part in PurePosixPath(os.fspath(rel)).parts:
        if part == "/":
            continue
        here = here / part
        path = resolve_in_root(root, here)
        if not path.exists():
            path.mkdir(mode=mode)
            os.chmod(path, mode)  # not narrowed by the umask
        elif not path.is_dir():
            raise RootPathError(root, os.fspath(here), "is not a directory")
    return resolve_in_root(root, here)


def write_file(
    root: Path,
    rel: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
) -> Path:
    """Write a whole file atomically at ``rel`` in the root; its host path."""
    rel = PurePosixPath(os.fspath(rel))
    parent = make_dirs(root, rel.parent)
    dest = parent / rel.name
    if dest.is_dir() and not dest.is_symlink():
        raise RootPathError(root, os.fspath(rel), "is a directory")
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{rel.name}.", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            os.fchmod(f.fileno(), mode)
            os.fchown(f.fileno(), uid, gid)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def symlink(root: Path, rel: str | os.PathLike[str], target: str) -> Path:
    """Make (or replace, atomically) the symlink ``rel`` -> ``target`` in the root."""
    rel = PurePosixPath(os.fspath(rel))
    parent = make_dirs(root, rel.parent)
    dest = parent / rel.name
    if dest.is_dir() and not dest.is_symlink():
        raise RootPathError(root, os.fspath(rel), "is a directory")
    tmp = parent / f".{rel.name}.g2d-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, dest)
    return dest
