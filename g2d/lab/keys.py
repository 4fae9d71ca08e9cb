"""The lab's OpenPGP keys, in the lab's own GNUPGHOME; the user's keyring is never touched.

Two keys, as on a real dom0: one signs release media (latest-*.txt, .DIGESTS, .asc,
snapshot .gpgsig), the other signs binary packages. Both are made without a passphrase
(this is a test world) and with a fixed validity, so "expired key" cases can be made too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gnupg

from g2d.core.errors import G2dUserError

RELEASE_UID = "g2d lab release engineering <releng@lab.g2d.invalid>"
BINPKG_UID = "g2d lab binary packages <binpkg@lab.g2d.invalid>"


class SigningFailed(G2dUserError):
    """gpg refused to sign or export; carries gpg's status text."""


@dataclass(frozen=True)
class LabKeys:
    """Handles to the lab's keyring and its two keys (by fingerprint)."""

    gnupghome: Path
    release: str
    binpkg: str

    def gpg(self) -> gnupg.GPG:
        return gnupg.GPG(gnupghome=str(self.gnupghome))

    def clearsign(self, src: Path, dst: Path, *, key: str | None = None) -> None:
        """Write ``dst``: ``src`` clear-signed (latest-*.txt, .DIGESTS)."""
        with open(src, "rb") as f:
            signed = self.gpg().sign_file(f, keyid=key or self.release, clearsign=True)
        if not signed.data:
            raise SigningFailed(f"gpg could not clear-sign {src}: {signed.status}")
        _write_atomic(dst, signed.data)

    def detach_sign(self, src: Path, dst: Path, *, key: str | None = None) -> None:
        """Write ``dst``: an armoured detached signature of ``src`` (.asc, .gpgsig)."""
        with open(src, "rb") as f:
            signed = self.gpg().sign_file(f, keyid=key or self.release, detach=True)
        if not signed.data:
            raise SigningFailed(f"gpg could not sign {src}: {signed.status}")
        _write_atomic(dst, signed.data)

    def export_public(self, fingerprint: str, dst: Path) -> None:
        """Write the armoured public key, for a client's keyring."""
        armored = self.gpg().export_keys(fingerprint)
        if not armored:
            raise SigningFailed(f"gpg could not export key {fingerprint}")
        _write_atomic(dst, armored.encode())


def _write_atomic(dst: Path, data: bytes) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


def _generate(gpg: gnupg.GPG, uid: str, expire: str) -> str:
    params = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=uid.split(" <")[0],
        name_email=uid.split("<")[1].rstrip(">"),
        expire_date=expire,
        no_protection=True,
    )
    key = gpg.gen_key(params)
    if not key.fingerprint:
        raise SigningFailed(f"gpg could not make the key {uid!r}: {key.status} {key.stderr}")
    return str(key.fingerprint)


def ensure_keys(gnupghome: Path, *, expire: str = "10y") -> LabKeys:
    """Make the lab keyring and its two keys, or find them if they exist (idempotent)."""
    gnupghome.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(gnupghome, 0o700)  # gpg warns about unsafe permissions otherwise
    gpg = gnupg.GPG(gnupghome=str(gnupghome))
    found = {uid: k["fingerprint"] for k in gpg.list_keys(secret=True) for uid in k["uids"]}
    release = found.get(RELEASE_UID) or _generate(gpg, RELEASE_UID, expire)
    binpkg = found.get(BINPKG_UID) or _generate(gpg, BINPKG_UID, expire)
    return LabKeys(gnupghome, release, binpkg)
