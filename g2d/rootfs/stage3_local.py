"""The current stage3 of a variant in the dom0's ``releases/``, checked again before a deploy.

``g2d stage3`` verified the tarball when it fetched it; a deploy checks it once more, because
the file may have been changed or damaged since (a disk, a hand edit, another tool), and an
extracted root is trusted from then on. The check is the fetch's: the clear-signed
``.DIGESTS`` must verify with the release keys, the tarball's BLAKE2B and SHA512 (and size)
must equal what it lists, and the detached ``.asc`` must verify over the tarball.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from g2d.core.digests import FileDigests, Hasher, parse_digests
from g2d.core.errors import G2dUserError
from g2d.sources.errors import DigestMismatch
from g2d.sources.keyring import Keyring
from g2d.sources.release_store import ReleaseStore

CHUNK = 1 << 20


class Stage3Missing(G2dUserError):
    """The dom0 has no current stage3 of the variant a profile needs."""


@dataclass(frozen=True)
class LocalStage3:
    flavour: str  # stage3-amd64-openrc
    stamp: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def sidecar(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)


@dataclass(frozen=True)
class Stage3Check:
    stage3: LocalStage3
    digests: FileDigests
    signed_by: str  # the release key's fingerprint
    seconds: float


def current_stage3(releases: Path, arch: str, variant: str) -> LocalStage3:
    """The tarball ``current-stage3-<arch>-<variant>`` points at, complete with sidecars."""
    store = ReleaseStore(releases, arch, variant)
    stamp = store.current_stamp()
    path = store.tarball_of(stamp) if stamp else None
    if stamp is None or path is None:
        raise Stage3Missing(
            f"{store.current_link} does not name a complete {store.flavour} build",
            hint=f"fetch it first: g2d stage3 --arch {arch} --variant {variant}",
        )
    return LocalStage3(store.flavour, stamp, path)


def verify_stage3(stage3: LocalStage3, keyring: Keyring) -> Stage3Check:
    """Refuse the tarball unless its signed digests and its signature hold (nothing written)."""
    started = time.monotonic()
    subject = os.fspath(stage3.path)
    raw = stage3.sidecar(".DIGESTS").read_bytes()
    verified = keyring.verify_clearsigned(raw, f"{subject}.DIGESTS")
    listed = parse_digests(verified.text, f"{subject}.DIGESTS").for_file(stage3.name)
    hasher = Hasher(listed.hashes)
    with open(stage3.path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            hasher.update(chunk)
    got = hasher.result(stage3.name)
    bad = [str(a) for a in listed.mismatches(got.hashes)]
    if listed.size is not None and listed.size != got.size:
        bad.append("size")
    if bad:
        raise DigestMismatch(
            subject,
            f"{' and '.join(bad)} differ from the signed .DIGESTS",
            hint="the tarball changed since it was fetched; fetch it again with g2d stage3",
        )
    signature = stage3.sidecar(".asc").read_bytes()
    signed = keyring.verify_detached(signature, stage3.path, f"{subject}.asc")
    return Stage3Check(stage3, got, signed.fingerprint, time.monotonic() - started)
