"""A binhost's ``Packages`` index, read the way Portage reads it (``getbinpkg._readpkgindex``).

Blocks of ``KEY: value`` lines separated by blank lines; the first block is the header, each
later block with a ``CPV`` is one binary package. Portage drops exactly one character after
the colon. Each package names its file (``PATH``, relative to the binhost; without it
``<CPV>.tbz2``), its ``SIZE`` and, when the index was written by a build or
``emaint binhost --fix``, its ``MD5`` and ``SHA1``; g2d also reads ``BLAKE2B`` and
``SHA512`` when present. Paths are checked: nothing may leave the binhost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from g2d.core.errors import G2dUserError
from g2d.core.release_files import check_relative_path

# The digests a Packages entry may carry, with their hex length; hashlib names them lowercase.
INDEX_HASHES: Mapping[str, int] = {"MD5": 32, "SHA1": 40, "BLAKE2B": 128, "SHA512": 128}


class PackagesIndexError(G2dUserError):
    """A ``Packages`` index g2d cannot use; names the index and the entry."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason, hint="the binhost serves a damaged index; try another")
        self.source, self.reason = source, reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True, slots=True)
class BinpkgEntry:
    """One binary package of the index: where it is, its size and digests (upper-case names)."""

    cpv: str
    path: str
    size: int | None
    hashes: Mapping[str, str] = field(default_factory=dict)

    def new_hashers(self) -> dict[str, hashlib._Hash]:
        return {name: hashlib.new(name.lower()) for name in self.hashes}


@dataclass(frozen=True, slots=True)
class PackagesIndex:
    header: Mapping[str, str]
    entries: tuple[BinpkgEntry, ...]

    @property
    def timestamp(self) -> datetime | None:
        stamp = self.header.get("TIMESTAMP", "")
        return datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else None


def read_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line:
            if blocks[-1]:
                blocks.append({})
            continue
        key, colon, value = line.partition(":")
        if colon:
            blocks[-1][key] = value[1:]  # Portage drops exactly one separator character
    return [b for b in blocks if b]


def parse_packages(text: str, source: str = "Packages") -> PackagesIndex:
    """The header and the packages of an index; a bad path, size or digest is an error."""
    blocks = read_blocks(text)
    if not blocks or "VERSION" not in blocks[0]:
        raise PackagesIndexError(source, "has no header with a VERSION (not a Packages index)")
    header, entries = blocks[0], []
    seen: set[str] = set()
    for block in blocks[1:]:
        if "CPV" not in block:
            continue
        cpv = block["CPV"]
        path = check_relative_path(block.get("PATH") or f"{cpv}.tbz2", f"{source} ({cpv})")
        if path in seen:
            raise PackagesIndexError(source, f"{path} is listed twice")
        seen.add(path)
        size = block.get("SIZE")
        if size is not None and not size.isdigit():
            raise PackagesIndexError(source, f"{cpv}: SIZE {size!r} is not a number")
        hashes = {}
        for name, length in INDEX_HASHES.items():
            value = block.get(name, "").lower()
            if not value:
                continue
            if len(value) != length or any(c not in "0123456789abcdef" for c in value):
                raise PackagesIndexError(source, f"{cpv}: {name} {value!r} is not {length} hex")
            hashes[name] = value
        entries.append(BinpkgEntry(cpv, path, int(size) if size else None, hashes))
    count = header.get("PACKAGES")
    if count is not None and count != str(len(entries)):
        raise PackagesIndexError(source, f"PACKAGES says {count}, it lists {len(entries)}")
    return PackagesIndex(header, tuple(entries))
