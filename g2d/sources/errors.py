"""What can go wrong fetching bytes, in two families the retry policy tells apart.

``TransferError``: the bytes did not arrive (404, refused, reset, truncated). Worth another
try, on this mirror (a partial file is resumed) or the next. ``VerificationFailed``: bytes
arrived and are wrong or unproven (signature, key, digest, size). Never retried as if the
network were at fault: the temporary file is removed and nothing in place is replaced.
"""

from __future__ import annotations

from g2d.core.errors import G2dUserError
from g2d.hosts.ssh import SshConnectFailed


class TransferError(G2dUserError):
    """The bytes of ``url`` did not arrive whole; a retry may succeed (and resume)."""

    def __init__(self, url: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(url, reason, hint=hint or "retry, or use another mirror")
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class HttpStatusError(TransferError):
    """The server answered with an error status (404, 500, ...)."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(url, f"HTTP {status} {reason}")
        self.args = (url, status, reason)
        self.status = status


class Truncated(TransferError):
    """The connection ended before the announced or expected size."""

    def __init__(self, url: str, got: int, expected: int) -> None:
        super().__init__(url, f"truncated: got {got} of {expected} bytes; a retry resumes")
        self.args = (url, got, expected)
        self.got = got
        self.expected = expected


class NoTransport(G2dUserError):
    """A URL g2d cannot fetch: unknown scheme, or an ssh host with no pinned key given."""

    def __init__(self, url: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(url, reason, hint=hint)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class VerificationFailed(G2dUserError):
    """Bytes arrived but are not what was signed or listed. Fatal; never retried."""

    def __init__(self, subject: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(subject, reason, hint=hint)
        self.subject = subject
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


class BadSignature(VerificationFailed):
    """The signature does not match the data (the data or the signature was altered)."""


class UnknownKey(VerificationFailed):
    """Signed by a key the keyring does not hold; ``key_id`` names it."""

    def __init__(self, subject: str, reason: str, key_id: str, *, hint: str | None = None) -> None:
        super().__init__(subject, reason, hint=hint)
        self.args = (subject, reason, key_id)
        self.key_id = key_id


class ExpiredKey(VerificationFailed):
    """Signed by a key of the keyring that has expired (or by an expired signature)."""


class RevokedKey(VerificationFailed):
    """Signed by a key of the keyring that was revoked."""


class NoSignature(VerificationFailed):
    """No OpenPGP signature where one is required."""


class DigestMismatch(VerificationFailed):
    """A file's BLAKE2B/SHA512 (or size) differs from the signed list."""


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: transfers yes, verification and bad input never.

    The Prefect tasks use this as their retry condition."""
    if isinstance(exc, VerificationFailed):
        return False
    if isinstance(exc, TransferError):
        return True
    # ssh could not connect (refused, reset); a host key or login refusal is not transient
    return isinstance(exc, SshConnectFailed) and isinstance(exc.__cause__, OSError)


class MirrorBehind(G2dUserError):
    """The mirror offers something older than what is already here; g2d never goes back."""

    def __init__(self, url: str, offered: str, have: str) -> None:
        super().__init__(
            url, offered, have, hint="the mirror is behind; use another one, or wait for it"
        )
        self.url = url
        self.offered = offered
        self.have = have

    def __str__(self) -> str:
        return f"{self.url}: offers {self.offered}, older than {self.have} here; not going back"
