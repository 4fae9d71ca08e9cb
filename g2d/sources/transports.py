"""Opening a URL at a byte offset: http(s) with Range (over kept-alive connections, see
``http_pool``), file://, and ssh:// over sshfs.

Each ``open`` answers where the stream really starts (a server may ignore Range and send
everything) and the whole size when known. Every failure to get bytes becomes a
``TransferError``; an ssh:// URL needs an ``SshHost`` with its pinned key for that
host, port and user, or it is refused (``NoTransport``), never trusted on first use.
"""

from __future__ import annotations

import http.client
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from g2d.hosts.ssh import SshHost
from g2d.sources.errors import HttpStatusError, NoTransport, TransferError
from g2d.sources.http_pool import HttpPool

USER_AGENT = "g2d (Gentoo dom0 sync)"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


@dataclass
class Opened:
    """A byte stream of ``url`` starting at ``offset``; ``total`` is the whole size if known."""

    url: str
    stream: Readable
    offset: int
    total: int | None

    def close(self) -> None:
        self.stream.close()


def transfer_exceptions() -> tuple[type[BaseException], ...]:
    """What a read from any transport raises when the bytes stop coming."""
    found: list[type[BaseException]] = [OSError, http.client.HTTPException, EOFError]
    try:
        import asyncssh

        found.append(asyncssh.Error)
    except ImportError:  # pragma: no cover - sshfs depends on it
        pass
    return tuple(found)


class Transports:
    """Opens http(s)://, file:// and ssh:// URLs; ssh only to the given pinned hosts."""

    def __init__(self, ssh_hosts: Iterable[SshHost] = (), *, timeout: float = 60.0) -> None:
        self.ssh_hosts = tuple(ssh_hosts)
        self.timeout = timeout
        # kept-alive connections; no proxy from the environment: mirrors are named, not
        # routed somewhere else
        self._http = HttpPool(timeout)

    def close(self) -> None:
        """Close the idle http connections (also done when the object is garbage)."""
        self._http.close()

    def __enter__(self) -> Transports:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, url: str, offset: int = 0) -> Opened:
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            return self._open_http(url, offset)
        if scheme == "file":
            return self._open_file(url, offset)
        if scheme == "ssh":
            return self._open_ssh(url, offset)
        raise NoTransport(url, f"cannot fetch {scheme or 'a plain path'!r} URLs", hint=_SCHEMES)

    def read_all(self, url: str, limit: int) -> bytes:
        """The whole (small) file: latest-*.txt, .DIGESTS, .asc, layout.conf."""
        opened = self.open(url)
        try:
            data = opened.stream.read(limit + 1)
        except transfer_exceptions() as e:
            raise TransferError(url, f"connection lost: {_describe(e)}") from e
        finally:
            opened.close()
        if len(data) > limit:
            raise TransferError(url, f"larger than the {limit} bytes such a file may have")
        if opened.total is not None and len(data) != opened.total:
            raise TransferError(url, f"truncated: got {len(data)} of {opened.total} bytes")
        return data

    def listdir(self, url: str) -> list[str]:
        """File names in the directory ``url`` (an http index page, a local or sftp directory)."""
        parts = urlsplit(url)
        try:
            if parts.scheme == "file":
                return sorted(os.listdir(_local_path(url)))
            if parts.scheme == "ssh":
                host, path = self._ssh(url)
                return sorted(
                    p.rsplit("/", 1)[-1] for p in host.filesystem().ls(path, detail=False)
                )
        except transfer_exceptions() as e:
            raise TransferError(url, f"cannot list: {_describe(e)}") from e
        page = self.read_all(url, 16 << 20).decode("utf-8", errors="replace")
        links = _Links()
        links.feed(page)
        return sorted(
            {unquote(h.split("?")[0].rstrip("/").rsplit("/", 1)[-1]) for h in links.hrefs}
        )

    # -- the three transports ----------------------------------------------------------------

    def _open_http(self, url: str, offset: int) -> Opened:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self._http.get(url, headers)
        except transfer_exceptions() as e:
            raise TransferError(url, f"cannot connect: {_describe(e)}") from e
        if response.status >= 400:
            response.close()
            if response.status == 416 and offset:  # the partial file is not a prefix of this one
                return self._open_http(url, 0)
            raise HttpStatusError(url, response.status, response.reason)
        length = response.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() else None
        if response.status == 206:
            found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if found is None or int(found[1]) != offset:
                response.close()  # not the range asked for: start again from the first byte
                return self._open_http(url, 0)
            total = int(found[3]) if found[3] != "*" else None
            return Opened(url, response, offset, total)
        return Opened(url, response, 0, size)

    def _open_file(self, url: str, offset: int) -> Opened:
        path = _local_path(url)
        try:
            f: BinaryIO = open(path, "rb")  # noqa: SIM115 - the caller closes it through Opened
        except OSError as e:
            raise TransferError(url, f"cannot open: {_describe(e)}") from e
        total = os.fstat(f.fileno()).st_size
        f.seek(min(offset, total))
        return Opened(url, f, min(offset, total), total)

    def _open_ssh(self, url: str, offset: int) -> Opened:
        host, path = self._ssh(url)
        try:
            fs = host.filesystem()
            total = int(fs.info(path)["size"])
            f = fs.open(path, "rb", block_size=1 << 20)
            f.seek(min(offset, total))
        except transfer_exceptions() as e:
            raise TransferError(url, f"cannot open: {_describe(e)}") from e
        return Opened(url, f, min(offset, total), total)

    def _ssh(self, url: str) -> tuple[SshHost, str]:
        parts = urlsplit(url)
        user, port = parts.username or "root", parts.port or 22
        for host in self.ssh_hosts:
            if (host.host, host.port, host.user) == (parts.hostname, port, user):
                return host, unquote(parts.path)
        raise NoTransport(
            url,
            f"no pinned ssh host for {user}@{parts.hostname}:{port}",
            hint="configure the host with its host key; g2d never trusts a key on first use",
        )


_SCHEMES = "g2d fetches http://, https://, file:// and ssh:// URLs (rsync trees elsewhere)"


def _local_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise NoTransport(url, "a file:// URL names no other host; use ssh:// for that")
    return unquote(parts.path)


def _describe(e: BaseException | str) -> str:
    if isinstance(e, str):
        return e
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def join_url(base: str, relative: str) -> str:
    """``base`` (a directory URL, with or without its last slash) + a checked relative path.

    urljoin would drop the base of an ssh:// URL (not a scheme it knows to be hierarchical)."""
    return base.rstrip("/") + "/" + relative
