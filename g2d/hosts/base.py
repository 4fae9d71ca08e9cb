"""The Host protocol: where a command runs.

Every host answers two questions: run this argv and wait (``run``), and which local argv
runs this argv on you (``command``), so pipeline stages on different hosts can be joined
with OS pipes and no byte passes through Python.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from g2d.hosts.runner import DEFAULT_KEEP, Completed, Logger, StdinSpec, StdoutSpec

if TYPE_CHECKING:
    import fsspec

Argv = Sequence[str | os.PathLike[str]]


def env_prefix(env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None) -> list[str]:
    """``env [-C dir] -- K=V ...`` for hosts that cannot set env or cwd themselves."""
    if not env and cwd is None:
        return []
    bad = [k for k in env or {} if not k or "=" in k]
    if bad:
        raise ValueError(f"invalid environment variable names: {bad!r}")
    return [
        "env",
        *(["-C", os.fspath(cwd)] if cwd is not None else []),
        "--",  # options end here; env takes NAME=VALUE words until the command
        *(f"{k}={v}" for k, v in (env or {}).items()),
    ]


class Host(ABC):
    """Somewhere commands run: this machine, a machine over ssh, or a chroot on either."""

    name: str

    @abstractmethod
    def run(
        self,
        argv: Argv,
        *,
        stdin: StdinSpec = None,
        stdout: StdoutSpec = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        capture: bool = True,
        keep: int = DEFAULT_KEEP,
        logger: Logger | None = None,
    ) -> Completed:
        """Run argv to completion; see ``g2d.hosts.runner.run_process`` for the arguments.

        ``stdin``/``stdout`` paths name files on the machine g2d runs on, not on the host.
        """

    @abstractmethod
    def command(
        self,
        argv: Argv,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """The local argv that runs ``argv`` on this host, for a pipeline stage."""

    @abstractmethod
    def filesystem(self) -> fsspec.AbstractFileSystem:
        """This host's files, through fsspec."""

    def __str__(self) -> str:
        return self.name
