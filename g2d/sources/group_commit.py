"""Many verified files made durable together, then renamed into place.

Renaming a file into place before its data is on disk could leave, after a crash, a final
name holding an empty or half-written file. An fsync per file in the downloading thread
prevents that, but each waits for its own journal commit: for hundreds of small distfiles,
a large part of the time of the whole fetch. A group commit keeps the guarantee: files wait under
their temporary names while a background thread, at most every ``interval`` seconds and
once at the end, fsyncs the files added so far and then renames them. The workers never
wait for the disk; only the last group is waited for. Only our own files are synced
(``syncfs`` would be one call, but it waits for every other writer of the file system:
measured here at up to a second on a busy disk). A crash before a rename leaves only a
temporary name (fetched again next time). As with one fsync per file, a rename itself
reaches the disk with the next commit of the file system: losing one costs a fetch, never a
wrong file.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

INTERVAL = 0.2  # seconds between two groups: a few commits per second, however many files


class GroupCommit:
    """``add(part, dest)`` from any thread, inside ``with``; every file added is at ``dest``
    when the ``with`` block is left (or still at ``part`` if syncing failed: that error is
    raised then, and by any later ``add``)."""

    def __init__(self, *, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.syncs = 0  # groups synced and renamed so far
        self._pending: list[tuple[Path, Path]] = []
        self._stop = False
        self._error: OSError | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="g2d-group-commit", daemon=True)

    def add(self, part: Path, dest: Path) -> None:
        with self._changed:
            if self._error is not None:
                raise self._error
            self._pending.append((part, dest))
            self._changed.notify()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._stop)
                # gather more files until the interval is over, unless the end has come
                wait = last + self.interval - time.monotonic()
                self._changed.wait_for(lambda: self._stop, timeout=max(0.0, wait))
                group, self._pending = self._pending, []
                stop = self._stop
            if group:
                last = time.monotonic()
                try:
                    for part, _ in group:
                        _fsync(part)
                    self.syncs += 1
                    for part, dest in group:
                        os.replace(part, dest)
                except OSError as e:
                    with self._changed:
                        self._error = e
                    return  # nothing more is renamed: the rest stay at their .part names
            if stop:
                return

    def __enter__(self) -> GroupCommit:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify()
        self._thread.join()
        if self._error is not None and t is None:
            raise self._error


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
