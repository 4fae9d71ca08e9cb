"""This machine."""

from __future__ import annotations

import os
from collections.abc import Mapping

import fsspec

from g2d.hosts.base import Argv, Host, env_prefix
from g2d.hosts.runner import DEFAULT_KEEP, Completed, Logger, StdinSpec, StdoutSpec, run_process


class LocalHost(Host):
    """Runs argv directly with ``exec``: no shell, no quoting."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

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
        return run_process(
            argv,
            host=self.name,
            stdin=stdin,
            stdout=stdout,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=check,
            capture=capture,
            keep=keep,
            logger=logger,
        )

    def command(
        self,
        argv: Argv,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        return [*env_prefix(env, cwd), *(os.fspath(a) for a in argv)]

    def filesystem(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("file")

    def __repr__(self) -> str:
        return f"LocalHost({self.name!r})"
