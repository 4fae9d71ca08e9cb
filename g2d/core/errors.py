"""The two tiers of g2d errors.

A ``G2dUserError`` is something the user can act on: the CLI prints it as one line plus an
optional hint and exits 1. Any other exception reaching the CLI is a bug and keeps its
traceback. Every exception keeps its constructor arguments in ``.args`` so it survives
pickling (Prefect ships task failures between processes).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class G2dError(Exception):
    """Raised on purpose by g2d; anything else reaching the CLI is a bug."""


class G2dUserError(G2dError):
    """An error the user can fix; printed as one line, with a hint where one helps."""

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint

    def __reduce__(self):  # keep the hint across pickling
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict) -> G2dUserError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class CommandFailed(G2dUserError):
    """A command exited non-zero (or was killed). Carries host, argv, exit code, stderr tail."""

    def __init__(
        self, host: str, argv: Sequence[str], code: int, tail: str, *, hint: str | None = None
    ) -> None:
        super().__init__(host, tuple(argv), code, tail, hint=hint)
        self.host = host
        self.argv = tuple(argv)
        self.code = code
        self.tail = tail

    def describe_exit(self) -> str:
        if self.code < 0:
            return f"was killed by signal {-self.code}"
        return f"exited with {self.code}"

    def __str__(self) -> str:
        head = f'{self.host}: "{shlex.join(self.argv)}" {self.describe_exit()}'
        return f"{head}\n{self.tail}" if self.tail else head


class CommandTimeout(CommandFailed):
    """A command ran past its timeout; its whole process group was killed."""

    def __init__(
        self, host: str, argv: Sequence[str], timeout: float, tail: str, *, hint: str | None = None
    ) -> None:
        super().__init__(host, argv, -9, tail, hint=hint)
        self.args = (host, tuple(argv), timeout, tail)
        self.timeout = timeout

    def describe_exit(self) -> str:
        return f"timed out after {self.timeout:g} s and was killed"


class CommandNotFound(G2dUserError):
    """The program named by argv[0] does not exist on the host."""

    def __init__(self, host: str, program: str, *, hint: str | None = None) -> None:
        super().__init__(host, program, hint=hint)
        self.host = host
        self.program = program

    def __str__(self) -> str:
        return f"{self.host}: {self.program} not found"


class HostKeyRejected(G2dUserError):
    """An ssh server presented a host key that is not the pinned one."""

    def __init__(
        self, host: str, fingerprint: str, reason: str, *, hint: str | None = None
    ) -> None:
        super().__init__(host, fingerprint, reason, hint=hint)
        self.host = host
        self.fingerprint = fingerprint
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.host}: host key {self.fingerprint} refused: {self.reason}"


class InvalidTarget(G2dUserError):
    """A target URI or name that g2d refuses; names the text and what is wrong with it."""

    def __init__(self, text: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(text, reason, hint=hint)
        self.text = text
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid target {self.text!r}: {self.reason}"
