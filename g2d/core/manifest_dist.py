"""The ``DIST`` entries of a package ``Manifest``: the distfiles an ebuild repository names.

``DIST <name> <size> <HASH> <hex> [<HASH> <hex> ...]`` (GLEP 74); BLAKE2B and SHA512 are
kept (the pair Gentoo writes), any other hash is read and ignored. The same distfile named by
several packages must carry the same size and digests.
"""

from __future__ import annotations

from collections.abc import Iterable

from g2d.core.digests import Algo, FileDigests
from g2d.core.errors import G2dUserError


class ManifestDistError(G2dUserError):
    """A DIST line that g2d cannot use."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(source, line, reason)
        self.source, self.line, self.reason = source, line, reason

    def __str__(self) -> str:
        return f"{self.source} line {self.line}: {self.reason}"


def parse_dist_lines(text: str, source: str = "Manifest") -> list[FileDigests]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0] != "DIST":
            continue
        if len(words) < 3 or len(words) % 2 == 0 or not words[2].isdigit():
            raise ManifestDistError(source, number, f"not a DIST entry: {line.strip()!r}")
        name = words[1]
        if "/" in name or name in (".", ".."):
            raise ManifestDistError(source, number, f"distfile name {name!r} is not a base name")
        hashes = {}
        for algo_name, hexdigest in zip(words[3::2], words[4::2], strict=True):
            if algo_name in Algo.__members__.values():
                hashes[Algo(algo_name)] = hexdigest.lower()
        try:
            found.append(FileDigests(name, hashes, int(words[2])))
        except ValueError as e:
            raise ManifestDistError(source, number, str(e)) from None
    return found


class DistConflict(G2dUserError):
    """Two Manifests name the same distfile with different sizes or digests."""

    def __init__(self, name: str, first: str, second: str) -> None:
        super().__init__(name, first, second)
        self.name, self.first, self.second = name, first, second

    def __str__(self) -> str:
        return f"distfile {self.name!r}: {self.first} and {self.second} give different digests"


def merge_dist(named: Iterable[tuple[str, FileDigests]]) -> list[FileDigests]:
    """One entry per distfile, sorted by name, from (manifest, entry) pairs."""
    by_name: dict[str, tuple[str, FileDigests]] = {}
    for source, entry in named:
        have = by_name.setdefault(entry.name, (source, entry))
        if have[1] != entry:
            raise DistConflict(entry.name, have[0], source)
    return [entry for _, (_, entry) in sorted(by_name.items())]
