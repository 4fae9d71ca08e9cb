"""Extract a stage3 tarball into an empty root, as the handbook's ``tar xpf`` does, but safely.

Every member is checked before anything is written into the root (``core.tar_safety``), and
that check must read the whole archive. Decompressing twice (once to list, once to
extract) costs more than the handbook's single ``tar xpf``, so the archive is decompressed
once, with every core the format allows (``xz -T0``), into a scratch file that is listed
(tar seeks over the data: ~0.1 s for a stage3) and then extracted. The scratch file needs
the archive's uncompressed size, briefly; it goes where ``scratch`` says (default: the
system's temporary directory), never into the root.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.tar_safety import UnsafeArchive, check_members, parse_listing
from g2d.hosts.base import Host
from g2d.hosts.local import LocalHost

log = logging.getLogger(__name__)

TIMEOUT = 3600.0
# what the handbook's `tar xpf --xattrs-include='*.*' --numeric-owner` keeps, spelled out
EXTRACT_OPTIONS = (
    "--numeric-owner",  # the root's own uids, not the host's names for them
    "--preserve-permissions",
    "--same-owner",
    "--xattrs",
    "--xattrs-include=*.*",  # security.capability, security.selinux, user.pax.flags, ...
)
ACLS = "--acls"  # only where the root's file system stores POSIX ACLs (see _stores_acls)
_C_LOCALE = {"LC_ALL": "C"}  # names outside ASCII come out as octal escapes, one way only


class Compression(enum.StrEnum):
    none = enum.auto()
    xz = enum.auto()
    zstd = enum.auto()
    gzip = enum.auto()
    bzip2 = enum.auto()

    @classmethod
    def sniff(cls, head: bytes) -> Compression | None:
        """By the magic bytes, not the file name."""
        magics = {
            b"\xfd7zXZ\x00": cls.xz,
            b"\x28\xb5\x2f\xfd": cls.zstd,
            b"\x1f\x8b": cls.gzip,
            b"BZh": cls.bzip2,
        }
        for magic, kind in magics.items():
            if head.startswith(magic):
                return kind
        return cls.none if head[257:262] == b"ustar" else None

    def decompress_argv(self, path: Path) -> list[str]:
        """The fastest decompressor this host has for the format, writing to stdout."""
        if self is Compression.xz:  # multi-block archives (pixz, xz -T) decode in parallel
            return ["xz", "--decompress", "--stdout", "--threads=0", os.fspath(path)]
        if self is Compression.zstd:  # zstd decodes on one thread whatever -T says
            return ["zstd", "--decompress", "--stdout", "--quiet", os.fspath(path)]
        if self is Compression.gzip:  # pigz reads, inflates and checks on separate threads
            tool = "pigz" if shutil.which("pigz") else "gzip"
            return [tool, "--decompress", "--stdout", os.fspath(path)]
        if self is Compression.bzip2:
            tool = next((t for t in ("lbzip2", "pbzip2") if shutil.which(t)), "bzip2")
            return [tool, "--decompress", "--stdout", os.fspath(path)]
        raise ValueError("an uncompressed archive needs no decompressor")


class ExtractRefused(G2dUserError):
    """The archive or the root cannot be used; nothing was written into the root."""

    def __init__(self, what: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(what, reason, hint=hint)
        self.what = what
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass(frozen=True)
class Extracted:
    root: Path
    tarball: Path
    compression: Compression
    members: int
    seconds: float


def extract_stage3(
    tarball: Path,
    root: Path,
    *,
    scratch: Path | None = None,
    host: Host | None = None,
    timeout: float = TIMEOUT,
) -> Extracted:
    """Unpack ``tarball`` into the empty directory ``root`` keeping owners, modes, xattrs,
    ACLs and device nodes; refuse (writing nothing) if any member would land outside it."""
    host = host or LocalHost()
    started = time.monotonic()
    _check_root(root)
    compression = _sniff(tarball)
    with _uncompressed(tarball, compression, scratch, host, timeout) as plain:
        listing = host.run(
            ["tar", "--list", "--verbose", "--absolute-names", "--quoting-style=c",
             "--numeric-owner", f"--file={os.fspath(plain)}"],
            env=_C_LOCALE, timeout=timeout,
        )  # fmt: skip
        members = parse_listing(tarball.name, listing.stdout)
        refused = check_members(members)
        if refused:
            raise UnsafeArchive(os.fspath(tarball), refused)
        if not members:
            raise ExtractRefused(os.fspath(tarball), "the archive has no members")
        acls = [ACLS] if _stores_acls(root, host) else []
        host.run(
            ["tar", "--extract", f"--file={os.fspath(plain)}",
             f"--directory={os.fspath(root)}", *EXTRACT_OPTIONS, *acls],
            env=_C_LOCALE, timeout=timeout,
        )  # fmt: skip
    return Extracted(root, tarball, compression, len(members), time.monotonic() - started)


def _check_root(root: Path) -> None:
    if root.is_symlink() or not root.is_dir():
        raise ExtractRefused(os.fspath(root), "is not a directory", hint="create the target first")
    with os.scandir(root) as entries:
        found = sorted(e.name for e in entries)
    if found:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise ExtractRefused(
            os.fspath(root),
            f"is not empty ({shown})",
            hint="a stage3 goes into a new, empty generation",
        )


def _sniff(tarball: Path) -> Compression:
    try:
        with open(tarball, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ExtractRefused(os.fspath(tarball), f"cannot be read: {e.strerror}") from None
    found = Compression.sniff(head)
    if found is None:
        raise ExtractRefused(
            os.fspath(tarball), "is not a tar archive (nor xz, zstd, gzip or bzip2 of one)"
        )
    return found


def _stores_acls(root: Path, host: Host) -> bool:
    """Whether `root`'s file system takes a POSIX ACL. Where it cannot (zfs-fuse), tar
    --acls warns once per member: thousands of lines for a stage3, and nothing kept."""
    probe = os.fspath(root / ".g2d-acl-probe")
    host.run(["touch", probe])
    try:
        stored = host.run(["setfacl", "-m", "u:0:r", probe], check=False).ok
    finally:
        host.run(["rm", "-f", probe])
    if not stored:
        log.warning("%s stores no POSIX ACLs: extracting without them", root)
    return stored


@contextlib.contextmanager
def _uncompressed(tarball: Path, compression: Compression, scratch: Path | None, host: Host,
                  timeout: float):  # fmt: skip
    if compression is Compression.none:
        yield tarball
        return
    fd, name = tempfile.mkstemp(prefix=".g2d-stage3-", suffix=".tar", dir=scratch)
    try:
        host.run(compression.decompress_argv(tarball), stdout=fd, timeout=timeout)
        yield Path(name)
    finally:
        os.close(fd)
        os.unlink(name)
