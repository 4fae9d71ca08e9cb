"""Put a verified staging tree in the place of a tree, atomically where the kernel can.

``renameat2(RENAME_EXCHANGE)`` swaps the two directories in one step, so readers (an http
server, a client's rsync) see either the old tree or the new one, never none; where the file
system cannot exchange, two renames leave a short gap. The old tree is deleted after.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the kernel or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # a libc without it (glibc < 2.28)
        return False
    ok = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if ok == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def swap_tree(staging: Path, dest: Path) -> None:
    """``staging`` becomes ``dest``; the previous ``dest`` is removed."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    if not exchange(staging, dest):
        old = dest.with_name(f".{dest.name}.g2d-old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(staging, dest)
        staging = old
    shutil.rmtree(staging)  # the previous tree, now under the staging name
