"""Fetch the newest repository snapshot (``gentoo-YYYYMMDD.tar.xz``) with its ``.gpgsig``.

The newest is found by listing the mirror's ``snapshots/`` (an http index, a local or sftp
directory); ``gentoo-latest.tar.xz`` is only a fallback, since its name says no date. The
detached signature is checked by gpg on the same bytes while they arrive. Locally:

```
snapshots/gentoo-YYYYMMDD.tar.xz{,.gpgsig}
snapshots/gentoo-latest.tar.xz{,.gpgsig} -> the newest dated pair (symlinks)
```
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from g2d.core.digests import FileDigests
from g2d.sources.download import Progress, download
from g2d.sources.errors import MirrorBehind, TransferError
from g2d.sources.keyring import Keyring
from g2d.sources.transports import Transports, join_url

_DATED = re.compile(r"gentoo-(?P<day>[0-9]{8})\.tar\.xz")
SIGNATURE_MAX = 64 << 10


@dataclass(frozen=True)
class SnapshotResult:
    name: str  # gentoo-20250101.tar.xz
    day: date
    path: Path
    digests: FileDigests | None  # None when it was already here (not read again)
    seconds: float
    fetched: bool
    url: str
    signed_by: str | None = None
    removed: tuple[Path, ...] = ()


def fetch_snapshot(
    mirror_url: str,
    snapshots_dir: Path,
    *,
    keyring: Keyring,
    keep: int = 2,
    transports: Transports | None = None,
    attempts: int = 1,
    progress: Progress | None = None,
) -> SnapshotResult:
    """Make ``snapshots_dir`` hold the mirror's newest dated snapshot, signature verified.

    mirror_url: the mirror's ``snapshots/`` directory. keep: dated snapshots kept here.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    started = time.monotonic()
    transports = transports or Transports()
    offered = sorted(n for n in transports.listdir(mirror_url) if _DATED.fullmatch(n))
    if not offered:
        raise TransferError(mirror_url, "lists no gentoo-YYYYMMDD.tar.xz snapshot")
    name = offered[-1]
    here = _dated(snapshots_dir)
    if here and name < here[-1]:
        raise MirrorBehind(mirror_url, name, here[-1])
    url = join_url(mirror_url, name)
    dest = snapshots_dir / name
    signature_file = dest.with_name(name + ".gpgsig")
    digests, signer, fetched = None, None, False
    if not (dest.is_file() and signature_file.is_file()):
        signature = transports.read_all(url + ".gpgsig", SIGNATURE_MAX)
        snapshots_dir.mkdir(parents=True, exist_ok=True)
        got = download(
            url,
            dest,
            transports=transports,
            verifier=lambda: keyring.detached_stream(signature, url + ".gpgsig"),
            attempts=attempts,
            progress=progress,
        )
        _write_atomic(signature_file, signature)
        digests, fetched = got.digests, True
        signer = got.signature.fingerprint if got.signature else None
    _link_latest(snapshots_dir, name)
    removed = tuple(_prune(snapshots_dir, keep))
    day = datetime.strptime(_DATED.fullmatch(name)["day"], "%Y%m%d").date()  # type: ignore[index]
    return SnapshotResult(
        name, day, dest, digests, time.monotonic() - started, fetched, url, signer, removed
    )


def _dated(directory: Path) -> list[str]:
    """Complete dated snapshots here (tarball and signature), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if _DATED.fullmatch(p.name) and p.with_name(p.name + ".gpgsig").is_file()
    )


def _link_latest(directory: Path, name: str) -> None:
    for suffix in ("", ".gpgsig"):
        link = directory / f"gentoo-latest.tar.xz{suffix}"
        tmp = directory / f".gentoo-latest.tar.xz{suffix}.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name + suffix)
        os.replace(tmp, link)


def _prune(directory: Path, keep: int) -> list[Path]:
    removed = []
    for old in _dated(directory)[:-keep]:
        for path in (directory / old, directory / f"{old}.gpgsig"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
