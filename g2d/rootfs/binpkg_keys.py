"""The keyring a target's Portage verifies binpkg signatures with: ``/etc/portage/gnupg``.

On Gentoo, ``getuto`` fills that directory (``BINPKG_GPG_VERIFY_GPG_HOME`` in make.globals)
with Gentoo's release keys. A g2d site signs its binpkgs with its own key, so g2d puts the
dom0's binpkg public key(s) there instead, trusted ultimately: Portage accepts a signature
only from a key gpg reports as fully or ultimately trusted. Portage runs gpg as
nobody:nogroup when it runs as root, so the directory must be readable by everyone
(research/real-emerge-recipe.md, pitfall 6), as getuto leaves it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.local import LocalHost

KEYRING_IN_ROOT = "etc/portage/gnupg"
_FPR = re.compile(r"^fpr:{9}([0-9A-F]{40}):", re.MULTILINE)


class KeyringFailed(G2dUserError):
    """The binpkg verification keyring could not be made in the target."""


def install_binpkg_keys(root: Path, public_keys: Sequence[Path]) -> tuple[str, ...]:
    """Replace ``<root>/etc/portage/gnupg`` with a keyring that trusts exactly these keys.

    ``public_keys`` are armoured (or binary) OpenPGP public keys on this machine. Returns
    the fingerprints now trusted. gpg runs here, not in the root: the root needs no gpg for
    this, and the files are gpg's usual keybox and trustdb.
    """
    if not public_keys:
        raise KeyringFailed(f"{root}: no binpkg public key given", hint="pass the dom0's key")
    home = root / KEYRING_IN_ROOT
    # built in a short temporary directory: gpg-agent's socket path must fit in 108 bytes,
    # and a root's /etc/portage/gnupg may lie deep down
    work = Path(tempfile.mkdtemp(prefix="g2d-gpg-"))
    try:
        fingerprints = _make_keyring(work / "home", public_keys)
        staging = home.with_name(".gnupg.g2d-new")
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(work / "home", staging, ignore=_not_keyring)
    finally:
        shutil.rmtree(work)
    _readable_by_all(staging)
    if home.exists():
        shutil.rmtree(home)
    os.rename(staging, home)
    return fingerprints


def _make_keyring(home: Path, public_keys: Sequence[Path]) -> tuple[str, ...]:
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", os.fspath(home), "--batch", "--no-tty", "--quiet"]
    host = LocalHost()
    try:
        for key in public_keys:
            host.run([*gpg, "--import", os.fspath(key)])
        listing = host.run([*gpg, "--with-colons", "--list-keys"]).stdout
        fingerprints = tuple(_primary_fingerprints(listing))
        trust = "".join(f"{fpr}:6:\n" for fpr in fingerprints)  # 6: ultimate
        host.run([*gpg, "--import-ownertrust"], stdin=trust.encode())
        host.run([*gpg, "--check-trustdb"])
    finally:
        host.run(["gpgconf", "--homedir", os.fspath(home), "--kill", "gpg-agent"], check=False)
    return fingerprints


def _not_keyring(_dir: str, names: list[str]) -> list[str]:
    """Agent sockets, gpg's backup and lock files: not part of a keyring."""
    return [n for n in names if n.startswith("S.") or n.endswith(("~", ".lock"))]


def _primary_fingerprints(colons: str) -> list[str]:
    """The fingerprint of each primary key (the ``fpr`` line right after a ``pub`` line)."""
    found = []
    lines = colons.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("pub:") and (m := _FPR.match(lines[i + 1])):
            found.append(m[1])
    return found


def _readable_by_all(home: Path) -> None:
    for dirpath, dirs, files in os.walk(home):
        os.chmod(dirpath, 0o755)
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
