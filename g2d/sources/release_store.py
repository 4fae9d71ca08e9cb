"""The dom0's own ``releases/<arch>/autobuilds/`` tree: builds, the current link, retention.

```
releases/<arch>/autobuilds/
  <stamp>/stage3-<arch>-<variant>-<stamp>.tar.xz{,.DIGESTS,.asc}
  current-stage3-<arch>-<variant> -> <stamp>        a symlink, swapped atomically
  latest-stage3-<arch>-<variant>.txt                the signed pointer file, as fetched
  .g2d-stage3-<arch>-<variant>.lock                 one fetch of a variant at a time
```

A build counts once its tarball has its final name: the fetch renames it into place last,
after its sidecars, and only when everything verified.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from g2d.core.release_files import EXTENSIONS, STAMP, stage3_flavour

SIDECARS = (".DIGESTS", ".asc")


@dataclass(frozen=True)
class ReleaseStore:
    releases: Path  # the dom0's releases/ directory
    arch: str
    variant: str

    @property
    def autobuilds(self) -> Path:
        return self.releases / self.arch / "autobuilds"

    @property
    def flavour(self) -> str:
        return stage3_flavour(self.arch, self.variant)

    @property
    def current_link(self) -> Path:
        return self.autobuilds / f"current-{self.flavour}"

    @property
    def latest_file(self) -> Path:
        return self.autobuilds / f"latest-{self.flavour}.txt"

    def build_dir(self, stamp: str) -> Path:
        return self.autobuilds / stamp

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.autobuilds.mkdir(parents=True, exist_ok=True)
        with open(self.autobuilds / f".g2d-{self.flavour}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def tarball_of(self, stamp: str) -> Path | None:
        """The complete tarball of this variant in ``<stamp>/``, if there is one."""
        for ext in EXTENSIONS:
            path = self.build_dir(stamp) / f"{self.flavour}-{stamp}{ext}"
            if path.is_file() and all(_sidecar(path, s).is_file() for s in SIDECARS):
                return path
        return None

    def current_stamp(self) -> str | None:
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        return target if STAMP.fullmatch(target) else None

    def stamps(self) -> list[str]:
        """Stamps holding a complete build of this variant, oldest first."""
        if not self.autobuilds.is_dir():
            return []
        found = [d.name for d in self.autobuilds.iterdir() if STAMP.fullmatch(d.name)]
        return sorted(s for s in found if self.tarball_of(s) is not None)

    def point_current(self, stamp: str) -> None:
        """``current-<flavour>`` -> ``<stamp>``, replaced in one rename (never missing)."""
        tmp = self.autobuilds / f".current-{self.flavour}.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(stamp)
        os.replace(tmp, self.current_link)

    def write_latest(self, raw: bytes) -> None:
        tmp = self.latest_file.with_name(f".{self.latest_file.name}.new")
        tmp.write_bytes(raw)
        os.replace(tmp, self.latest_file)

    def prune(self, keep: int) -> list[Path]:
        """Delete this variant's builds beyond the ``keep`` newest (and never the current one);
        other variants in the same ``<stamp>/`` stay. Returns what was deleted."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        current = self.current_stamp()
        removed: list[Path] = []
        for stamp in self.stamps()[:-keep]:
            if stamp == current:
                continue
            directory = self.build_dir(stamp)
            for path in directory.glob(f"{self.flavour}-{stamp}.*"):
                path.unlink()
                removed.append(path)
            for path in directory.glob(f".{self.flavour}-{stamp}.*"):  # parts left by failures
                path.unlink()
            if not any(directory.iterdir()):
                directory.rmdir()
        return removed


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def install_file(src: Path, dest: Path) -> None:
    """Move a verified file to its final name in one rename."""
    if src.parent == dest.parent:
        os.replace(src, dest)
    else:
        tmp = dest.with_name(f".{dest.name}.new")
        shutil.move(src, tmp)
        os.replace(tmp, dest)
