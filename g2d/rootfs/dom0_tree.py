"""The parts of the dom0 tree a deploy or an update reads, by their place under one root.

```
<dom0>/releases/<arch>/autobuilds/current-stage3-<arch>-<variant>   the stage3 (g2d stage3)
<dom0>/repos/<name>/            ebuild repositories, bound read-only at /var/db/repos/<name>
<dom0>/binpkgs/                 the binhost (PKGDIR with Packages), bound read-only
<dom0>/distfiles/               the distfiles mirror (GLEP 75), bound read-only
<dom0>/kernels/current/<v>/     the kernel installed into every root
<dom0>/packages/                the site's package sets (common.*, <stem>.*)
<dom0>/patchfiles/              the site's overlay copied into every root
<dom0>/meta/users.toml          the site's users (optional: none added without it)
<dom0>/meta/keys/binpkg/*.asc   public keys that sign the binhost's binpkgs
```

The binpkg keys become the root's ``/etc/portage/gnupg``: only binpkgs signed by one of
them are merged. The users file holds hashes and ssh keys, never a password
(``core.site_users``). Nothing here writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.rootfs.portage_sources import PortageSources

USERS_FILE = "meta/users.toml"
BINPKG_KEYS_DIR = "meta/keys/binpkg"
MAIN_REPO = "gentoo"


class Dom0Incomplete(G2dUserError):
    """A part of the dom0 tree a deploy needs is missing."""


@dataclass(frozen=True)
class Dom0Tree:
    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_absolute():
            raise Dom0Incomplete(f"the dom0 root {os.fspath(self.root)!r} is not absolute")

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def repos_dir(self) -> Path:
        return self.root / "repos"

    @property
    def main_repo(self) -> Path:
        return self.repos_dir / MAIN_REPO

    @property
    def binpkgs(self) -> Path:
        return self.root / "binpkgs"

    @property
    def distfiles(self) -> Path:
        return self.root / "distfiles"

    @property
    def kernels(self) -> Path:
        return self.root / "kernels"

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    @property
    def patchfiles(self) -> Path:
        return self.root / "patchfiles"

    @property
    def users_file(self) -> Path:
        return self.root / USERS_FILE

    @property
    def binpkg_keys_dir(self) -> Path:
        return self.root / BINPKG_KEYS_DIR

    def repos(self) -> dict[str, Path]:
        """Every repository under repos/ (``gentoo`` must be one)."""
        found = {}
        if self.repos_dir.is_dir():
            found = {p.name: p for p in sorted(self.repos_dir.iterdir()) if p.is_dir()}
        if MAIN_REPO not in found:
            raise Dom0Incomplete(
                f"{self.main_repo} is missing", hint="sync it first: g2d esync parts=repos"
            )
        return found

    def binpkg_keys(self) -> list[Path]:
        keys = sorted(self.binpkg_keys_dir.glob("*.asc")) if self.binpkg_keys_dir.is_dir() else []
        if not keys:
            raise Dom0Incomplete(
                f"{self.binpkg_keys_dir} holds no public key (*.asc) for the binpkg signatures",
                hint="export the binhost's signing key there (gpg --armor --export KEY)",
            )
        return keys

    def sources(self) -> PortageSources:
        """What emerge in a root reads: repositories, binhost and distfiles, all read-only."""
        binpkgs = self.binpkgs if (self.binpkgs / "Packages").is_file() else None
        distfiles = self.distfiles if self.distfiles.is_dir() else None
        return PortageSources(repos=self.repos(), binpkgs=binpkgs, distfiles=distfiles)
