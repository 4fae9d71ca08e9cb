"""Check every atom of a profile's package sets against the repositories, before any build.

Atoms are parsed by Portage itself (``portage.dep.Atom``, the PyPI package), so the syntax
accepted is exactly what emerge accepts. The repository is read as a tree: a package
exists when ``<repo>/<category>/<package>/`` holds an ebuild, and a versioned atom must
match one of those ebuilds (``portage.dep.match_from_list``). That reads only the
directories the atoms name: no Portage configuration, no metadata cache. Slots and USE
dependencies in atoms are checked for syntax only (their values live in ebuild metadata).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.package_sets import SetLine

# sets emerge knows without a sets.conf; others must be files in a repository's sets/
BUILTIN_SETS = frozenset({"world", "system", "selected", "profile", "installed", "security"})


@dataclass(frozen=True, slots=True)
class BadAtom:
    source: str  # packages/<file>:<line>
    atom: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.atom}: {self.reason}"


class UnknownAtoms(G2dUserError):
    """The package sets name atoms the repositories do not have; all of them, at once."""

    def __init__(self, repos: Sequence[str], bad: Sequence[BadAtom]) -> None:
        super().__init__(
            tuple(repos), tuple(bad), hint="fix the package sets, or sync the repository"
        )
        self.repos = tuple(repos)
        self.bad = tuple(bad)

    def __str__(self) -> str:
        rows = "".join(f"\n  {b}" for b in self.bad)
        n = len(self.bad)
        what = "atom" if n == 1 else "atoms"
        return f"{n} unknown {what} (repositories: {', '.join(self.repos)}):{rows}"


def check_atoms(lines: Iterable[SetLine], repos: Sequence[Path]) -> int:
    """Raise UnknownAtoms naming every line whose atom no repository has; else the count."""
    from portage.dep import Atom  # imported here: Portage takes ~0.2 s to import
    from portage.exception import InvalidAtom

    versions = _Versions(repos)
    bad: list[BadAtom] = []
    count = 0
    for line in lines:
        word = line.first_word()
        if not word:
            continue
        count += 1
        if word.startswith("@"):
            if not versions.has_set(word[1:]):
                bad.append(BadAtom(line.source, word, "no such set"))
            continue
        try:
            atom = Atom(word, allow_wildcard=True, allow_repo=True)
        except InvalidAtom:
            bad.append(BadAtom(line.source, word, "not a valid atom"))
            continue
        reason = versions.problem(atom)
        if reason is not None:
            bad.append(BadAtom(line.source, word, reason))
    if bad:
        raise UnknownAtoms([os.fspath(r) for r in repos], bad)
    return count


class _Versions:
    """The ebuild versions of the packages asked about, read once each."""

    def __init__(self, repos: Sequence[Path]) -> None:
        self.repos = repos
        self._cpvs: dict[str, list[str]] = {}

    def cpvs(self, cp: str) -> list[str]:
        if cp not in self._cpvs:
            found: list[str] = []
            category, package = cp.split("/", 1)
            for repo in self.repos:
                directory = repo / category / package
                if directory.is_dir():
                    found += [
                        f"{category}/{p.name.removesuffix('.ebuild')}"
                        for p in directory.iterdir()
                        if p.name.endswith(".ebuild")
                    ]
            self._cpvs[cp] = sorted(set(found))
        return self._cpvs[cp]

    def has_set(self, name: str) -> bool:
        return name in BUILTIN_SETS or any((r / "sets" / name).is_file() for r in self.repos)

    def problem(self, atom: object) -> str | None:
        from portage.dep import match_from_list

        cp = atom.cp  # type: ignore[attr-defined]
        if "*" in cp:  # a wildcard (*/* in package.use) names no one package
            return None
        cpvs = self.cpvs(cp)
        if not cpvs:
            return "no such package"
        if atom.operator and not match_from_list(atom, cpvs):  # type: ignore[attr-defined]
            have = ", ".join(c.removeprefix(f"{cp}-") for c in cpvs)
            return f"no version matches (the repository has {have})"
        return None
