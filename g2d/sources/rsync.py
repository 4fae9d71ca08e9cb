"""rsync for trees: the options Portage's own rsync sync uses, and its timestamp protocol.

``fetch_timestamp`` reads a mirror's ``metadata/timestamp.chk`` with one small rsync, as
``emerge --sync`` does before anything else. ``rsync_tree`` copies a tree into a directory,
optionally hard-linking unchanged files to an existing copy (``--link-dest``), and reports
what ``--stats`` counted. URLs: ``rsync://host[:port]/module/path``, ``file:///path``, and
``ssh://user@host[:port]/path`` through a pinned ``SshHost``.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from g2d.core.errors import CommandFailed
from g2d.core.mirrors import parse_timestamp_chk
from g2d.hosts.local import LocalHost
from g2d.hosts.ssh import SshHost
from g2d.sources.errors import NoTransport, TransferError

IO_TIMEOUT = 180  # Portage's --timeout: seconds without any I/O before rsync gives up
CONNECT_TIMEOUT = 15  # Portage's PORTAGE_RSYNC_INITIAL_TIMEOUT, as rsync's own --contimeout
TIMESTAMP_FILE = "metadata/timestamp.chk"
# Top-level directories a mirror never sends and a sync never deletes (Portage forces these).
LOCAL_ONLY = ("distfiles", "local", "packages", ".git")

# rsync's exit codes that mean the bytes did not arrive (worth another try or mirror).
_RSYNC_EXITS = {
    5: "could not start the rsync protocol (is it an rsync server?)",
    10: "connection failed",
    12: "the data stream broke off",
    23: "some files could not be transferred",
    24: "files vanished on the mirror during the transfer",
    30: "timed out",
    35: "timed out waiting for the daemon",
}


def portage_options(url: str, io_timeout: int = IO_TIMEOUT) -> list[str]:
    """make.globals' PORTAGE_RSYNC_OPTS with what Portage adds, but exact numbers instead of
    --human-readable, so ``--stats`` can be read."""
    remote = urlsplit(url).scheme in ("rsync", "ssh")
    return [
        "--recursive",
        "--links",
        "--safe-links",                 # drop symlinks that point outside the tree
        "--perms",
        "--times",
        "--omit-dir-times",
        *(["--compress"] if remote else []),  # Portage forces it for rsync://
        "--force",                      # a directory replaced by a file, or the reverse
        "--whole-file",                 # no delta algorithm: small files, fast links
        "--delete",
        "--stats",
        "--no-human-readable",
        f"--timeout={io_timeout}",
        *(f"--exclude=/{name}" for name in LOCAL_ONLY),
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class RsyncStats:
    """What rsync's ``--stats`` counted for one run."""

    files: int  # regular files transferred
    deleted: int
    transferred_size: int  # bytes of those files
    bytes_received: int  # on the wire, after compression
    bytes_sent: int
    total_files: int  # files in the tree
    total_size: int

    @classmethod
    def parse(cls, text: str) -> RsyncStats:
        def number(label: str) -> int:
            found = re.search(rf"^{re.escape(label)}: ([\d,.]+)", text, re.MULTILINE)
            return int(found[1].replace(",", "").replace(".", "")) if found else 0

        return cls(
            files=number("Number of regular files transferred"),
            deleted=number("Number of deleted files"),
            transferred_size=number("Total transferred file size"),
            bytes_received=number("Total bytes received"),
            bytes_sent=number("Total bytes sent"),
            total_files=number("Number of files"),
            total_size=number("Total file size"),
        )


@dataclass(frozen=True)
class RsyncSource:
    """A URL as rsync's source argument, with the options its transport needs."""

    url: str
    arg: str
    options: tuple[str, ...]

    @classmethod
    def of(cls, url: str, ssh: SshHost | None = None) -> RsyncSource:
        parts = urlsplit(url)
        if parts.scheme == "rsync":
            return cls(url, url, (f"--contimeout={CONNECT_TIMEOUT}", "--no-motd"))
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise NoTransport(url, "a file:// URL names no other host; use ssh:// for that")
            return cls(url, unquote(parts.path), ())
        if parts.scheme == "ssh":
            if ssh is None or ssh.host != parts.hostname or ssh.port != (parts.port or 22):
                raise NoTransport(
                    url,
                    "no pinned ssh host for it",
                    hint="pass the SshHost (with its host key) of that host and port",
                )
            # ssh_options() pins the host key; rsync splits --rsh itself, honouring quotes
            rsh = shlex.join([*ssh.ssh_options()[:-2], "-l", parts.username or ssh.user])
            return cls(url, f"{parts.hostname}:{unquote(parts.path)}", (f"--rsh={rsh}",))
        raise NoTransport(url, f"rsync cannot fetch {parts.scheme or 'a plain path'!r} URLs")

    def under(self, relative: str) -> str:
        return self.arg.rstrip("/") + "/" + relative


def run_rsync(argv: Sequence[str], url: str, *, timeout: float | None) -> str:
    """Run rsync; its stdout. A transfer failure becomes a ``TransferError`` naming ``url``."""
    try:
        return LocalHost().run(["rsync", *argv], timeout=timeout).stdout
    except CommandFailed as e:
        why = _RSYNC_EXITS.get(e.code, e.describe_exit().replace("exited with", "rsync exit"))
        tail = e.tail.strip().splitlines()
        detail = f" ({tail[0].removeprefix('rsync: ')})" if tail else ""
        raise TransferError(url, f"{why}{detail}") from e


def fetch_timestamp(
    url: str, *, ssh: SshHost | None = None, timeout: float | None = 60.0
) -> datetime:
    """The time in the mirror tree's ``metadata/timestamp.chk``, fetched with rsync alone."""
    source = RsyncSource.of(url, ssh)
    with tempfile.TemporaryDirectory(prefix="g2d-timestamp-") as tmp:
        local = Path(tmp, "timestamp.chk")
        argv = [*source.options, "--times", f"--timeout={IO_TIMEOUT}", "--inplace",
                source.under(TIMESTAMP_FILE), os.fspath(local)]  # fmt: skip
        run_rsync(argv, url, timeout=timeout)
        text = local.read_text(errors="replace")
    return parse_timestamp_chk(text, url.rstrip("/") + "/" + TIMESTAMP_FILE)


def rsync_tree(
    url: str,
    dest: Path,
    *,
    link_dest: Path | None = None,
    ssh: SshHost | None = None,
    extra: Sequence[str] = (),
    timeout: float | None = None,
) -> RsyncStats:
    """Make ``dest`` a copy of the tree at ``url`` (Portage's options). With ``link_dest``,
    files equal to those there become hard links to them, so only changes cost space."""
    source = RsyncSource.of(url, ssh)
    dest.mkdir(parents=True, exist_ok=True)
    argv = [
        *portage_options(url),
        *source.options,
        *([f"--link-dest={link_dest.absolute()}"] if link_dest else []),
        *extra,
        source.arg.rstrip("/") + "/",
        os.fspath(dest) + "/",
    ]
    return RsyncStats.parse(run_rsync(argv, url, timeout=timeout))
