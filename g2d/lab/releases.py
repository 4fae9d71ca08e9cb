"""Stage3 release media in the layout and formats of a Gentoo mirror's ``releases/``.

``pack_stage3`` writes one build: ``releases/<arch>/autobuilds/<stamp>/stage3-...tar.xz``
with ``.CONTENTS.gz``, ``.DIGESTS`` (BLAKE2B and SHA512 of the tarball and of the
CONTENTS.gz, clear-signed in place as the mirrors have had it since 2022), ``.sha256``
(clear-signed too) and ``.asc`` (detached). ``publish_latest`` then writes, for every variant
found, the clear-signed ``latest-stage3-<arch>-<variant>.txt``, the ``current-<variant>/``
directory of links, and the aggregate ``latest-stage3.txt``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path

from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.lab.keys import LabKeys
from g2d.lab.lab_names import Stamp, Variant
from g2d.lab.lab_tar import create_argv
from g2d.lab.stage3 import Stage3Root

DIGEST_ALGOS = ("blake2b", "sha512")  # catalyst's default `digests`
XZ_PRESET = 1  # -6 (xz's default) costs 95 s per stage3 on 2 cores, -1 costs 18 s
_BUILD = re.compile(r"^(?P<variant>stage3-.+)-(?P<stamp>20[0-9]{6}T[0-9]{6}Z)\.tar\.xz$")


@dataclass(frozen=True)
class Stage3Release:
    """One packed build and its sidecar files, all in ``directory``."""

    variant: Variant
    stamp: Stamp
    directory: Path  # releases/<arch>/autobuilds/<stamp>
    tarball: Path
    size: int

    def sidecar(self, suffix: str) -> Path:
        return self.tarball.with_name(self.tarball.name + suffix)

    @property
    def files(self) -> tuple[Path, ...]:
        extras = (".CONTENTS.gz", ".DIGESTS", ".sha256", ".asc")
        return (self.tarball, *(self.sidecar(s) for s in extras))


def autobuilds_dir(releases: Path, arch: str = "amd64") -> Path:
    return releases / arch / "autobuilds"


def stage3_basename(variant: Variant, stamp: Stamp, arch: str = "amd64") -> str:
    return f"stage3-{arch}-{variant}-{stamp}.tar.xz"


def hash_file(path: Path, algos: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of one file for several algorithms, in one read."""
    hashes = {algo: hashlib.new(algo) for algo in algos}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


def digests_text(files: list[Path], algos: tuple[str, ...]) -> str:
    """What catalyst writes: per file, per algorithm, ``# ALGO HASH`` then ``hex  name``."""
    lines = []
    for path in files:
        digests = hash_file(path, algos)
        for algo in algos:
            lines += [f"# {algo.upper()} HASH", f"{digests[algo]}  {path.name}"]
    return "\n".join(lines) + "\n"


def _clearsigned(keys: LabKeys, payload: str, dst: Path) -> None:
    with tempfile.NamedTemporaryFile("w", dir=dst.parent, prefix=".payload-") as tmp:
        tmp.write(payload)
        tmp.flush()
        keys.clearsign(Path(tmp.name), dst)


def _write_contents(tarball: Path, dst: Path, mtime: int) -> None:
    """The verbose listing catalyst gzips beside every stage (dates in UTC)."""
    listing = LocalHost().run(["tar", "--xattrs", "-tvJf", tarball], env={"TZ": "UTC"}).out
    with open(dst, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=mtime) as gz:
        gz.write(listing)


def pack_stage3(
    stage: Stage3Root,
    releases: Path,
    keys: LabKeys,
    *,
    arch: str = "amd64",
    xz_preset: int = XZ_PRESET,
) -> Stage3Release:
    """Pack ``stage`` into ``releases`` as one autobuild, with every sidecar, signed."""
    directory = autobuilds_dir(releases, arch) / str(stage.stamp)
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / stage3_basename(stage.variant, stage.stamp, arch)
    partial = tarball.with_name(f".{tarball.name}.partial")
    host = LocalHost()
    run_pipeline(
        [
            Stage.of(host, create_argv(stage.root, mtime=stage.stamp.epoch)),
            Stage.of(host, ["xz", "-T0", f"-{xz_preset}", "--stdout"]),
        ],
        stdout=partial,
    )
    os.replace(partial, tarball)
    release = Stage3Release(stage.variant, stage.stamp, directory, tarball, tarball.stat().st_size)
    contents = release.sidecar(".CONTENTS.gz")
    _write_contents(tarball, contents, stage.stamp.epoch)
    _clearsigned(keys, digests_text([tarball, contents], DIGEST_ALGOS), release.sidecar(".DIGESTS"))
    _clearsigned(keys, digests_text([tarball], ("sha256",)), release.sidecar(".sha256"))
    keys.detach_sign(tarball, release.sidecar(".asc"))
    return release


def latest_text(stamp: Stamp, lines: list[str]) -> str:
    """A latest-*.txt payload: ``# Latest as of <date -uR>``, ``# ts=<epoch>``, then lines."""
    header = f"# Latest as of {format_datetime(stamp.datetime, usegmt=False)}\n# ts={stamp.epoch}\n"
    return header + "".join(f"{line}\n" for line in lines)


def _builds(autobuilds: Path) -> dict[str, list[tuple[Stamp, Path]]]:
    """Every tarball under ``<stamp>/`` by variant name (``stage3-amd64-openrc``)."""
    found: dict[str, list[tuple[Stamp, Path]]] = {}
    for path in sorted(autobuilds.glob("20*/stage3-*.tar.xz")):
        m = _BUILD.match(path.name)
        if m and m["stamp"] == path.parent.name:
            found.setdefault(m["variant"], []).append((Stamp(m["stamp"]), path))
    return found


def publish_latest(releases: Path, keys: LabKeys, *, arch: str = "amd64") -> list[Path]:
    """Write latest-*.txt (clear-signed) and current-*/ for the newest build of each variant."""
    autobuilds = autobuilds_dir(releases, arch)
    written: list[Path] = []
    aggregate: list[tuple[Stamp, str]] = []
    for name, builds in sorted(_builds(autobuilds).items()):
        stamp, tarball = max(builds)
        line = f"{stamp}/{tarball.name} {tarball.stat().st_size}"
        latest = autobuilds / f"latest-{name}.txt"
        _clearsigned(keys, latest_text(stamp, [line]), latest)
        written.append(latest)
        written += _current_dir(autobuilds / f"current-{name}", stamp, tarball, latest.name, line)
        if "hardened" not in name:  # as the mirror's aggregate leaves hardened out
            aggregate.append((stamp, line))
    if aggregate:
        newest = max(stamp for stamp, _ in aggregate)
        path = autobuilds / "latest-stage3.txt"
        _clearsigned(keys, latest_text(newest, [line for _, line in aggregate]), path)
        written.append(path)
    return written


def _current_dir(current: Path, stamp: Stamp, tarball: Path, latest: str, line: str) -> list[Path]:
    """``current-<variant>/``: a real directory of links into ``../<stamp>/``, and an
    unsigned copy of the latest file with the ``<stamp>/`` prefix removed."""
    current.mkdir(exist_ok=True)
    for old in current.iterdir():
        old.unlink()
    made = []
    for member in sorted(tarball.parent.glob(tarball.name + "*")):
        link = current / member.name
        link.symlink_to(f"../{stamp}/{member.name}")
        made.append(link)
    copy = current / latest
    copy.write_text(latest_text(stamp, [line.removeprefix(f"{stamp}/")]))
    return [*made, copy]
