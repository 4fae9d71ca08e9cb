"""Data of a large download written to disk while it still arrives, not all at the end.

The downloader fsyncs a file before renaming it into place, so that a crash can never leave
a name holding a half-written file. For a large file that last fsync would write everything
at once while nothing else happens; ``Writeback``, a background thread that calls
``fdatasync`` every ``every`` bytes, spreads the disk writes over the transfer, and the
final fsync finds little left to do. (Small files are synced in groups: ``GroupCommit``.)
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import BinaryIO

EVERY = 8 << 20


class Writeback:
    """Use around the writes to ``out``; call ``written(n)`` after each one."""

    def __init__(self, out: BinaryIO, every: int = EVERY) -> None:
        self._out = out
        self._every = every
        self._pending = 0
        self._due = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="g2d-writeback", daemon=True)

    def __enter__(self) -> Writeback:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop = True
        self._due.set()
        self._thread.join()  # the file is closed after this; no fdatasync may run on it then

    def written(self, n: int) -> None:
        self._pending += n
        if self._pending >= self._every:
            self._pending = 0
            self._out.flush()
            self._due.set()

    def _run(self) -> None:
        fd = self._out.fileno()
        while True:
            self._due.wait()
            self._due.clear()
            if self._stop:
                return
            try:
                os.fdatasync(fd)
            except OSError:
                return  # the final fsync of the downloader reports the error
