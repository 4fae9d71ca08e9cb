"""A distfiles mirror in the GLEP 75 layout Gentoo's master mirror serves.

``distfiles/layout.conf`` says ``[structure]`` / ``0=filename-hash BLAKE2B 8``: a file lives
under the first 8 bits (2 hex digits) of the BLAKE2B-512 hash of its *name*, for example
``distfiles/d5/linux-6.6.tar.xz``. Portage reads layout.conf and fetches from that path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

LAYOUT_CONF = "[structure]\n0=filename-hash BLAKE2B 8\n"
CUTOFF_BITS = 8


def hashed_path(name: str) -> str:
    """``<hh>/<name>``: where GLEP 75's ``filename-hash BLAKE2B 8`` puts ``name``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a distfile name: {name!r}")
    digest = hashlib.blake2b(name.encode("utf-8")).hexdigest()
    return f"{digest[: CUTOFF_BITS // 4]}/{name}"


def publish_distfiles(distfiles: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Write ``layout.conf`` and each file at its hashed path; returns name -> path."""
    distfiles.mkdir(parents=True, exist_ok=True)
    (distfiles / "layout.conf").write_text(LAYOUT_CONF)
    placed = {}
    for name, data in sorted(files.items()):
        path = distfiles / hashed_path(name)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{name}.partial")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        placed[name] = path
    return placed
