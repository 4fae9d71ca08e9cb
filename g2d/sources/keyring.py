"""OpenPGP verification with python-gnupg against one configured keyring directory.

The keyring (a GNUPGHOME holding only the keys g2d trusts: Gentoo's release keys for real
use, the lab's in the lab) is the trust decision, so gpg runs with ``--trust-model always``;
``fingerprints`` narrows it to named primary keys. Results are read from gpg's status lines,
never from its human text. A clear-signed file yields the text gpg itself verified and
printed, never a copy of the unverified armored input with the armor cut off.

``detached_stream`` checks a detached signature while the data is still arriving: gpg
reads the bytes from a FIFO that the downloader writes alongside its own hashing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import gnupg

from g2d.hosts.local import LocalHost
from g2d.sources.errors import (
    BadSignature,
    ExpiredKey,
    NoSignature,
    RevokedKey,
    UnknownKey,
    VerificationFailed,
)

_OPTIONS = ["--trust-model", "always", "--no-auto-key-retrieve", "--batch"]
_PIPE_SIZE = 1 << 20  # fewer wake-ups of gpg per MiB than the default 64 KiB
_GPG_WAIT = 600.0


@dataclass(frozen=True, slots=True)
class Verified:
    """A good signature: the primary key's fingerprint, the signing (sub)key's, and when."""

    fingerprint: str
    signing_key: str
    signed_at: int
    text: str = ""  # the verified payload, for clear-signed input


class Keyring:
    """Verifies against the keys in ``home``; use as a context manager (stops gpg-agent)."""

    def __init__(self, home: Path, *, fingerprints: Iterable[str] = ()) -> None:
        if not home.is_dir():
            raise VerificationFailed(
                str(home), "keyring directory does not exist", hint="import the release keys"
            )
        self.home = home
        self.fingerprints = frozenset(f.replace(" ", "").upper() for f in fingerprints)
        self._gpg = gnupg.GPG(gnupghome=os.fspath(home), options=_OPTIONS)

    @classmethod
    def from_key_files(cls, home: Path, key_files: Iterable[Path]) -> Keyring:
        """A keyring in ``home`` holding the armored public keys of ``key_files``, trusting
        only their primary keys."""
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)  # gpg warns about unsafe permissions otherwise
        gpg = gnupg.GPG(gnupghome=os.fspath(home), options=_OPTIONS)
        fingerprints: list[str] = []
        for path in key_files:
            imported = gpg.import_keys(path.read_bytes())
            if not imported.fingerprints:
                raise VerificationFailed(str(path), "holds no OpenPGP public key")
            fingerprints += imported.fingerprints
        return cls(home, fingerprints=fingerprints)

    def close(self) -> None:
        """Stop a gpg-agent that gpg may have started for this home (none is needed to verify)."""
        LocalHost().run(["gpgconf", "--homedir", self.home, "--kill", "gpg-agent"], check=False)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the checks --------------------------------------------------------------------------

    def verify_clearsigned(self, data: bytes, subject: str) -> Verified:
        """The text of a clear-signed message, as gpg output it after checking the signature."""
        if b"-----BEGIN PGP SIGNED MESSAGE-----" not in data:
            raise NoSignature(subject, "is not clear-signed (no OpenPGP signed message)")
        result = self._gpg.decrypt(data)
        good = self.judge(result.stderr, subject)
        text = result.data.decode("utf-8", errors="strict")
        return Verified(good.fingerprint, good.signing_key, good.signed_at, text)

    def verify_detached(self, signature: bytes, path: Path, subject: str) -> Verified:
        """Check a detached signature over the file at ``path``."""
        result = self._gpg.verify_file(io.BytesIO(signature), os.fspath(path))
        return self.judge(result.stderr, subject)

    def detached_stream(self, signature: bytes, subject: str) -> DetachedStream:
        """A sink that gpg checks against ``signature`` as bytes are fed to it."""
        return DetachedStream(self, signature, subject)

    def judge(self, stderr: str, subject: str) -> Verified:
        """One good signature by a trusted key, from gpg's status lines; else the error."""
        status = _status_lines(stderr)
        first = {key: value for key, value in reversed(status)}
        bad = first.get("BADSIG") or first.get("EXPKEYSIG") or first.get("REVKEYSIG") or ""
        key_id, _, uid = bad.partition(" ")
        if "BADSIG" in first:
            raise BadSignature(
                subject,
                f"BAD signature from key {key_id} ({uid}): the data or the signature was altered",
                hint="do not use this file; fetch it again from another mirror",
            )
        if "EXPKEYSIG" in first:
            raise ExpiredKey(
                subject,
                f"signed by key {key_id} ({uid}), which has expired",
                hint="refresh the release keys in the keyring",
            )
        if "REVKEYSIG" in first:
            raise RevokedKey(subject, f"signed by key {key_id} ({uid}), which was revoked")
        if "EXPSIG" in first:
            key_id, _, uid = first["EXPSIG"].partition(" ")
            raise ExpiredKey(subject, f"the signature by key {key_id} ({uid}) has expired")
        if "ERRSIG" in first:
            fields = first["ERRSIG"].split()
            named = fields[6] if len(fields) > 6 and fields[6] != "-" else fields[0]
            if "NO_PUBKEY" in first:
                raise UnknownKey(
                    subject,
                    f"signed by key {named}, which is not in the keyring {self.home}",
                    named,
                    hint="import that key if you trust it, or use another mirror",
                )
            raise BadSignature(subject, f"gpg could not check the signature by key {named}")
        signatures = sum(1 for key, _ in status if key == "NEWSIG")
        if "GOODSIG" not in first or "VALIDSIG" not in first:
            raise NoSignature(subject, "carries no OpenPGP signature gpg could read")
        if signatures > 1:
            raise BadSignature(subject, f"carries {signatures} signatures; exactly one expected")
        fields = first["VALIDSIG"].split()
        signing_key = fields[0]
        primary = fields[9] if len(fields) > 9 else signing_key
        if self.fingerprints and primary not in self.fingerprints:
            raise UnknownKey(
                subject,
                f"signed by key {primary}, which is not one of the trusted keys of {self.home}",
                primary,
            )
        return Verified(primary, signing_key, int(fields[2]))


def _status_lines(stderr: str) -> list[tuple[str, str]]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            key, _, value = line[9:].partition(" ")
            found.append((key, value))
    return found


class DetachedStream:
    """gpg --verify <sig> <fifo> running while the bytes are written into the FIFO."""

    def __init__(self, keyring: Keyring, signature: bytes, subject: str) -> None:
        self.subject = subject
        self._keyring = keyring
        self._dir = Path(tempfile.mkdtemp(prefix="g2d-sig-"))
        self._fifo = self._dir / "data"
        os.mkfifo(self._fifo, 0o600)
        self._fd: int | None = None
        self._gone = False  # gpg stopped reading (it failed early); the result will say why
        self._result: gnupg.Verify | None = None
        self._thread = threading.Thread(
            target=self._run, args=(signature,), name="g2d-gpg-verify", daemon=True
        )
        self._thread.start()

    def _run(self, signature: bytes) -> None:
        gpg = self._keyring._gpg
        self._result = gpg.verify_file(io.BytesIO(signature), os.fspath(self._fifo))

    def _open(self) -> None:
        # gpg opens the FIFO only after reading the signature; if it fails before that, an
        # ordinary open would block for ever, so poll with O_NONBLOCK while it runs
        while True:
            try:
                fd = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                if not self._thread.is_alive():
                    self._gone = True
                    return
                time.sleep(0.002)
        os.set_blocking(fd, True)
        with contextlib.suppress(OSError):  # a smaller pipe only costs wake-ups
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self._fd = fd

    def update(self, chunk: bytes | memoryview) -> None:
        if self._gone:
            return
        if self._fd is None:
            self._open()
            if self._fd is None:
                return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError:
            self._gone = True

    def finish(self) -> Verified:
        """Close the data stream and return gpg's verdict (or raise the verification error)."""
        try:
            self._end_data()
            self._thread.join(_GPG_WAIT)
            if self._result is None:
                raise VerificationFailed(self.subject, "gpg gave no verdict")
            return self._keyring.judge(self._result.stderr, self.subject)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop feeding gpg (it sees end of data and fails), wait for it, remove the FIFO."""
        self._end_data()
        self._thread.join(_GPG_WAIT)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _end_data(self) -> None:
        if self._fd is None and not self._gone:
            self._open()  # gpg waits on the FIFO even when no byte came: let it see the end
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
