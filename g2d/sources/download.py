"""Fetch one file: into a temporary name beside the destination, hashed (and signature-checked)
while the bytes arrive, renamed into place only once everything matched.

The temporary file is ``.<name>.part``. A transfer error keeps it, so the next attempt asks
for the rest with Range (its bytes are read back once to feed the hashes, never fetched
again). A verification error deletes it, so a retry cannot build on bad bytes. The
destination name only ever holds a whole, verified file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from g2d.core.digests import Algo, FileDigests, Hasher
from g2d.sources.errors import DigestMismatch, TransferError, Truncated, VerificationFailed
from g2d.sources.fanout import Fanout, Inline
from g2d.sources.keyring import Verified
from g2d.sources.transports import Opened, Transports, transfer_exceptions
from g2d.sources.writeback import Writeback

log = logging.getLogger("g2d.sources")

CHUNK = 1 << 20
ALGOS = (Algo.blake2b, Algo.sha512)
FANOUT_MIN = 4 << 20  # smaller files are hashed inline: threads would cost more than they save
Progress = Callable[[int, int | None], None]  # (bytes so far, total if known)
Commit = Callable[[Path, Path], None]  # (verified .part, its final name)


class StreamVerifier(Protocol):
    """Checks the bytes as they pass (a detached signature, see ``Keyring.detached_stream``)."""

    def update(self, chunk: bytes | memoryview) -> None: ...
    def finish(self) -> Verified: ...
    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Downloaded:
    url: str
    path: Path
    digests: FileDigests  # BLAKE2B and SHA512 of what was written, with its size
    resumed_from: int  # bytes of an earlier attempt that were kept (0: a fresh download)
    seconds: float
    signature: Verified | None = None

    @property
    def size(self) -> int:
        return self.digests.size or 0


def part_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` collect until they are verified."""
    return dest.with_name(f".{dest.name}.part")


def download(
    url: str,
    dest: Path,
    *,
    transports: Transports,
    expect: FileDigests | None = None,
    verifier: Callable[[], StreamVerifier] | None = None,
    resume: bool | None = None,
    attempts: int = 1,
    retry_delay: float = 1.0,
    progress: Progress | None = None,
    durable: bool = True,
    commit: Commit | None = None,
) -> Downloaded:
    """Fetch ``url`` to ``dest``, checking ``expect`` (size, BLAKE2B, SHA512) and ``verifier``.

    resume: continue a partial file from an earlier attempt; by default only when
    something checks the whole result (a digest or a signature), since the kept bytes could
    otherwise belong to an older version of the file. attempts: transfer errors are tried
    again this many times in all (verification errors never). Raises ``TransferError`` or
    ``VerificationFailed``; ``is_retryable`` tells them apart. durable: fsync the file before
    it is renamed. commit: instead of renaming at once, hand (part, dest) of the verified
    file to this (``GroupCommit.add``: one sync for many files, then the renames; pass
    ``durable=False`` with it).
    """
    if resume is None:
        resume = bool(expect and expect.hashes) or verifier is not None
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(
                url, dest, transports, expect, verifier, resume, progress, durable, commit
            )
        except TransferError as e:
            if attempt == attempts:
                raise
            log.warning("%s (attempt %d of %d; trying again)", e, attempt, attempts)
            time.sleep(retry_delay * attempt)
    raise AssertionError("unreachable")  # attempts >= 1


def _attempt(
    url: str,
    dest: Path,
    transports: Transports,
    expect: FileDigests | None,
    verifier_factory: Callable[[], StreamVerifier] | None,
    resume: bool,
    progress: Progress | None,
    durable: bool,
    commit: Commit | None,
) -> Downloaded:
    started = time.monotonic()
    part = part_path(dest)
    have = part.stat().st_size if resume and part.exists() else 0
    if expect is not None and expect.size is not None and have > expect.size:
        have = 0  # longer than the whole file: not a prefix of it
    opened = transports.open(url, have)
    whole = opened.total if opened.total is not None else expect.size if expect else None
    threaded = whole is None or whole >= FANOUT_MIN
    # one hasher per algorithm, so that each can run on its own thread
    hashers = [Hasher([algo]) for algo in ALGOS] if threaded else [Hasher(ALGOS)]
    try:
        verifier = verifier_factory() if verifier_factory else None
        try:
            sinks = [h.update for h in hashers] + ([verifier.update] if verifier else [])
            with (
                open(part, "r+b" if opened.offset else "wb") as out,
                Writeback(out) if durable and threaded else nullcontext() as writeback,
                Fanout(sinks) if threaded else Inline(sinks) as feed,
            ):
                if opened.offset:
                    _replay(out, opened.offset, feed)
                out.truncate(opened.offset)
                _copy(opened, out, feed, expect, progress, writeback)
                if durable:  # while the hashes and gpg catch up with the last chunks
                    out.flush()
                    os.fsync(out.fileno())
        except BaseException:
            if verifier is not None:
                verifier.abort()
            raise
        finally:
            opened.close()
        name = expect.name if expect is not None else dest.name
        hexdigests = {a: d for h in hashers for a, d in h.hexdigests().items()}
        digests = FileDigests(name, hexdigests, hashers[0].size)
        _check(url, digests, expect)
        signature = verifier.finish() if verifier is not None else None
    except VerificationFailed:
        part.unlink(missing_ok=True)  # a retry must start from nothing
        raise
    if commit is not None:
        commit(part, dest)
    else:
        os.replace(part, dest)
    seconds = time.monotonic() - started
    return Downloaded(url, dest, digests, opened.offset, seconds, signature)


def _replay(out: BinaryIO, length: int, feed: Fanout | Inline) -> None:
    """Feed the kept prefix to the hashes and the signature check, as if it had just come."""
    left = length
    while left:
        chunk = out.read(min(CHUNK, left))
        if not chunk:
            raise TransferError(str(out), "the partial file shrank while it was read")
        feed.feed(chunk)
        left -= len(chunk)


def _copy(
    opened: Opened,
    out: BinaryIO,
    feed: Fanout | Inline,
    expect: FileDigests | None,
    progress: Progress | None,
    writeback: Writeback | None,
) -> None:
    limit = expect.size if expect is not None else None
    total = opened.total if opened.total is not None else limit
    errors = transfer_exceptions()
    size = opened.offset
    while True:
        try:
            chunk = opened.stream.read(CHUNK)
        except errors as e:
            raise TransferError(
                opened.url, f"connection lost after {size} bytes: {e or type(e).__name__}"
            ) from e
        if not chunk:
            break
        out.write(chunk)
        feed.feed(chunk)
        size += len(chunk)
        if writeback is not None:
            writeback.written(len(chunk))
        if limit is not None and size > limit:
            raise DigestMismatch(
                opened.url, f"is larger than the {limit} bytes the signed list gives"
            )
        if progress is not None:
            progress(size, total)
    for whole in (opened.total, limit):
        if whole is not None and size < whole:
            raise Truncated(opened.url, size, whole)


def _check(url: str, got: FileDigests, expect: FileDigests | None) -> None:
    if expect is None:
        return
    if expect.size is not None and got.size != expect.size:
        raise DigestMismatch(url, f"has {got.size} bytes, the signed list says {expect.size}")
    wrong = expect.mismatches(got.hashes)
    if wrong:
        names = " and ".join(str(a) for a in wrong)
        raise DigestMismatch(
            url,
            f"{names} digest differs from the signed list for {expect.name}",
            hint="the file was altered or damaged; it was not kept; try another mirror",
        )
