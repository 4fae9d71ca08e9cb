"""The ``latest-*.txt`` pointer files under ``releases/<arch>/autobuilds/``, and variants.

Payload (after the clear signature was verified by gpg, whose output is what is parsed)::

    # Latest as of Sun, 19 May 2024 17:48:03 +0000
    # ts=1716140883
    20240519T170104Z/stage3-amd64-openrc-20240519T170104Z.tar.xz 276384796

A per-variant file has one data line, the aggregate ``latest-stage3.txt`` one per variant.
A path must stay inside the mirror: relative, no ``..``, only the characters Gentoo's media
names use, and ``<stamp>/<file>`` for a stage3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from g2d.core.digests import ARMOR_BEGIN
from g2d.core.errors import G2dUserError

# releng's accepted build stamps: YYYYMMDD, YYYYMMDDhhmmss, YYYYMMDDThhmmssZ
STAMP = re.compile(r"20[0-9]{6}(?:[0-9]{6}|T[0-9]{6}Z)?")
ARCH = re.compile(r"[a-z0-9][a-z0-9_]*")
VARIANT = re.compile(r"[a-z0-9][a-z0-9+_]*(?:-[a-z0-9+_]+)*")
EXTENSIONS = (".tar.xz", ".tar.bz2", ".tar.gz", ".tar")
_PATH_CHARS = re.compile(r"[A-Za-z0-9._+-]+")
_TS = re.compile(r"#\s*ts=(?P<ts>[0-9]+)\s*")


class ReleaseFileError(G2dUserError):
    """A latest file g2d refuses; names the file, the line and what is wrong."""

    def __init__(self, source: str, line: int, reason: str, *, hint: str | None = None) -> None:
        super().__init__(source, line, reason, hint=hint or "try another mirror")
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


class UnsafePath(ReleaseFileError):
    """A latest file names a path outside the mirror (``../``, absolute, odd characters)."""


@dataclass(frozen=True, slots=True)
class LatestEntry:
    """One data line: a path relative to ``autobuilds/`` and the file's size in bytes."""

    path: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def directory(self) -> str:
        return self.path.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class LatestFile:
    source: str
    entries: tuple[LatestEntry, ...]
    ts: int | None  # the `# ts=` header, unix time of the generation


@dataclass(frozen=True, slots=True)
class Stage3Ref:
    """A stage3 a latest file points at: ``<stamp>/stage3-<arch>-<variant>-<stamp><ext>``."""

    arch: str
    variant: str
    stamp: str
    name: str
    size: int

    @property
    def path(self) -> str:
        return f"{self.stamp}/{self.name}"

    @property
    def flavour(self) -> str:
        """Gentoo's name for the variant (``stage3-amd64-openrc``), as in ``current-<it>``."""
        return stage3_flavour(self.arch, self.variant)


def stage3_flavour(arch: str, variant: str) -> str:
    check_arch_variant(arch, variant)
    return f"stage3-{arch}-{variant}"


def latest_name(arch: str, variant: str) -> str:
    """``latest-stage3-amd64-openrc.txt``: the per-variant pointer file's name."""
    return f"latest-{stage3_flavour(arch, variant)}.txt"


def check_arch_variant(arch: str, variant: str) -> None:
    if not ARCH.fullmatch(arch):
        raise ValueError(f"invalid arch {arch!r}: lowercase letters, digits and '_' only")
    if not VARIANT.fullmatch(variant):
        raise ValueError(f"invalid stage3 variant {variant!r} (openrc, systemd, desktop-openrc...)")


def check_relative_path(path: str, source: str = "path", line: int = 0) -> str:
    """``path`` if it names a file inside the mirror; else ``UnsafePath`` saying why."""
    if path.startswith("/"):
        raise UnsafePath(source, line, f"path {path!r} is absolute; it must stay inside the mirror")
    parts = path.split("/")
    if ".." in parts:
        raise UnsafePath(source, line, f"path {path!r} leaves the mirror (a '..' component)")
    for part in parts:
        if part in ("", ".") or not _PATH_CHARS.fullmatch(part):
            raise UnsafePath(
                source, line, f"path {path!r} has an empty, '.' or unexpected component {part!r}"
            )
    return path


def parse_latest(text: str, source: str = "latest-stage3.txt") -> LatestFile:
    """Read a latest file's payload. Armored text is refused: verify first, parse gpg's output."""
    if text.lstrip().startswith(ARMOR_BEGIN):
        raise ReleaseFileError(
            source, 1, "is clear-signed; parse the text gpg verified, not the armored file"
        )
    entries: list[LatestEntry] = []
    ts: int | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("- "):  # OpenPGP dash-escaping, if a payload kept it
            line = line[2:]
        if not line:
            continue
        if line.startswith("#"):
            if found := _TS.fullmatch(line):
                ts = int(found["ts"])
            continue
        words = line.split()
        if len(words) != 2 or not words[1].isdigit():
            raise ReleaseFileError(source, number, f"not '<path> <size>': {line!r}")
        path = check_relative_path(words[0], source, number)
        entries.append(LatestEntry(path, int(words[1])))
    if not entries:
        raise ReleaseFileError(source, 0, "names no file")
    return LatestFile(source, tuple(entries), ts)


def stage3_of(latest: LatestFile, arch: str, variant: str) -> Stage3Ref:
    """The entry for exactly ``stage3-<arch>-<variant>`` (``openrc`` is not ``desktop-openrc``)."""
    flavour = stage3_flavour(arch, variant)
    for number, entry in enumerate(latest.entries, 1):
        ref = _as_stage3(entry, flavour)
        if ref is None:
            continue
        stamp, name = ref
        if "/" in entry.directory or entry.directory != stamp:
            raise UnsafePath(
                latest.source,
                number,
                f"path {entry.path!r} is not '<stamp>/<file>' with the stamp of the file name",
            )
        return Stage3Ref(arch, variant, stamp, name, entry.size)
    listed = ", ".join(e.name for e in latest.entries)
    raise ReleaseFileError(
        latest.source,
        0,
        f"names no {flavour} build (it lists: {listed})",
        hint="check --arch and --variant against the mirror's latest-stage3-*.txt files",
    )


def _as_stage3(entry: LatestEntry, flavour: str) -> tuple[str, str] | None:
    name = entry.name
    if not name.startswith(flavour + "-"):
        return None
    rest = name[len(flavour) + 1 :]
    for ext in EXTENSIONS:
        stamp = rest.removesuffix(ext)
        if stamp != rest and STAMP.fullmatch(stamp):
            return stamp, name
    return None  # e.g. stage3-amd64-openrc-splitusr-... when asked for openrc


# What the old tool's `mirror.sh releases <proto> <selection>` mapped a profile to.
_BY_SELECTION = {
    "openrc": "openrc",
    "systemd": "systemd",
    "gnome": "desktop-openrc",
    "plasma": "desktop-openrc",
    "gnome/systemd": "desktop-systemd",
    "plasma/systemd": "desktop-systemd",
    "hardened": "hardened-openrc",
    "clang": "llvm-openrc",
    "selinux": "hardened-selinux-openrc",
    "hardened/selinux": "hardened-selinux-openrc",
    "musl": "musl-hardened",
}


def variant_for(selection: str) -> str:
    """The stage3 variant for a profile selection (``plasma`` -> ``desktop-openrc``) or a
    variant given as is (``desktop-systemd``)."""
    found = _BY_SELECTION.get(selection)
    if found is None and selection.endswith("/systemd"):
        found = "desktop-systemd"
    variant = found or selection
    if not VARIANT.fullmatch(variant):
        known = ", ".join(sorted(_BY_SELECTION))
        raise ValueError(f"no stage3 variant for {selection!r} (profiles: {known})")
    return variant


def stamp_key(stamp: str) -> str:
    """A stamp in one sortable form: ``YYYYMMDD`` and ``YYYYMMDDhhmmss`` become
    ``YYYYMMDDThhmmssZ``, so old and new trees compare correctly."""
    if not STAMP.fullmatch(stamp):
        raise ValueError(f"not a release stamp: {stamp!r}")
    if len(stamp) == 8:
        return f"{stamp}T000000Z"
    if len(stamp) == 14:
        return f"{stamp[:8]}T{stamp[8:]}Z"
    return stamp
