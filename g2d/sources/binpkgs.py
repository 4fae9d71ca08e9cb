"""Mirror a binhost: its ``Packages`` index, then every binary package it lists, each checked
against the index's ``SIZE`` and digests (``MD5``/``SHA1`` as Portage writes them, ``BLAKE2B``/
``SHA512`` where present) while the bytes arrive.

Over http(s)://, file:// and ssh:// the index is read first; a package already here with
the size and digests the index gives is kept (trusted without re-hashing when the index
kept here from the last sync lists it the same way: it was checked when it came); the
others are fetched several at a time, each renamed into place only once it matched. Only
then are ``Packages`` (and a ``Packages.gz`` of the same bytes, which clients ask for
first) replaced, and packages the index no longer lists deleted. A mirror whose index is
older than ours is refused. Over rsync:// the tree is copied into a staging directory
beside ours (hard links to unchanged files), checked against its own index the same way,
then swapped in.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from g2d.core.digests import FileDigests
from g2d.core.errors import G2dUserError
from g2d.core.packages_index import BinpkgEntry, PackagesIndex, parse_packages
from g2d.hosts.ssh import SshHost
from g2d.sources.download import download
from g2d.sources.errors import DigestMismatch, MirrorBehind, TransferError, VerificationFailed
from g2d.sources.keyring import Verified
from g2d.sources.rsync import rsync_tree
from g2d.sources.transports import Transports, join_url
from g2d.sources.tree_swap import swap_tree

INDEX = "Packages"
INDEX_MAX = 256 << 20  # a 20k-package index is ~10 MB
BINPKG_SUFFIXES = (".gpkg.tar", ".tbz2", ".xpak")


@dataclass(frozen=True)
class BinpkgsResult:
    url: str
    files: int  # packages transferred
    fetched: tuple[str, ...]  # their paths relative to the binhost (over rsync: not known)
    present: tuple[str, ...]
    removed: tuple[str, ...]
    bytes: int
    seconds: float
    checked: tuple[str, ...]  # the digest names the index gave, e.g. ("MD5", "SHA1")
    index_changed: bool


class FilesRejected(VerificationFailed):
    """Files whose bytes differ from their signed list or index; none of them was kept."""

    def __init__(self, url: str, what: str, errors: Mapping[str, str]) -> None:
        listed = "; ".join(errors.values())
        super().__init__(url, f"{len(errors)} {what} differ from {_SOURCE[what]}: {listed}")
        self.args = (url, what, dict(errors))
        self.what, self.errors = what, dict(errors)


class FilesIncomplete(TransferError):
    """Some files did not arrive; a retry fetches only those."""

    def __init__(self, url: str, what: str, errors: Mapping[str, str]) -> None:
        listed = "; ".join(errors.values())
        super().__init__(url, f"{len(errors)} {what} did not arrive: {listed}")
        self.args = (url, what, dict(errors))
        self.what, self.errors = what, dict(errors)


BINPKGS = "binary package(s)"
DISTFILES = "distfile(s)"
_SOURCE = {BINPKGS: "the Packages index", DISTFILES: "the Manifests"}


class IndexDigests:
    """A stream check of the index's digests for one package (``download``'s verifier)."""

    def __init__(self, url: str, entry: BinpkgEntry) -> None:
        self.url, self.entry = url, entry
        self._hashers = entry.new_hashers()

    def update(self, chunk: bytes | memoryview) -> None:
        for h in self._hashers.values():
            h.update(chunk)

    def finish(self) -> Verified:
        wrong = [n for n, h in self._hashers.items() if h.hexdigest() != self.entry.hashes[n]]
        if wrong:
            raise DigestMismatch(self.url, f"{' and '.join(wrong)} differ from the Packages index")
        # no key vouches here: the index does; the names say which digests matched
        return Verified("", "", 0, text=" ".join(self._hashers))

    def abort(self) -> None:
        self._hashers = {}


def _local_index(pkgdir: Path) -> PackagesIndex | None:
    try:
        return parse_packages((pkgdir / INDEX).read_text(), os.fspath(pkgdir / INDEX))
    except (OSError, G2dUserError):
        return None  # none, or damaged: every package is checked by hashing


def _is_correct(path: Path, entry: BinpkgEntry, trusted: BinpkgEntry | None) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if entry.size is not None and size != entry.size:
        return False
    if trusted == entry:
        return True
    hashers = entry.new_hashers()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashers.values():
                h.update(chunk)
    return all(h.hexdigest() == entry.hashes[n] for n, h in hashers.items())


def fetch_binpkgs(
    mirror_url: str,
    pkgdir: Path,
    *,
    workers: int = 8,
    transports: Transports | None = None,
    ssh: SshHost | None = None,
    attempts: int = 1,
) -> BinpkgsResult:
    """Make ``pkgdir`` a verified copy of the binhost at ``mirror_url`` (see the module text).

    Raises ``TransferError`` (retry; what arrived is kept), ``VerificationFailed`` (the
    index in place is unchanged) or ``MirrorBehind``."""
    if urlsplit(mirror_url).scheme == "rsync":
        return _rsync_binhost(mirror_url, pkgdir, ssh)
    started = time.monotonic()
    transports = transports or Transports()
    index_url = join_url(mirror_url, INDEX)
    raw = transports.read_all(index_url, INDEX_MAX)
    index = parse_packages(raw.decode("utf-8"), index_url)
    here = _local_index(pkgdir)
    _refuse_older(index_url, index, here)
    trusted = {e.path: e for e in here.entries} if here else {}
    pkgdir.mkdir(parents=True, exist_ok=True)

    def one(entry: BinpkgEntry) -> tuple[str, int | G2dUserError | None]:
        dest = pkgdir / entry.path
        try:
            if _is_correct(dest, entry, trusted.get(entry.path)):
                return entry.path, None
            dest.parent.mkdir(parents=True, exist_ok=True)
            url = join_url(mirror_url, entry.path)
            got = download(
                url, dest, transports=transports,
                expect=FileDigests(entry.path.rsplit("/", 1)[-1], {}, entry.size),
                verifier=lambda: IndexDigests(url, entry), attempts=attempts,
            )  # fmt: skip
            return entry.path, got.size
        except G2dUserError as e:
            return entry.path, e

    fetched, present, total = [], [], 0
    rejected: dict[str, str] = {}
    missing: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="g2d-binpkg") as pool:
        for path, outcome in pool.map(one, index.entries):
            if outcome is None:
                present.append(path)
            elif isinstance(outcome, VerificationFailed):
                rejected[path] = str(outcome)
            elif isinstance(outcome, G2dUserError):
                missing[path] = str(outcome)
            else:
                fetched.append(path)
                total += outcome
    if rejected:
        raise FilesRejected(mirror_url, BINPKGS, rejected)
    if missing:
        raise FilesIncomplete(mirror_url, BINPKGS, missing)
    changed = here is None or (pkgdir / INDEX).read_bytes() != raw
    if changed:
        _write_index(pkgdir, raw, index)
    removed = _prune(pkgdir, index)
    return BinpkgsResult(
        mirror_url, len(fetched), tuple(fetched), tuple(present), tuple(removed), total,
        time.monotonic() - started, _checked(index), changed,
    )  # fmt: skip


def _checked(index: PackagesIndex) -> tuple[str, ...]:
    names = {n for e in index.entries for n in e.hashes}
    return tuple(n for n in ("MD5", "SHA1", "BLAKE2B", "SHA512") if n in names)


def _refuse_older(url: str, offered: PackagesIndex, here: PackagesIndex | None) -> None:
    if here is None or offered.timestamp is None or here.timestamp is None:
        return
    if offered.timestamp < here.timestamp:
        show = "%Y-%m-%d %H:%M:%S UTC"
        raise MirrorBehind(url, offered.timestamp.strftime(show), here.timestamp.strftime(show))


def _write_index(pkgdir: Path, raw: bytes, index: PackagesIndex) -> None:
    """``Packages`` and ``Packages.gz`` (same bytes; clients ask for the .gz first)."""
    stamp = index.timestamp.timestamp() if index.timestamp else time.time()
    for name, data in ((f"{INDEX}.gz", gzip.compress(raw, mtime=int(stamp))), (INDEX, raw)):
        tmp = pkgdir / f".{name}.new"
        tmp.write_bytes(data)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, pkgdir / name)


def _prune(pkgdir: Path, index: PackagesIndex) -> list[str]:
    """Delete binary packages the index no longer lists, and directories left empty."""
    listed = {e.path for e in index.entries}
    removed = []
    for path in sorted(pkgdir.rglob("*")):
        relative = path.relative_to(pkgdir).as_posix()
        if path.is_file() and path.name.endswith(BINPKG_SUFFIXES) and relative not in listed:
            path.unlink()
            removed.append(relative)
    for directory in sorted((p for p in pkgdir.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def _rsync_binhost(url: str, pkgdir: Path, ssh: SshHost | None) -> BinpkgsResult:
    started = time.monotonic()
    here = _local_index(pkgdir)
    staging = pkgdir.with_name(f".{pkgdir.name}.g2d-sync")
    stats = rsync_tree(url, staging, link_dest=pkgdir if pkgdir.is_dir() else None, ssh=ssh)
    try:
        source = join_url(url, INDEX)
        index = parse_packages((staging / INDEX).read_text(), source)
        _refuse_older(source, index, here)
        bad = {}
        for entry in index.entries:
            if not _is_correct(staging / entry.path, entry, None):
                bad[entry.path] = f"{join_url(url, entry.path)}: missing or differs from the index"
        if bad:
            raise FilesRejected(url, BINPKGS, bad)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_tree(staging, pkgdir)
    return BinpkgsResult(
        url, stats.files, (), (), (), stats.transferred_size,
        time.monotonic() - started, _checked(index), stats.files > 0,
    )  # fmt: skip
