"""Build a lab tree next to its destination, then swap it in: readers never see half a tree.

The lab replaces only what it wrote itself: `replace_tree` refuses a non-empty destination
that does not carry the lab's mark, so a mistyped path cannot wipe someone's directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.lab.process import random_token


class LabTreeError(G2dUserError):
    """A lab tree cannot be written where asked, or names what the lab does not have."""


@contextmanager
def staged(dest: Path, *, ours: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Yield an empty staging directory beside `dest`; on success it replaces `dest`."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise LabTreeError(f"{dest} exists and is not a directory", hint="pick another path")
    if dest.is_dir() and any(dest.iterdir()) and not ours(dest):
        raise LabTreeError(
            f"{dest} is not empty and is not a g2d lab {what}",
            hint=f"the lab replaces only a {what} it wrote; pick an empty directory",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    new = dest.with_name(f".{dest.name}.{random_token()}.new")
    new.mkdir()
    try:
        yield new
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{random_token()}.old")
            os.rename(dest, old)
            os.rename(new, dest)
            shutil.rmtree(old)
        else:
            os.rename(new, dest)
    finally:
        if new.exists():
            shutil.rmtree(new)
