"""Fetch a list of distfiles from a GLEP 75 mirror, several at a time, each verified.

The mirror's ``layout.conf`` says where a file lives; the local copy uses the same layout
(the dom0 serves it on as a mirror) and gets the same ``layout.conf``. A file already here
is kept when it is correct: its digests match when they are known, else its size, else it
exists. One failed file does not stop the others; the result counts them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from g2d.core.digests import FileDigests, Hasher
from g2d.core.distfiles_layout import Layout, parse_layout_conf, render_layout_conf
from g2d.core.errors import G2dUserError
from g2d.sources.download import download
from g2d.sources.group_commit import GroupCommit
from g2d.sources.transports import Transports, join_url

DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class DistfilesResult:
    fetched: tuple[str, ...]
    present: tuple[str, ...]  # already here and correct: not fetched
    failed: dict[str, G2dUserError] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def fetch_distfiles(
    mirror_url: str,
    distdir: Path,
    files: Iterable[FileDigests | str],
    *,
    workers: int = DEFAULT_WORKERS,
    transports: Transports | None = None,
    attempts: int = 1,
    durable: bool = True,
) -> DistfilesResult:
    """Fetch ``files`` (names, or FileDigests with size and BLAKE2B/SHA512) into ``distdir``.

    mirror_url: the mirror's ``distfiles/`` directory. workers: at most this many
    transfers at once. durable: verified files reach their names only once on disk, synced
    in groups in the background (``GroupCommit``) rather than one fsync at a time in each
    worker; False renames each at once and syncs nothing. Errors of single files land in
    ``result.failed`` (by name); a layout.conf that cannot be fetched raises
    ``TransferError``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    started = time.monotonic()
    transports = transports or Transports()
    wanted = [f if isinstance(f, FileDigests) else FileDigests(f) for f in files]
    layout = parse_layout_conf(
        transports.read_all(join_url(mirror_url, "layout.conf"), 64 << 10).decode("utf-8"),
        join_url(mirror_url, "layout.conf"),
    )
    distdir.mkdir(parents=True, exist_ok=True)
    _write_layout(distdir, layout)

    made: set[Path] = set()  # directories known to exist: one mkdir each, not one per file
    group = GroupCommit() if durable else None

    def one(spec: FileDigests) -> tuple[str, int | G2dUserError | None]:
        try:
            relative = layout.path(spec.name)
            dest = distdir / relative
            if _is_correct(dest, spec):
                return spec.name, None
            if dest.parent not in made:
                dest.parent.mkdir(parents=True, exist_ok=True)
                made.add(dest.parent)
            got = download(
                join_url(mirror_url, relative),
                dest,
                transports=transports,
                expect=spec if spec.hashes or spec.size is not None else None,
                attempts=attempts,
                durable=False,  # the group syncs, when durable
                commit=group.add if group is not None else None,
            )
            return spec.name, got.size
        except G2dUserError as e:
            return spec.name, e

    fetched: list[str] = []
    present: list[str] = []
    failed: dict[str, G2dUserError] = {}
    total = 0
    with (
        group if group is not None else nullcontext(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="g2d-distfile") as pool,
    ):
        for name, outcome in pool.map(one, wanted):
            if outcome is None:
                present.append(name)
            elif isinstance(outcome, G2dUserError):
                failed[name] = outcome
            else:
                fetched.append(name)
                total += outcome
    return DistfilesResult(
        tuple(fetched), tuple(present), failed, total, time.monotonic() - started
    )


def _is_correct(path: Path, spec: FileDigests) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if spec.size is not None and size != spec.size:
        return False
    if not spec.hashes:
        return True
    hasher = Hasher(spec.hashes)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return not spec.mismatches(hasher.hexdigests())


def _write_layout(distdir: Path, layout: Layout) -> None:
    conf = distdir / "layout.conf"
    text = render_layout_conf(layout)
    if conf.exists() and conf.read_text() == text:
        return
    tmp = conf.with_name(".layout.conf.new")
    tmp.write_text(text)
    os.replace(tmp, conf)
