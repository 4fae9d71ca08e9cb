"""Fetch the latest stage3 of an arch and variant into the dom0's ``releases/`` tree, verified.

Order of work, each step fatal if its check fails:
1. ``latest-stage3-<arch>-<variant>.txt``: clear-signed (its verified text is parsed) or
   plain; the path it names must stay inside the mirror;
2. ``.DIGESTS`` (clear-signed; its BLAKE2B and SHA512 lines for the tarball) and ``.asc``;
3. the tarball, into ``.<name>.part``: BLAKE2B, SHA512 and the ``.asc`` signature (gpg reading
   the same bytes through a FIFO) all computed while it arrives; renamed when all match;
4. the sidecars beside it, ``current-stage3-<arch>-<variant>`` swapped to the new stamp,
   the latest file stored, older builds of this variant beyond ``keep`` deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from g2d.core.digests import FileDigests, parse_digests
from g2d.core.release_files import latest_name, parse_latest, stage3_of, stamp_key
from g2d.sources.download import Progress, download
from g2d.sources.errors import MirrorBehind
from g2d.sources.keyring import Keyring
from g2d.sources.release_store import ReleaseStore
from g2d.sources.transports import Transports, join_url

SMALL = 1 << 20  # the most a latest file or .DIGESTS may weigh
SIGNATURE_MAX = 64 << 10


@dataclass(frozen=True)
class Stage3Result:
    """What ``fetch_stage3`` left in place; ``fetched`` is False when it was already current."""

    flavour: str  # stage3-amd64-openrc
    stamp: str
    path: Path  # the tarball under releases/<arch>/autobuilds/<stamp>/
    digests: FileDigests  # BLAKE2B, SHA512 and size of the tarball
    seconds: float
    fetched: bool
    url: str
    latest_signed_by: str | None  # primary key fingerprint, None for a plain latest file
    resumed_from: int = 0
    removed: tuple[Path, ...] = ()

    @property
    def size(self) -> int:
        return self.digests.size or 0


def fetch_stage3(
    mirror_url: str,
    releases_dir: Path,
    *,
    arch: str = "amd64",
    variant: str = "openrc",
    keyring: Keyring,
    keep: int = 2,
    transports: Transports | None = None,
    attempts: int = 1,
    progress: Progress | None = None,
) -> Stage3Result:
    """Make ``releases_dir`` hold the mirror's latest stage3 of ``arch``/``variant``.

    mirror_url: the mirror's ``releases/`` directory (http(s)://, file:// or ssh://).
    keep: how many builds of this variant to keep (others of the variant are deleted).
    Raises ``TransferError`` (retryable), ``VerificationFailed``, ``ReleaseFileError`` or
    ``MirrorBehind``; on any of them the previous current build stays as it was.
    """
    started = time.monotonic()
    transports = transports or Transports()
    store = ReleaseStore(releases_dir, arch, variant)
    base = join_url(mirror_url, f"{arch}/autobuilds/")
    latest_url = base + latest_name(arch, variant)
    raw_latest = transports.read_all(latest_url, SMALL)
    text, signer = _latest_text(raw_latest, keyring, latest_url)
    ref = stage3_of(parse_latest(text, latest_url), arch, variant)
    tarball_url = join_url(base, ref.path)
    with store.locked():
        current = store.current_stamp()
        if current is not None and stamp_key(ref.stamp) < stamp_key(current):
            raise MirrorBehind(latest_url, f"{ref.flavour} {ref.stamp}", current)
        have = store.tarball_of(ref.stamp)
        if have is not None and have.name == ref.name and have.stat().st_size == ref.size:
            # verified when it was put there; only the signed digests are read back
            digests_text = keyring.verify_clearsigned(
                _sidecar(have, ".DIGESTS").read_bytes(), f"{have}.DIGESTS"
            ).text
            digests = parse_digests(digests_text, f"{have}.DIGESTS").for_file(ref.name)
            result_digests = FileDigests(ref.name, digests.hashes, ref.size)
            fetched, resumed = False, 0
        else:
            raw_digests = transports.read_all(tarball_url + ".DIGESTS", SMALL)
            verified = keyring.verify_clearsigned(raw_digests, tarball_url + ".DIGESTS")
            listed = parse_digests(verified.text, tarball_url + ".DIGESTS").for_file(ref.name)
            signature = transports.read_all(tarball_url + ".asc", SIGNATURE_MAX)
            directory = store.build_dir(ref.stamp)
            directory.mkdir(parents=True, exist_ok=True)
            got = download(
                tarball_url,
                directory / ref.name,
                transports=transports,
                expect=FileDigests(ref.name, listed.hashes, ref.size),
                verifier=lambda: keyring.detached_stream(signature, tarball_url + ".asc"),
                attempts=attempts,
                progress=progress,
            )
            # the tarball is in place; the build counts once its sidecars are too
            _write_atomic(_sidecar(got.path, ".DIGESTS"), raw_digests)
            _write_atomic(_sidecar(got.path, ".asc"), signature)
            result_digests, have, fetched, resumed = got.digests, got.path, True, got.resumed_from
        if current != ref.stamp:
            store.point_current(ref.stamp)
        store.write_latest(raw_latest)
        removed = tuple(store.prune(keep))
    return Stage3Result(
        ref.flavour,
        ref.stamp,
        have,
        result_digests,
        time.monotonic() - started,
        fetched,
        tarball_url,
        signer,
        resumed,
        removed,
    )


def _latest_text(raw: bytes, keyring: Keyring, url: str) -> tuple[str, str | None]:
    """The text to parse: gpg's verified output for a clear-signed file, else the file."""
    if raw.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
        verified = keyring.verify_clearsigned(raw, url)
        return verified.text, verified.fingerprint
    # a plain pointer may only name a build whose .DIGESTS and .asc verify below
    return raw.decode("utf-8"), None


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _write_atomic(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.new")
    tmp.write_bytes(data)
    tmp.replace(dest)
