"""Daily snapshots of the lab repository, as a mirror's ``snapshots/`` holds them.

``snapshots/gentoo-YYYYMMDD.tar.xz`` (top directory ``gentoo-YYYYMMDD/``), its detached
signature ``.gpgsig`` and ``.md5sum`` (md5sum(1) output), and the ``gentoo-latest.tar.xz``
names pointing at the newest day, which emerge-webrsync and the Docker images fetch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.lab.keys import LabKeys
from g2d.lab.lab_tar import create_argv

SNAPSHOT_TIME = time(0, 45)  # Gentoo cuts the daily snapshot at 00:45 UTC
# what emerge-webrsync leaves out of a tree, and what a snapshot never carries
EXCLUDE = ("./.git", "./distfiles", "./packages", "./local")


class SnapshotFailed(G2dUserError):
    """A snapshot could not be made from the given repository."""


@dataclass(frozen=True)
class Snapshot:
    day: date
    tarball: Path
    gpgsig: Path
    md5sum: Path

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.tarball, self.gpgsig, self.md5sum)


def snapshot_name(day: date) -> str:
    return f"gentoo-{day:%Y%m%d}"


def repo_day(repo: Path) -> date:
    """The UTC day of the repository's ``metadata/timestamp.x``, which webrsync checks
    against the snapshot's date (it must lie within the two days after it)."""
    stamp = repo / "metadata" / "timestamp.x"
    try:
        unix = int(stamp.read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise SnapshotFailed(
            f"{stamp} is missing or does not start with a unix time",
            hint="pass day= explicitly, or build the repository with its timestamp files",
        ) from e
    return datetime.fromtimestamp(unix, UTC).date()


def _md5sum_line(path: Path, name: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"{digest.hexdigest()}  {name}\n"


def publish_snapshot(
    repo: Path, snapshots: Path, keys: LabKeys, *, day: date | None = None, xz_preset: int = 6
) -> Snapshot:
    """Write the dated snapshot of ``repo`` into ``snapshots`` and point -latest at the newest."""
    day = day or repo_day(repo)
    snapshots.mkdir(parents=True, exist_ok=True)
    name = snapshot_name(day)
    tarball = snapshots / f"{name}.tar.xz"
    partial = snapshots / f".{tarball.name}.partial"
    cut = int(datetime.combine(day, SNAPSHOT_TIME, UTC).timestamp())
    tar = create_argv(
        repo,
        mtime=cut,
        root_fs=False,
        transform=rf"s,^\.,{name},S",  # ./x -> gentoo-YYYYMMDD/x; link targets untouched
        exclude=EXCLUDE,
    )
    host = LocalHost()
    run_pipeline(
        [Stage.of(host, tar), Stage.of(host, ["xz", "-T0", f"-{xz_preset}", "--stdout"])],
        stdout=partial,
    )
    os.replace(partial, tarball)
    snap = Snapshot(day, tarball, _sidecar(tarball, ".gpgsig"), _sidecar(tarball, ".md5sum"))
    keys.detach_sign(tarball, snap.gpgsig)
    snap.md5sum.write_text(_md5sum_line(tarball, tarball.name))
    link_latest(snapshots)
    return snap


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def link_latest(snapshots: Path) -> Path | None:
    """``gentoo-latest.tar.xz`` (+ ``.gpgsig``) as links to the newest dated snapshot, and a
    ``.md5sum`` naming the latest file, as mirrors serve it. Returns the latest tarball."""
    dated = sorted(p for p in snapshots.glob("gentoo-2*.tar.xz") if p.name[7:15].isdigit())
    if not dated:
        return None
    newest = dated[-1]
    latest = snapshots / "gentoo-latest.tar.xz"
    for suffix in ("", ".gpgsig"):
        link = _sidecar(latest, suffix)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(newest.name + suffix)
    _sidecar(latest, ".md5sum").write_text(_md5sum_line(newest, latest.name))
    return latest
