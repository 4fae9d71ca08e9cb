"""A cpio archive in the "newc" format, the one the kernel unpacks as an initramfs.

Written here rather than by the cpio program so that the archive holds exactly the given
entries, owned by root, with mtime 0 (the same input gives the same bytes) and with device
nodes (``/dev/console``) that an unprivileged build could not create on disk.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class Entry:
    """One member: ``path`` without a leading slash, ``mode`` with its type bits."""

    path: str
    mode: int
    data: bytes = b""  # file contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    def __post_init__(self) -> None:
        if self.path.startswith("/") or not self.path or "\0" in self.path:
            raise ValueError(f"cpio member path {self.path!r} must be relative and non-empty")
        if stat.S_IFMT(self.mode) == 0:
            raise ValueError(f"cpio member {self.path!r}: mode {self.mode:o} has no type")

    @classmethod
    def directory(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644) -> Entry:
        return cls(path, stat.S_IFREG | perm, data)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def char_device(cls, path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return cls(path, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(
    ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int], name: bytes
) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = _MAGIC + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    return head + _pad(len(head))


def write_newc(entries: Iterable[Entry]) -> bytes:
    """The archive; parent directories must come before their members (the kernel creates
    each member where it stands and does not make missing parents)."""
    out = bytearray()
    seen: set[str] = set()
    for ino, entry in enumerate(entries, start=1):
        if entry.path in seen:
            raise ValueError(f"cpio member {entry.path!r} appears twice")
        parent = entry.path.rpartition("/")[0]
        if parent and parent not in seen:
            raise ValueError(f"cpio member {entry.path!r} comes before its directory {parent!r}")
        seen.add(entry.path)
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += _header(ino, entry.mode, nlink, len(entry.data), entry.rdev, entry.path.encode())
        out += entry.data + _pad(len(entry.data))
    out += _header(0, 0, 1, 0, (0, 0), _TRAILER.encode())
    return bytes(out)
