"""The dom0's trees that emerge reads inside a target root, and how they are mounted there.

All are bound read-only: a deploy never writes into the shared binhost, mirror or
repositories (the old tool bound binpkgs read-write and let every chroot publish into it,
unlocked; research/g2deploy-spec.md §11.9). What emerge writes stays in the target:

- ``repos``: ``name -> dom0 path``, each at ``/var/db/repos/<name>`` (where the target's
  repos.conf locates it). Nothing in a repository is written by emerge; its metadata cache
  goes to the target's ``/var/cache/edb/dep``.
- ``binpkgs``: the dom0's PKGDIR (with its ``Packages`` index) at ``/var/cache/binpkgs``,
  and ``PKGDIR`` pointed there for the run. ``--usepkg`` takes binpkgs from it directly,
  with no download and no copy; ``--buildpkg=n`` keeps emerge from writing into it.
- ``distfiles``: the dom0's distfiles *mirror* (GLEP 75 ``layout.conf``, hashed
  subdirectories), at ``/var/cache/g2d/distfiles-mirror``, named in ``GENTOO_MIRRORS`` as
  a local mirror: Portage reads its layout.conf and copies a needed file into the target's
  own ``DISTDIR``. A mirror tree cannot serve as ``DISTDIR`` itself (that is flat).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from g2d.core.errors import G2dUserError
from g2d.hosts.chroot import Bind

REPOS_IN_ROOT = "/var/db/repos"
PKGDIR_IN_ROOT = "/var/cache/binpkgs"
DISTFILES_MIRROR_IN_ROOT = "/var/cache/g2d/distfiles-mirror"
_REPO_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9+_-]*$")  # PMS 3.1.5


class SourcesInvalid(G2dUserError):
    """A dom0 tree given to emerge is missing or named wrongly."""


@dataclass(frozen=True)
class PortageSources:
    """Where the dom0 keeps what a target's emerge reads (paths on the Chroot's parent)."""

    repos: Mapping[str, Path]
    binpkgs: Path | None = None
    distfiles: Path | None = None

    def __post_init__(self) -> None:
        repos = {name: Path(path) for name, path in self.repos.items()}
        if not repos:
            raise SourcesInvalid("no ebuild repository given", hint="name at least 'gentoo'")
        for name, path in repos.items():
            if not _REPO_NAME.match(name):
                raise SourcesInvalid(f"{name!r} is not a repository name")
            if not path.is_absolute():
                raise SourcesInvalid(f"repository {name}: {os.fspath(path)!r} is not absolute")
        for what, path in (("binpkgs", self.binpkgs), ("distfiles", self.distfiles)):
            if path is not None and not Path(path).is_absolute():
                raise SourcesInvalid(f"{what}: {os.fspath(path)!r} is not absolute")
        object.__setattr__(self, "repos", MappingProxyType(repos))

    def binds(self) -> list[Bind]:
        """Read-only binds of every tree, for ``Chroot(root, binds=...)``."""
        found = [
            Bind(path, f"{REPOS_IN_ROOT}/{name}", readonly=True)
            for name, path in sorted(self.repos.items())
        ]
        if self.binpkgs is not None:
            found.append(Bind(self.binpkgs, PKGDIR_IN_ROOT, readonly=True))
        if self.distfiles is not None:
            found.append(Bind(self.distfiles, DISTFILES_MIRROR_IN_ROOT, readonly=True))
        return found

    def env(self) -> dict[str, str]:
        """What emerge's environment needs so that it finds the trees where they are bound."""
        env = {}
        if self.binpkgs is not None:
            env["PKGDIR"] = PKGDIR_IN_ROOT
        if self.distfiles is not None:
            # a path (not a URL) in GENTOO_MIRRORS is a local mirror Portage copies from
            env["GENTOO_MIRRORS"] = DISTFILES_MIRROR_IN_ROOT
        return env
