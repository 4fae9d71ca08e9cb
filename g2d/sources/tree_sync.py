"""Sync the ebuild repository from a mirror: never back in time, never a bad tree in place.

1. Read the mirror's ``metadata/timestamp.chk`` (one small rsync). Equal to ours: done, the
   whole cost of an already-current tree. Older: refused (``MirrorBehind``), nothing changed.
2. rsync the tree into a staging directory beside the repository with ``--link-dest`` on the
   repository: unchanged files become hard links, so only what changed is fetched or stored
   (no full copy). A failed transfer keeps the staging directory; the next try resumes it.
3. Verify the staging tree: its timestamp again (a round-robin name may have sent us to
   another, older server), then its Manifests with gemato against the given keys, and the
   signed Manifest TIMESTAMP not older than ours (timestamp.chk is unsigned: a replayed old
   tree with a fresh timestamp.chk is caught here). A failure deletes the staging tree.
4. Swap: the local-only directories (distfiles, local, packages, .git) move into the new
   tree, then one ``renameat2(RENAME_EXCHANGE)`` puts it in place atomically (two renames
   where the file system cannot exchange), and the old tree is removed.

A repository that is a mount point (its own dataset) cannot be renamed: there the staging
directory lives inside it (excluded from the sync) and the verified tree is copied over
with a local ``rsync --delete``, as Portage's quarantine does; still nothing unverified
ever lands in place.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.mirrors import BadTimestamp, parse_timestamp_chk
from g2d.hosts.ssh import SshHost
from g2d.sources.errors import MirrorBehind
from g2d.sources.manifest import ManifestReport, signed_timestamp, verify_tree
from g2d.sources.rsync import (
    LOCAL_ONLY,
    TIMESTAMP_FILE,
    RsyncStats,
    fetch_timestamp,
    rsync_tree,
    run_rsync,
)
from g2d.sources.tree_swap import swap_tree

log = logging.getLogger("g2d.sources")

INNER_STAGING = ".g2d-sync"  # inside a repository that is a mount point


@dataclass(frozen=True)
class TreeSync:
    """What ``sync_repository`` did. ``stats`` is None when the tree was already current."""

    url: str
    dest: Path
    remote: datetime  # the mirror's timestamp.chk
    previous: datetime | None  # ours before the sync
    stats: RsyncStats | None
    manifest: ManifestReport | None
    seconds: float

    @property
    def changed(self) -> bool:
        return self.stats is not None


class TreeBusy(G2dUserError):
    """Another sync of the same tree is running."""

    def __init__(self, dest: Path) -> None:
        super().__init__(os.fspath(dest), hint="wait for the other sync to finish")
        self.dest = dest

    def __str__(self) -> str:
        return f"{os.fspath(self.dest)}: another sync of this tree is running"


@contextmanager
def sync_lock(dest: Path) -> Iterator[None]:
    """One sync of the tree ``dest`` at a time, across processes (a nightly esync and one
    from the CLI); the second raises ``TreeBusy`` at once."""
    # beside the tree, not in it: the tree is swapped out under the lock
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest.with_name(f".{dest.name}.g2d-lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TreeBusy(dest) from None
        yield
    finally:
        os.close(fd)


def local_timestamp(tree: Path) -> datetime | None:
    """Our tree's timestamp.chk; None if there is none (or it is unreadable: sync again)."""
    try:
        return parse_timestamp_chk((tree / TIMESTAMP_FILE).read_text(), os.fspath(tree))
    except (OSError, BadTimestamp):
        return None


def staging_dir(dest: Path) -> Path:
    if os.path.ismount(dest):
        return dest / INNER_STAGING
    return dest.with_name(f".{dest.name}.g2d-sync")


def sync_repository(
    url: str,
    dest: Path,
    *,
    key_files: Sequence[Path] = (),
    verify: bool = True,
    ssh: SshHost | None = None,
    timeout: float | None = None,
    jobs: int | None = None,
) -> TreeSync:
    """Bring ``dest`` up to the mirror's tree at ``url``, verified (see the module text).

    key_files: the OpenPGP keys the top-level Manifest must be signed by; none with
    ``verify`` checks the hashes only. Raises ``TransferError`` (retry, or the next mirror),
    ``MirrorBehind`` or ``VerificationFailed`` (never retried); ``dest`` is then unchanged."""
    dest = dest.absolute()
    with sync_lock(dest):
        return _sync(url, dest, key_files, verify, ssh, timeout, jobs)


def _sync(
    url: str,
    dest: Path,
    key_files: Sequence[Path],
    verify: bool,
    ssh: SshHost | None,
    timeout: float | None,
    jobs: int | None,
) -> TreeSync:
    started = time.monotonic()
    previous = local_timestamp(dest)
    remote = fetch_timestamp(url, ssh=ssh)
    if previous is not None and remote == previous:
        log.info("%s: already current (%s)", dest, _show(remote))
        return TreeSync(url, dest, remote, previous, None, None, time.monotonic() - started)
    _refuse_older(url, remote, previous)
    staging = staging_dir(dest)
    inner = staging.parent == dest
    stats = rsync_tree(
        url,
        staging,
        link_dest=dest if dest.is_dir() else None,
        ssh=ssh,
        extra=[f"--exclude=/{INNER_STAGING}"] if inner else [],
        timeout=timeout,
    )
    try:
        manifest = _check_staging(url, staging, dest, previous, key_files, verify, jobs)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never build a retry on bad bytes
        raise
    if inner:
        _copy_over(staging, dest)
    else:
        _swap_in(staging, dest)
    log.info("%s: synced to %s from %s: %d files", dest, _show(remote), url, stats.files)
    return TreeSync(url, dest, remote, previous, stats, manifest, time.monotonic() - started)


def _show(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


def _refuse_older(url: str, offered: datetime | None, have: datetime | None) -> None:
    if offered is not None and have is not None and offered < have:
        raise MirrorBehind(url, _show(offered), _show(have))


def _check_staging(
    url: str,
    staging: Path,
    dest: Path,
    previous: datetime | None,
    key_files: Sequence[Path],
    verify: bool,
    jobs: int | None,
) -> ManifestReport | None:
    synced = local_timestamp(staging)
    if synced is None:
        raise BadTimestamp(f"{url.rstrip('/')}/{TIMESTAMP_FILE}", "(missing)", "a time")
    _refuse_older(url, synced, previous)
    if not verify:
        return None
    report = verify_tree(staging, key_files, jobs=jobs)
    _refuse_older(url, report.timestamp, signed_timestamp(dest))
    return dataclasses.replace(report, tree=dest)  # where the verified tree now lives


def _swap_in(staging: Path, dest: Path) -> None:
    for name in LOCAL_ONLY:  # what the mirror never sends stays with the repository
        if (dest / name).exists() and not (staging / name).exists():
            os.rename(dest / name, staging / name)
    swap_tree(staging, dest)


def _copy_over(staging: Path, dest: Path) -> None:
    argv = [
        "--archive",
        "--delete",
        f"--exclude=/{INNER_STAGING}",
        *(f"--exclude=/{name}" for name in (*LOCAL_ONLY, "lost+found")),
        os.fspath(staging) + "/",
        os.fspath(dest) + "/",
    ]
    run_rsync(argv, staging.as_uri(), timeout=None)
    shutil.rmtree(staging)
