"""What can be wrong with an esync before any byte moves: a part name, a part without
mirrors, release keys that are not there, distfiles asked for before the repository."""

from __future__ import annotations

import os
from pathlib import Path

from g2d.core.errors import G2dUserError

PARTS = (
    "releases, repos, snapshots, distfiles, binpkgs, kernels, packages, patchfiles, profiles, meta"
)


class UnknownPart(G2dUserError):
    def __init__(self, name: str) -> None:
        super().__init__(name, hint=f"parts: {PARTS}")
        self.name = name

    def __str__(self) -> str:
        return f"{self.name!r} is not a part of the dom0 tree"


class NoMirrorsFor(G2dUserError):
    def __init__(self, part: str) -> None:
        hint = (
            "set [esync] profiles in g2d.toml, or G2D_ESYNC__PROFILES"
            if part == "profiles"
            else f"set [mirrors] {part} in g2d.toml, or G2D_MIRRORS__{part.upper()}"
        )
        super().__init__(part, hint=hint)
        self.part = part

    def __str__(self) -> str:
        return f"no mirror is configured for {self.part}"


class MissingReleaseKeys(G2dUserError):
    def __init__(self, missing: tuple[str, ...]) -> None:
        hint = ("install Gentoo's release keys (sec-keys/openpgp-keys-gentoo-release), "
                "or set [esync] release_keys / G2D_ESYNC__RELEASE_KEYS")  # fmt: skip
        super().__init__(missing, hint=hint)
        self.missing = missing

    def __str__(self) -> str:
        if not self.missing:
            return "no release key is configured to verify releases, snapshots and Manifests"
        return f"release key file(s) not found: {', '.join(self.missing)}"


class NoRepository(G2dUserError):
    def __init__(self, tree: Path) -> None:
        super().__init__(os.fspath(tree), hint="sync the repos part first (g2d esync --parts "
                         "repos,distfiles)")  # fmt: skip
        self.tree = tree

    def __str__(self) -> str:
        return f"{os.fspath(self.tree)}: no synced repository names the distfiles to fetch"
