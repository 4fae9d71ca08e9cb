"""The signed GLEP 74 Manifest tree of the lab repository, as Gentoo's rsync mirrors carry it.

gemato (the tool Gentoo uses) writes the tree with its `old-ebuild` profile, the layout of
Gentoo's rsync tree: compressed `Manifest.gz` files for categories and the top directories,
and plain `Manifest` files in package directories (EBUILD, MISC, AUX and the DIST entries of
the thin Manifest, which Portage reads there), IGNORE entries for distfiles, local,
packages and the timestamp files, and a TIMESTAMP in the top-level Manifest. That Manifest
is then clear-signed by gpg exactly as gemato does it (`gpg --clearsign`), but with gpg's clock
frozen at the repository's timestamp, so the signature is reproducible: gemato itself signs
with the current time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gemato.profile import BackwardsCompatEbuildRepositoryProfile
from gemato.recursiveloader import ManifestRecursiveLoader

from g2d.hosts.local import LocalHost
from g2d.lab.keys import LabKeys, SigningFailed


def _key_created(keys: LabKeys, fingerprint: str) -> datetime:
    found = keys.gpg().list_keys(keys=[fingerprint])
    if not found:
        raise SigningFailed(f"key {fingerprint} is not in {keys.gnupghome}")
    return datetime.fromtimestamp(int(found[0]["date"]), UTC)


def sign_manifest_tree(
    root: Path, keys: LabKeys, timestamp: datetime, *, hashes: Sequence[str]
) -> None:
    """Write the Manifest tree under `root` and clear-sign its top-level Manifest."""
    loader = ManifestRecursiveLoader(
        os.fspath(root / "Manifest"),
        allow_create=True,
        hashes=list(hashes),
        profile=BackwardsCompatEbuildRepositoryProfile(),  # plain package Manifests
        sign_openpgp=False,  # signed below, with a reproducible signature time
        max_jobs=1,  # a few dozen files: a process pool costs more than it saves
    )
    loader.update_entries_for_directory()
    loader.set_timestamp(timestamp.replace(tzinfo=None))  # gemato keeps naive UTC times
    loader.save_manifests()
    # A signature may not predate its key (gpg would call it a time warp and refuse it).
    signed_at = max(timestamp, _key_created(keys, keys.release))
    top = root / "Manifest"
    signed = root / ".Manifest.asc"
    argv = [
        "gpg", "--homedir", os.fspath(keys.gnupghome), "--batch", "--no-tty", "--yes",
        "--faked-system-time", signed_at.strftime("%Y%m%dT%H%M%S") + "!",
        "--local-user", keys.release + "!",
        "--digest-algo", "SHA512",
        "--clearsign", "--output", os.fspath(signed), os.fspath(top),
    ]  # fmt: skip
    try:
        LocalHost().run(argv)
    finally:
        # python-gnupg and gpg start one agent per home; leave nothing running
        LocalHost().run(
            ["gpgconf", "--homedir", os.fspath(keys.gnupghome), "--kill", "gpg-agent"],
            check=False,
        )
    os.replace(signed, top)
