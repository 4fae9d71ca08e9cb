"""Where everything of the lab lives, under one directory.

```
<root>/
  gnupg/            the lab's own GNUPGHOME (release and binpkg keys)
  mirror/           the tree `lab up` serves, shaped like a Gentoo mirror
    releases/ snapshots/ distfiles/ binpkgs/ kernels/ repos/gentoo/
  site/             the dom0's own parts, which no Gentoo mirror has
    packages/ patchfiles/ profiles/ meta/
  cache/            slow inputs kept between builds (stage3 roots, downloads)
  run/              what `lab up` started: one directory per service (pid, log, config)
  state.json        ports, pids and URLs of the running services
  .g2d-step-*.json  one stamp per build step: its input key and what it wrote
  .g2d-step-*.info.pickle  what the step's builder returned, for the steps after it
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # g2d.settings loads pydantic; `g2d --help` should not wait for it
    from g2d.settings import Settings

STAMP_PREFIX = ".g2d-step-"


@dataclass(frozen=True)
class LabLayout:
    """Paths of one lab; nothing here touches the disk except `create()`."""

    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_absolute():
            raise ValueError(f"the lab directory must be absolute, got {os.fspath(self.root)!r}")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LabLayout:
        from g2d.settings import load_settings

        return cls((settings or load_settings()).lab_dir)

    # keys
    @property
    def gnupg(self) -> Path:
        return self.root / "gnupg"

    # the served tree
    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def releases(self) -> Path:
        return self.mirror / "releases"

    @property
    def snapshots(self) -> Path:
        return self.mirror / "snapshots"

    @property
    def distfiles(self) -> Path:
        return self.mirror / "distfiles"

    @property
    def binpkgs(self) -> Path:
        return self.mirror / "binpkgs"

    @property
    def kernels(self) -> Path:
        return self.mirror / "kernels"

    @property
    def repos(self) -> Path:
        return self.mirror / "repos"

    @property
    def gentoo_repo(self) -> Path:
        return self.repos / "gentoo"

    # the dom0's site parts
    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def packages(self) -> Path:
        return self.site / "packages"

    @property
    def patchfiles(self) -> Path:
        return self.site / "patchfiles"

    @property
    def profiles(self) -> Path:
        return self.site / "profiles"

    @property
    def meta(self) -> Path:
        return self.site / "meta"

    # working areas
    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def service_dir(self, name: str) -> Path:
        return self.run / name

    def stamp(self, step: str) -> Path:
        return self.root / f"{STAMP_PREFIX}{step}.json"

    def step_info(self, step: str) -> Path:
        """The builder's result, pickled, for the steps after it in a later build."""
        return self.root / f"{STAMP_PREFIX}{step}.info.pickle"

    def stamps(self) -> list[Path]:
        return sorted(self.root.glob(f"{STAMP_PREFIX}*.json"))

    def relative(self, path: Path) -> str:
        """`path` as it is named in stamps and findings: relative to the lab root."""
        return os.fspath(path.relative_to(self.root))

    def create(self) -> None:
        """Make the top-level directories (the steps fill them)."""
        for path in (self.mirror, self.repos, self.site, self.cache, self.run):
            path.mkdir(parents=True, exist_ok=True)
