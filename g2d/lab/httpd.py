"""A static http server for the lab, with single byte-range support (RFC 9110 section 14).

Run as a script by `g2d.lab.daemons.start_http_server`: it binds 127.0.0.1 on a port the
kernel picks, writes that port to `--port-file` (atomically) once it listens, and serves
until it is signalled. Standard library only, so it runs under `python -I`.
"""

from __future__ import annotations

import argparse
import os
import re
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single range, or None to ignore the header.

    A multi-range or malformed header is ignored (the whole file is sent, as RFC 9110
    allows); a well-formed range that selects no byte raises Unsatisfiable.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, size - 1 if last == "" else min(int(last), size - 1)


class _Slice:
    """`length` bytes of a file from its current offset; what copyfile() reads."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f = f
        self._left = length

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


class RangeRequestHandler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self):  # type: ignore[no-untyped-def]  # overrides an untyped stdlib method
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if header is None or not os.path.isfile(path):
            return super().send_head()
        f = open(path, "rb")  # noqa: SIM115  # closed by do_GET/do_HEAD through the slice
        try:
            st = os.fstat(f.fileno())
            span = parse_range(header, st.st_size)
            if span is None:
                f.close()
                return super().send_head()
            first, last = span
            f.seek(first)
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Range", f"bytes {first}-{last}/{st.st_size}")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
            self.end_headers()
            return _Slice(f, last - first + 1)
        except Unsatisfiable:
            f.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{st.st_size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        except BaseException:
            f.close()
            raise


class _MirrorServer(ThreadingHTTPServer):
    # a mirror takes many connections at once (distfiles fetched 8 at a time); the
    # default backlog of 5 overflowed and made a client wait a second to retry
    request_queue_size = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    handler = partial(RangeRequestHandler, directory=os.fspath(args.directory))
    with _MirrorServer((args.bind, 0), handler) as server:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(f"{server.server_address[1]}\n")
        tmp.rename(args.port_file)  # the parent sees the whole number or nothing
        server.serve_forever()


if __name__ == "__main__":
    main()
