"""GNU tar command lines for the lab's archives: root file systems, snapshots, modules.

Archives are as reproducible as tar allows: members sorted by name, numeric owners, no
atime/ctime and no pid in the pax headers, and mtimes clamped to the release time when one
is given. Root file systems keep xattrs (file capabilities), ACLs and device nodes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# file capabilities live in security.*, ACLs in system.*; "*.*" takes every namespace
_KEEP_METADATA = ["--xattrs", "--xattrs-include=*.*", "--acls"]
_REPRODUCIBLE = [
    "--format=posix",
    "--sort=name",
    "--numeric-owner",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
]


def create_argv(
    directory: Path,
    members: Sequence[str] = (".",),
    *,
    output: Path | None = None,
    mtime: int | None = None,
    transform: str | None = None,
    exclude: Sequence[str] = (),
    root_fs: bool = True,
    compress: str | None = None,
) -> list[str]:
    """tar writing ``members`` of ``directory`` to ``output`` (stdout when None).

    mtime: clamp every member's mtime to this epoch (files newer than the release).
    root_fs: keep xattrs and ACLs (a system root); off for plain trees (snapshots).
    """
    return [
        "tar", "--create",
        f"--file={os.fspath(output) if output else '-'}",
        *([compress] if compress else []),
        f"--directory={os.fspath(directory)}",
        *_REPRODUCIBLE,
        *(_KEEP_METADATA if root_fs else ["--owner=0", "--group=0"]),
        *([f"--mtime=@{mtime}", "--clamp-mtime"] if mtime is not None else []),
        *([f"--transform={transform}"] if transform else []),
        *[f"--exclude={pattern}" for pattern in exclude],
        "--", *members,
    ]  # fmt: skip


def root_archive_argv(root: Path, output: Path, *, compress: str | None = None) -> list[str]:
    """tar of a whole root file system into ``output`` (the debootstrap cache)."""
    return create_argv(root, output=output, compress=compress)


def extract_argv(tarball: Path, dest: Path) -> list[str]:
    """tar unpacking a root file system as it was packed: owners, modes, xattrs, ACLs."""
    return [
        "tar", "--extract",
        f"--file={os.fspath(tarball)}",
        f"--directory={os.fspath(dest)}",
        "--numeric-owner", "--preserve-permissions",
        *_KEEP_METADATA,
    ]  # fmt: skip
