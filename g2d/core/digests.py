"""Checksums of release media: the ``.DIGESTS`` file catalyst writes, and one-pass hashing.

A ``.DIGESTS`` body (after its clear signature was verified; see ``g2d.sources.keyring``) is
blocks of ``# <ALGO> HASH`` followed by ``<hex>  <basename>`` (linux form) or
``<ALGO> (<basename>) = <hex>`` (bsd form). The order of the blocks is not fixed (catalyst
iterates a set), so entries are keyed by (file name, algorithm), never by position.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from g2d.core.errors import G2dUserError

ARMOR_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_HASH_HEADER = re.compile(r"#\s*(?P<algo>[A-Za-z0-9_-]+)\s+HASH\s*")
_LINUX_LINE = re.compile(r"(?P<hex>[0-9a-fA-F]+) [ *](?P<name>\S.*)")
_LOWER_HEX = re.compile(r"[0-9a-f]*")
_BSD_LINE = re.compile(r"(?P<algo>[A-Za-z0-9_-]+) \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]+)")


class Algo(enum.StrEnum):
    """The algorithms g2d checks; catalyst's default pair. Older ones are read and ignored."""

    blake2b = "BLAKE2B"
    sha512 = "SHA512"

    @property
    def hex_length(self) -> int:
        return 128  # both are 512-bit digests

    def new(self) -> hashlib._Hash:
        return hashlib.new(self.name)


class DigestsFormatError(G2dUserError):
    """A ``.DIGESTS`` text that g2d cannot read; names the file and the line."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(source, line, reason, hint="the mirror's file is damaged; try another")
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class FileDigests:
    """The known digests of one file, lowercase hex by algorithm; at least one of them."""

    name: str
    hashes: Mapping[Algo, str] = field(default_factory=dict)
    size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", dict(self.hashes))  # a private copy
        for algo, hexdigest in self.hashes.items():
            if len(hexdigest) != algo.hex_length or not _is_lower_hex(hexdigest):
                raise ValueError(f"{algo} digest of {self.name!r} is not 128 lowercase hex")
        if self.size is not None and self.size < 0:
            raise ValueError(f"negative size for {self.name!r}")

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.hashes.items())), self.size))

    def mismatches(self, actual: Mapping[Algo, str]) -> list[Algo]:
        """The algorithms whose expected digest differs from ``actual`` (missing counts)."""
        return [algo for algo, want in self.hashes.items() if actual.get(algo) != want]


def _is_lower_hex(text: str) -> bool:
    return _LOWER_HEX.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Digests:
    """A parsed ``.DIGESTS``: file name -> its digests (only BLAKE2B and SHA512 are kept)."""

    files: Mapping[str, FileDigests]
    source: str = ".DIGESTS"

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.files)))

    def for_file(self, name: str) -> FileDigests:
        found = self.files.get(name)
        if found is None or not found.hashes:
            listed = ", ".join(sorted(self.files)) or "none"
            raise DigestsFormatError(
                self.source, 0, f"no BLAKE2B or SHA512 digest for {name!r} (listed: {listed})"
            )
        return found


def parse_digests(text: str, source: str = ".DIGESTS") -> Digests:
    """Read a ``.DIGESTS`` body. Armored text is refused: verify it first, parse gpg's output."""
    if text.lstrip().startswith(ARMOR_BEGIN):
        raise DigestsFormatError(
            source, 1, "is clear-signed; parse the text gpg verified, not the armored file"
        )
    pending: str | None = None  # the algorithm the last `# X HASH` line named
    found: dict[str, dict[Algo, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if header := _HASH_HEADER.fullmatch(line):
            pending = header["algo"].upper()
            continue
        if line.startswith("#"):
            continue
        algo_name, name, hexdigest = _digest_line(line, pending, source, number)
        pending = None
        algo = _known_algo(algo_name)
        if algo is None:
            continue  # MD5, SHA1, WHIRLPOOL, SHA256...: read, not checked
        hexdigest = hexdigest.lower()
        if len(hexdigest) != algo.hex_length:
            raise DigestsFormatError(
                source, number, f"{algo} digest of {name!r} has {len(hexdigest)} hex digits"
            )
        entry = found.setdefault(name, {})
        if entry.get(algo, hexdigest) != hexdigest:
            raise DigestsFormatError(source, number, f"two different {algo} digests for {name!r}")
        entry[algo] = hexdigest
    if not found:
        raise DigestsFormatError(source, 0, "holds no BLAKE2B or SHA512 digest")
    return Digests({n: FileDigests(n, h) for n, h in found.items()}, source)


def _digest_line(line: str, pending: str | None, source: str, number: int) -> tuple[str, str, str]:
    if bsd := _BSD_LINE.fullmatch(line):
        return bsd["algo"].upper(), bsd["name"], bsd["hex"]
    linux = _LINUX_LINE.fullmatch(line)
    if linux is None:
        raise DigestsFormatError(source, number, f"not a digest line: {line!r}")
    if pending is None:
        raise DigestsFormatError(source, number, "digest line without a '# <ALGO> HASH' above it")
    name = linux["name"]
    if "/" in name or name in (".", ".."):
        raise DigestsFormatError(source, number, f"file name {name!r} is not a base name")
    return pending, name, linux["hex"]


def _known_algo(name: str) -> Algo | None:
    try:
        return Algo(name)
    except ValueError:
        return None


class Hasher:
    """BLAKE2B and SHA512 (or the algorithms given) fed from one pass over the bytes."""

    def __init__(self, algos: Iterable[Algo] = (Algo.blake2b, Algo.sha512)) -> None:
        self._hashes = {algo: algo.new() for algo in algos}
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        for h in self._hashes.values():
            h.update(chunk)
        self.size += len(chunk)

    def hexdigests(self) -> dict[Algo, str]:
        return {algo: h.hexdigest() for algo, h in self._hashes.items()}

    def result(self, name: str) -> FileDigests:
        return FileDigests(name, self.hexdigests(), self.size)
