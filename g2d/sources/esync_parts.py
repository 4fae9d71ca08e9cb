"""The parts of the dom0 tree ``esync`` keeps, and how each one is brought up to date.

Each part takes its mirrors from the settings, ranked by remembered health, and tries them
in turn (``first_working``): a transfer error or a mirror behind ours moves on to the next,
a verification failure stops the part at once. ``sync_part`` returns what was done as a
``PartOutcome`` (the mirror used, bytes, files, time, what was verified); ``plan_part`` says
what a run would fetch from where without touching anything.

| part | from | verified by |
|---|---|---|
| releases | http(s)/file/ssh | signed latest file, signed .DIGESTS, .asc (``fetch_stage3``) |
| repos | rsync/file/ssh | gemato, the top Manifest signed by a release key (``sync_repository``) |
| snapshots | http(s)/file/ssh | .gpgsig (``fetch_snapshot``) |
| distfiles | http(s)/file/ssh | size, BLAKE2B, SHA512 of the synced repository's DIST entries |
| binpkgs | http(s)/file/ssh, rsync | size and digests of the binhost's ``Packages`` index |
| kernels packages patchfiles profiles meta | rsync/file/ssh | nothing: the site's own trees |
"""

from __future__ import annotations

import enum
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g2d.core.digests import FileDigests
from g2d.core.manifest_dist import merge_dist, parse_dist_lines
from g2d.core.mirrors import Resource, rank
from g2d.settings import SiteConfig
from g2d.sources.binpkgs import DISTFILES, FilesIncomplete, FilesRejected, fetch_binpkgs
from g2d.sources.distfiles import fetch_distfiles
from g2d.sources.errors import VerificationFailed
from g2d.sources.esync_errors import MissingReleaseKeys, NoMirrorsFor, NoRepository, UnknownPart
from g2d.sources.keyring import Keyring
from g2d.sources.mirror_access import Access, mirror_access
from g2d.sources.mirror_health import HealthStore, first_working, now_utc
from g2d.sources.rsync import rsync_tree
from g2d.sources.snapshots import fetch_snapshot
from g2d.sources.stage3 import fetch_stage3
from g2d.sources.tree_sync import sync_lock, sync_repository


class Part(enum.StrEnum):
    """A directory of the dom0 tree that esync fills, in the order a full esync takes them."""

    releases = enum.auto()
    repos = enum.auto()
    snapshots = enum.auto()
    distfiles = enum.auto()
    binpkgs = enum.auto()
    kernels = enum.auto()
    packages = enum.auto()
    patchfiles = enum.auto()
    profiles = enum.auto()
    meta = enum.auto()

    def is_site_tree(self) -> bool:
        """No Gentoo mirror has it; copied as it is from the site's own server."""
        return self in (Part.kernels, Part.packages, Part.patchfiles, Part.profiles, Part.meta)


def part_of(name: str) -> Part:
    try:
        return Part(name.strip())
    except ValueError:
        raise UnknownPart(name) from None


@dataclass(frozen=True)
class EsyncSetup:
    """Everything esync needs from the settings, as plain values (a task argument)."""

    dom0_root: Path
    state_dir: Path
    mirrors: Mapping[Part, tuple[str, ...]]
    arch: str = "amd64"
    variants: tuple[str, ...] = ("openrc",)
    keep: int = 2
    release_keys: tuple[Path, ...] = ()
    workers: int = 8

    @classmethod
    def from_settings(cls, settings: SiteConfig) -> EsyncSetup:
        from g2d.sources.mirror_lists import mirror_table

        table = mirror_table(settings)
        mirrors = {p: tuple(table[Resource(p)]) for p in Part if p is not Part.profiles}
        mirrors[Part.profiles] = tuple(settings.esync.profiles)
        e = settings.esync
        return cls(settings.dom0_root, settings.state_dir, mirrors, e.arch,
                   tuple(e.stage3_variants), e.keep, tuple(e.release_keys),
                   e.distfiles_workers)  # fmt: skip

    def dest(self, part: Part) -> Path:
        if part is Part.repos:
            return self.dom0_root / "repos" / "gentoo"
        return self.dom0_root / str(part)

    def configured(self) -> list[Part]:
        """The parts with at least one mirror, in esync's order."""
        return [p for p in Part if self.mirrors.get(p)]

    @property
    def health(self) -> HealthStore:
        return HealthStore.in_state_dir(self.state_dir)

    def ranked(self, part: Part) -> list[str]:
        urls = self.mirrors.get(part, ())
        if not urls:
            raise NoMirrorsFor(str(part))
        return rank(urls, self.health.load(), now=now_utc())

    def key_files(self) -> tuple[Path, ...]:
        missing = tuple(os.fspath(k) for k in self.release_keys if not k.is_file())
        if missing or not self.release_keys:
            raise MissingReleaseKeys(missing)
        return self.release_keys


@dataclass(frozen=True)
class PartOutcome:
    """What one part's sync did; ``error`` set when it failed (then nothing else counts)."""

    part: str
    mirror: str
    bytes: int
    files: int
    seconds: float
    verification: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self) -> dict[str, Any]:
        return {
            "part": self.part, "result": "ok" if self.ok else "FAILED",
            "mirror": self.mirror or "-", "bytes": self.bytes, "files": self.files,
            "seconds": round(self.seconds, 1), "verification": self.verification,
            "error": self.error or "",
        }  # fmt: skip


@dataclass(frozen=True)
class _Done:
    bytes: int
    files: int
    verification: str


@contextmanager
def release_keyring(setup: EsyncSetup) -> Iterator[Keyring]:
    """A keyring holding only the configured release keys, in a fresh home (its agent
    stopped and the home removed after)."""
    keys = setup.key_files()
    home = Path(tempfile.mkdtemp(prefix="g2d-keyring-"))  # short: gpg's socket paths
    try:
        with Keyring.from_key_files(home / "gnupg", keys) as keyring:
            yield keyring
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _short(fingerprint: str | None) -> str:
    return fingerprint[-16:] if fingerprint else "?"


def _releases(setup: EsyncSetup, url: str, via: Access, variants: tuple[str, ...], keep: int,
              arch: str) -> _Done:  # fmt: skip
    size = files = 0
    said = []
    with release_keyring(setup) as keyring:
        for variant in variants:
            got = fetch_stage3(url, setup.dest(Part.releases), arch=arch, variant=variant,
                               keyring=keyring, keep=keep, transports=via.transports)  # fmt: skip
            if got.fetched:
                size, files = size + got.size, files + 1
                latest = "signed latest" if got.latest_signed_by else "plain latest"
                said.append(f"{got.flavour} {got.stamp}: {latest}, signed DIGESTS, .asc")
            else:
                said.append(f"{got.flavour} {got.stamp}: current, DIGESTS re-verified")
    return _Done(size, files, "; ".join(said))


def _repos(setup: EsyncSetup, url: str, via: Access) -> _Done:
    got = sync_repository(url, setup.dest(Part.repos), key_files=setup.key_files(), ssh=via.ssh)
    if got.stats is None:
        return _Done(0, 0, f"already current ({got.remote:%Y-%m-%d %H:%M} UTC)")
    signer = _short(got.manifest.signed_by if got.manifest else None)
    return _Done(got.stats.transferred_size, got.stats.files,
                 f"Manifests verified by gemato, signed by {signer}")  # fmt: skip


def _snapshots(setup: EsyncSetup, url: str, via: Access) -> _Done:
    with release_keyring(setup) as keyring:
        got = fetch_snapshot(url, setup.dest(Part.snapshots), keyring=keyring, keep=setup.keep,
                             transports=via.transports)  # fmt: skip
    if not got.fetched:
        return _Done(0, 0, f"{got.name} already here")
    size = (got.digests.size or 0) if got.digests else 0
    return _Done(size, 1, f"{got.name}: .gpgsig by {_short(got.signed_by)}")


def repository_distfiles(tree: Path) -> list[FileDigests]:
    """The distfiles the package Manifests of ``tree`` name (``cat/pkg/Manifest``)."""
    if not (tree / "Manifest").is_file():
        raise NoRepository(tree)
    pairs = []
    for manifest in sorted(tree.glob("*/*/Manifest")):
        source = os.fspath(manifest.relative_to(tree))
        pairs += [(source, e) for e in parse_dist_lines(manifest.read_text(), source)]
    return merge_dist(pairs)


def _distfiles(setup: EsyncSetup, url: str, via: Access) -> _Done:
    wanted = repository_distfiles(setup.dest(Part.repos))
    got = fetch_distfiles(url, setup.dest(Part.distfiles), wanted, workers=setup.workers,
                          transports=via.transports)  # fmt: skip
    rejected = {n: str(e) for n, e in got.failed.items() if isinstance(e, VerificationFailed)}
    if rejected:
        raise FilesRejected(url, DISTFILES, rejected)
    if got.failed:
        raise FilesIncomplete(url, DISTFILES, {n: str(e) for n, e in got.failed.items()})
    return _Done(got.bytes, len(got.fetched),
                 f"{len(wanted)} files: size, BLAKE2B, SHA512 of the signed Manifests "
                 f"({len(got.present)} already here)")  # fmt: skip


def _binpkgs(setup: EsyncSetup, url: str, via: Access) -> _Done:
    got = fetch_binpkgs(url, setup.dest(Part.binpkgs), workers=setup.workers,
                        transports=via.transports, ssh=via.ssh)  # fmt: skip
    checked = "+".join(("SIZE", *got.checked))
    said = f"{got.files + len(got.present)} packages: {checked} of the Packages index"
    if got.removed:
        said += f"; {len(got.removed)} no longer listed, removed"
    return _Done(got.bytes, got.files, said)


def _site_tree(setup: EsyncSetup, url: str, via: Access, part: Part) -> _Done:
    stats = rsync_tree(url, setup.dest(part), ssh=via.ssh)
    return _Done(stats.transferred_size, stats.files, "none (the site's own tree)")


Syncer = Callable[[str, Access], _Done]


def _syncer(setup: EsyncSetup, part: Part) -> Syncer:
    if part is Part.releases:
        return lambda url, via: _releases(setup, url, via, setup.variants, setup.keep,
                                          setup.arch)  # fmt: skip
    if part is Part.repos:
        return lambda url, via: _repos(setup, url, via)
    if part is Part.snapshots:
        return lambda url, via: _snapshots(setup, url, via)
    if part is Part.distfiles:
        return lambda url, via: _distfiles(setup, url, via)
    if part is Part.binpkgs:
        return lambda url, via: _binpkgs(setup, url, via)
    return lambda url, via: _site_tree(setup, url, via, part)


def _attempt(sync: Syncer, url: str) -> tuple[str, _Done]:
    with mirror_access(url) as via:  # an ssh:// mirror: its pinned host, closed after
        return url, sync(url, via)


def _run(setup: EsyncSetup, part: Part, sync: Syncer) -> PartOutcome:
    started = time.monotonic()
    urls = setup.ranked(part)
    url, done = first_working(urls, lambda u: _attempt(sync, u), store=setup.health)
    return PartOutcome(str(part), url, done.bytes, done.files, time.monotonic() - started,
                       done.verification)  # fmt: skip


# each stage3 variant's store (release_store) and the repository (tree_sync) lock themselves
_LOCKING_THEMSELVES = (Part.releases, Part.repos)


def sync_part(setup: EsyncSetup, part: Part | str) -> PartOutcome:
    """Bring one part up to date from its first working mirror. Raises the part's error:
    ``TransferError`` (all mirrors failed; retry later), ``VerificationFailed`` (never
    retry), or another ``G2dUserError`` (configuration)."""
    part = part_of(str(part))
    sync = _syncer(setup, part)
    if part in _LOCKING_THEMSELVES:
        return _run(setup, part, sync)
    with sync_lock(setup.dest(part)):  # a nightly esync and one from the CLI: one at a time
        return _run(setup, part, sync)


def sync_stage3(setup: EsyncSetup, arch: str, variant: str, keep: int) -> PartOutcome:
    """Only the latest stage3 of ``arch``/``variant`` (the ``stage3`` flow and verb)."""
    return _run(setup, Part.releases,
                lambda url, via: _releases(setup, url, via, (variant,), keep, arch))  # fmt: skip


@dataclass(frozen=True)
class PlannedPart:
    part: str
    mirrors: tuple[str, ...]  # best first
    dest: Path
    what: str

    def row(self) -> dict[str, Any]:
        return {"part": self.part, "what": self.what, "from": " then ".join(self.mirrors),
                "to": os.fspath(self.dest)}  # fmt: skip


def plan_part(setup: EsyncSetup, part: Part | str) -> PlannedPart:
    """What ``sync_part`` would fetch and from where, best mirror first; reads only the
    settings and the remembered health."""
    part = part_of(str(part))
    what = {
        Part.releases: f"latest stage3 of {setup.arch} "
        + ", ".join(setup.variants)
        + f" (keep {setup.keep})",
        Part.repos: "the ebuild repository, Manifests verified",
        Part.snapshots: f"the newest dated snapshot (keep {setup.keep})",
        Part.distfiles: "the DIST files of the repository's Manifests",
        Part.binpkgs: "the Packages index and the packages it lists",
    }.get(part, "the site's tree, as it is")
    return PlannedPart(str(part), tuple(setup.ranked(part)), setup.dest(part), what)
