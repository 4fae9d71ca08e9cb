"""HTTP(S) GET over kept-alive connections: one TCP (and TLS) setup for many files of a mirror.

urllib opens a connection per request and asks the server to close it. Distfiles are
mostly small, so connecting would cost as much as the transfer; here a connection whose
response was read to its end goes back to an idle set (per scheme, host and port) and the
next request to that server, from any thread, takes it. A kept connection that the
server has closed meanwhile is replaced once by a new one (a GET may be sent again).
Redirects are followed like urllib does, to http(s) only. No proxy from the environment.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import weakref
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 10
MAX_IDLE = 16  # per server: more than the distfiles workers, fewer than a server's limit
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# a kept connection the server closed shows as one of these on the next request
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

Key = tuple[str, str, int]


class TooManyRedirects(http.client.HTTPException):
    pass


class PooledResponse:
    """The body of one response; ``close()`` gives the connection back when it was read to
    its end and the server keeps it open, else closes it."""

    def __init__(self, response: http.client.HTTPResponse, pool: HttpPool, key: Key,
                 conn: http.client.HTTPConnection, url: str) -> None:  # fmt: skip
        self.response = response
        self.url = url  # after redirects
        self._pool = pool
        self._key = key
        self._conn: http.client.HTTPConnection | None = conn

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def reason(self) -> str:
        return self.response.reason

    @property
    def headers(self) -> http.client.HTTPMessage:
        return self.response.headers

    def read(self, n: int = -1, /) -> bytes:
        return self.response.read(None if n < 0 else n)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.response.isclosed() and not self.response.will_close:
            self._pool.give_back(self._key, conn)
        else:
            self.response.close()
            conn.close()


class HttpPool:
    """``get(url, headers)`` -> ``PooledResponse``; idle connections closed by ``close()`` (or
    when the pool is garbage)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self.connections = 0  # opened so far: what a test or a benchmark can look at
        self._finalizer = weakref.finalize(self, _close_all, self._idle)

    def get(self, url: str, headers: Mapping[str, str]) -> PooledResponse:
        """GET ``url``; any status is returned (the caller judges it), redirects followed.
        Raises OSError or http.client.HTTPException when no answer came."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._get_once(url, headers)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECTS or not location:
                return answer
            answer.read()  # a short body: read to its end, so the connection can be kept
            answer.close()
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise TooManyRedirects(f"redirected to {url}, which is not http(s)")
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")

    def _get_once(self, url: str, headers: Mapping[str, str]) -> PooledResponse:
        parts = urlsplit(url)
        scheme = parts.scheme
        key = (scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._take(key)
        if conn is not None:
            try:
                return self._send(conn, key, target, headers, url)
            except _STALE:
                conn.close()  # closed by the server while idle: once more, on a new one
        return self._send(self._connect(key), key, target, headers, url)

    def _send(self, conn: http.client.HTTPConnection, key: Key, target: str,
              headers: Mapping[str, str], url: str) -> PooledResponse:  # fmt: skip
        try:
            conn.request("GET", target, headers=dict(headers))
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return PooledResponse(response, self, key, conn, url)

    def _take(self, key: Key) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _connect(self, key: Key) -> http.client.HTTPConnection:
        scheme, host, port = key
        with self._lock:
            self.connections += 1
        if scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context()
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._context
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def give_back(self, key: Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            _close_all(self._idle)


def _close_all(idle: dict[Key, list[http.client.HTTPConnection]]) -> None:
    for conns in idle.values():
        for conn in conns:
            conn.close()
    idle.clear()
