"""Collect a child's output: stream it line by line to a logger, keep a capped copy.

Shared by the local runner and the ssh transport, so both log and cap the same way.
"""

from __future__ import annotations

import logging
from collections import deque

LOG_LINE_MAX = 4096  # characters of one line that reach the log
TAIL_BYTES = 8192  # bytes of stderr an error carries


class OutputCollector:
    """Receives chunks of one stream; logs complete lines, keeps the head and the tail.

    ``keep`` bounds the bytes kept from the start of the stream (what callers parse);
    ``log_lines`` bounds how many lines reach the logger, so a chatty build cannot flood
    the Prefect database. The tail is always kept, for error messages.
    """

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter,
        *,
        prefix: str,
        level: int,
        keep: int,
        log_lines: int = 20_000,
        tail: int = TAIL_BYTES,
    ) -> None:
        self._logger = logger
        self._prefix = prefix
        self._level = level
        self._keep = keep
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._tail_max = tail
        self._partial = b""
        self._lines_logged = 0
        self._log_lines = log_lines
        self.total = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._keep - len(self._head)
        if room > 0:
            self._head += data[:room]
        if len(data) > max(room, 0):
            self.truncated = True
        self._tail.append(data)
        self._tail_len += len(data)
        while self._tail_len - len(self._tail[0]) >= self._tail_max:
            self._tail_len -= len(self._tail.popleft())
        if self._logger.isEnabledFor(self._level):
            self._log_chunk(data)

    def _log_chunk(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > LOG_LINE_MAX * 4:  # a binary stream or one endless line
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        if self._lines_logged > self._log_lines:
            return
        self._lines_logged += 1
        if self._lines_logged > self._log_lines:
            self._logger.log(self._level, "%s[further output not logged]", self._prefix)
            return
        text = line.decode("utf-8", "replace").rstrip("\r")
        if len(text) > LOG_LINE_MAX:
            text = text[:LOG_LINE_MAX] + " [line cut]"
        self._logger.log(self._level, "%s%s", self._prefix, text)

    def close(self) -> None:
        if self._partial and self._logger.isEnabledFor(self._level):
            self._emit(self._partial)
        self._partial = b""

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    def tail_text(self) -> str:
        data = b"".join(self._tail)[-self._tail_max :]
        return data.decode("utf-8", "replace").rstrip("\n")
