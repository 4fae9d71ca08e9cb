"""Verify an ebuild repository's Manifest tree (GLEP 74) with gemato, as Portage's rsync sync
does with ``sync-rsync-verify-metamanifest``: the top-level Manifest must carry a good
OpenPGP signature by one of the given keys, and every file of the tree must match its entry
(no file missing, none added, none changed).

gemato's own isolated OpenPGP environment holds only the keys given (a temporary GNUPGHOME,
removed with its agent when done), so the user's keyring never decides anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gemato.exceptions import (
    GematoException,
    ManifestMismatch,
    OpenPGPExpiredKeyFailure,
    OpenPGPKeyImportError,
    OpenPGPRevokedKeyFailure,
    OpenPGPUnknownSigFailure,
    OpenPGPVerificationFailure,
)
from gemato.openpgp import IsolatedGPGEnvironment
from gemato.recursiveloader import ManifestRecursiveLoader

from g2d.sources.errors import (
    BadSignature,
    ExpiredKey,
    NoSignature,
    RevokedKey,
    UnknownKey,
    VerificationFailed,
)

log = logging.getLogger("g2d.sources")

MAX_NAMED = 20  # mismatches named in one error; the count says how many more


class ManifestMismatchError(VerificationFailed):
    """Files of the tree differ from their Manifest entries; ``paths`` names them."""

    def __init__(self, tree: str, paths: Sequence[str], details: str) -> None:
        shown = ", ".join(paths[:MAX_NAMED])
        more = f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else ""
        word = "file does" if len(paths) == 1 else "files do"
        super().__init__(
            tree,
            f"{len(paths)} {word} not match the signed Manifests: {shown}{more}",
            hint="the mirror serves a damaged or altered tree; the tree in place was kept",
        )
        self.args = (tree, tuple(paths), details)
        self.paths = tuple(paths)
        self.details = details


@dataclass(frozen=True, slots=True)
class ManifestReport:
    """What a verified tree proved: who signed it and the time it states."""

    tree: Path
    signed_by: str | None  # primary key fingerprint; None when verified without a key
    signed_at: datetime | None
    timestamp: datetime | None  # the top-level Manifest's TIMESTAMP


def verify_tree(
    tree: Path, key_files: Sequence[Path], *, jobs: int | None = None
) -> ManifestReport:
    """Verify ``tree`` against its Manifests; the top one signed by a key of ``key_files``.

    With no key files only the hashes are checked (a site's own unsigned tree). Raises a
    ``VerificationFailed`` naming the files that differ, or what is wrong with the signature."""
    top = tree / "Manifest"
    subject = os.fspath(top)
    if not top.is_file():
        raise NoSignature(subject, "no top-level Manifest: the tree cannot be verified")
    with IsolatedGPGEnvironment() as env:
        for key in key_files:
            try:
                with open(key, "rb") as f:
                    env.import_key(f)
            except (OSError, OpenPGPKeyImportError) as e:
                raise UnknownKey(subject, f"cannot import the key file {key}: {e}", "") from e
        loader = _load(top, subject, env, signed=bool(key_files), jobs=jobs)
        if key_files and not loader.openpgp_signed:
            raise NoSignature(subject, "is not OpenPGP-signed, and a signature is required")
        stamp = loader.find_timestamp()
        bad: list[ManifestMismatch] = []

        def collect(err: ManifestMismatch) -> bool:
            bad.append(err)
            return True  # keep scanning (gemato stops at a False), so every bad file is named

        try:
            loader.assert_directory_verifies(fail_handler=collect)
        except GematoException as e:  # a broken sub-Manifest, a path that escapes the tree
            raise VerificationFailed(os.fspath(tree), str(e)) from e
        if bad:
            raise ManifestMismatchError(
                os.fspath(tree), sorted(e.path for e in bad), "\n".join(str(e) for e in bad)
            )
        signature = loader.openpgp_signature if loader.openpgp_signed else None
    return ManifestReport(
        tree=tree,
        signed_by=signature.primary_key_fingerprint if signature else None,
        signed_at=_utc(signature.timestamp) if signature else None,
        timestamp=_utc(stamp.ts) if stamp else None,
    )


def _load(
    top: Path, subject: str, env: IsolatedGPGEnvironment, *, signed: bool, jobs: int | None
) -> ManifestRecursiveLoader:
    try:
        return ManifestRecursiveLoader(
            os.fspath(top), verify_openpgp=signed, openpgp_env=env, max_jobs=jobs
        )
    except OpenPGPExpiredKeyFailure as e:
        raise ExpiredKey(subject, f"signed by an expired key: {e}") from e
    except OpenPGPRevokedKeyFailure as e:
        raise RevokedKey(subject, f"signed by a revoked key: {e}") from e
    except OpenPGPUnknownSigFailure as e:
        raise UnknownKey(subject, f"signed by a key not given to verify it: {e}", "") from e
    except OpenPGPVerificationFailure as e:
        raise BadSignature(subject, f"bad signature: {e}") from e
    except GematoException as e:
        raise VerificationFailed(subject, str(e)) from e


def _utc(ts: datetime | None) -> datetime | None:
    # gemato keeps naive UTC times
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def signed_timestamp(tree: Path) -> datetime | None:
    """The TIMESTAMP of ``tree``'s top-level Manifest, read without verifying anything: for
    the tree already in place, which was verified when it was synced."""
    top = tree / "Manifest"
    if not top.is_file():
        return None
    try:
        loader = ManifestRecursiveLoader(os.fspath(top), verify_openpgp=False)
        stamp = loader.find_timestamp()
    except GematoException:
        return None
    return _utc(stamp.ts) if stamp else None
