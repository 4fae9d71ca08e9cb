"""The same chunks handed to several consumers at once, each on its own thread.

A large download feeds every chunk to BLAKE2B, SHA512 and gpg's FIFO. hashlib and os.write
release the GIL for large buffers, so on separate threads these run side by side on the
machine's cores, and the slowest of them sets the pace rather than their sum. Every queue
holds the same immutable ``bytes`` objects, so memory stays at about ``depth`` chunks.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

Sink = Callable[[bytes], object]
_END = object()  # ends the stream of a queue


class Fanout:
    """``feed(chunk)`` gives ``chunk`` to every sink, in order; ``close()`` waits for all.

    The first exception of a sink is raised by the next ``feed`` or by ``close`` (in the
    feeding thread); the other sinks see no more chunks after it.
    """

    def __init__(self, sinks: Sequence[Sink], *, depth: int = 4, name: str = "g2d-fanout") -> None:
        self._queues: list[queue.Queue[object]] = [queue.Queue(depth) for _ in sinks]
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(s, q), name=f"{name}-{i}", daemon=True)
            for i, (s, q) in enumerate(zip(sinks, self._queues, strict=True))
        ]
        for t in self._threads:
            t.start()
        self._closed = False

    def _run(self, sink: Sink, chunks: queue.Queue[object]) -> None:
        while (chunk := chunks.get()) is not _END:
            assert isinstance(chunk, bytes)
            if self._error is not None:
                continue  # drain, so that the feeder never blocks on a full queue
            try:
                sink(chunk)
            except BaseException as e:  # handed to the feeding thread
                with self._lock:
                    self._error = self._error or e

    def feed(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if chunk:
            for q in self._queues:
                q.put(chunk)

    def close(self) -> None:
        """Wait until every sink has taken every chunk; raise the first sink error."""
        if not self._closed:
            self._closed = True
            for q in self._queues:
                q.put(_END)
            for t in self._threads:
                t.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Fanout:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if t is None:
            self.close()
            return
        with self._lock:  # the feeder failed: the sinks may drop what is still queued
            self._error = self._error or e
        with contextlib.suppress(BaseException):  # the feeder's own exception is the one to see
            self.close()


class Inline:
    """The same interface as ``Fanout``, calling each sink in turn in the feeding thread: for
    small files, where starting threads would cost more than it saves."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self._sinks = tuple(sinks)

    def feed(self, chunk: bytes) -> None:
        for sink in self._sinks:
            sink(chunk)

    def close(self) -> None:
        pass

    def __enter__(self) -> Inline:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass
