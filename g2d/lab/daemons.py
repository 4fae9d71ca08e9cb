"""The lab's mirror daemons on 127.0.0.1: an http server and an rsync daemon.

Each serves directories read-only, keeps its pid file, log and config in its own state
directory, is accepting connections when its starter returns, and is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from g2d.lab import httpd
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import (
    HOST,
    Daemon,
    address_in_use,
    find_program,
    free_port,
    port_open,
    spawn,
    wait_for_banner,
)

_PORT_ATTEMPTS = 3
_MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class _Served:
    port: int
    daemon: Daemon
    _undo: ExitStack = field(default_factory=ExitStack, repr=False, kw_only=True)

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def stop(self) -> None:
        self._undo.close()

    def __enter__(self) -> _Served:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class HttpServer(_Served):
    root: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def __enter__(self) -> HttpServer:
        return self


@dataclass
class RsyncDaemon(_Served):
    modules: Mapping[str, Path]
    config: Path

    def url(self, module: str = "") -> str:
        return f"rsync://{HOST}:{self.port}/{module}/" if module else f"rsync://{HOST}:{self.port}/"

    def __enter__(self) -> RsyncDaemon:
        return self


def start_http_server(root: Path, *, state_dir: Path, timeout: float = 10.0) -> HttpServer:
    """Serve `root` over http on 127.0.0.1 (with byte ranges); return once it listens."""
    if not root.is_dir():
        raise NotADirectoryError(root)
    state_dir.mkdir(parents=True, exist_ok=True)
    port_file = state_dir / "httpd.port"
    port_file.unlink(missing_ok=True)
    argv = [
        sys.executable, "-I",           # isolated: the server needs only the standard library
        httpd.__file__,
        "--bind", HOST,
        "--port-file", port_file,
        root,
    ]  # fmt: skip
    with ExitStack() as undo:
        daemon = spawn("http server", argv, log=state_dir / "httpd.log")
        undo.callback(daemon.stop)
        port = _wait_port_file(daemon, port_file, timeout)
        (state_dir / "httpd.pid").write_text(f"{daemon.pid}\n")
        server = HttpServer(port, daemon, root=root)
        server._undo = undo.pop_all()
        return server


def _wait_port_file(daemon: Daemon, port_file: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists():
            port = int(port_file.read_text())
            if port_open(port):
                return port
        if not daemon.alive():
            raise ComponentUnavailable(
                daemon.name,
                f"exited with {daemon.proc.returncode}:\n{daemon.log_tail()}",
            )
        time.sleep(0.05)
    raise ComponentUnavailable(daemon.name, f"no port after {timeout:g} s:\n{daemon.log_tail()}")


def _render_rsyncd_conf(state_dir: Path, modules: Mapping[str, Path]) -> str:
    lines = [
        f"pid file = {state_dir / 'rsyncd.pid'}",
        "use chroot = no",
        "read only = yes",
        # as root rsyncd would drop to nobody, who cannot read a 0700 tmp dir
        f"uid = {os.getuid()}",
        f"gid = {os.getgid()}",
        "reverse lookup = no",
        "",
    ]
    for name, path in modules.items():
        lines += [f"[{name}]", f"    path = {path}", f"    comment = g2d lab: {name}", ""]
    return "\n".join(lines)


def start_rsync_daemon(
    modules: Mapping[str, Path], *, state_dir: Path, timeout: float = 10.0
) -> RsyncDaemon:
    """Serve each directory as a named rsync module on 127.0.0.1; return once it listens."""
    rsync = find_program("rsync", component="rsync daemon", package="rsync")
    for name, path in modules.items():
        if not _MODULE_NAME.fullmatch(name):
            raise ValueError(f"rsync module name {name!r} is not [A-Za-z0-9._-]+")
        if not path.is_dir():
            raise NotADirectoryError(path)
        if "\n" in os.fspath(path):
            raise ValueError(f"rsync module path {os.fspath(path)!r} holds a newline")
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "rsyncd.conf"
    config.write_text(_render_rsyncd_conf(state_dir, modules))
    log = state_dir / "rsyncd.log"
    with ExitStack() as undo:
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            log.unlink(missing_ok=True)
            argv = [
                rsync, "--daemon",
                "--no-detach",                  # stay our child, so the pid we hold is the daemon
                f"--config={config}",
                f"--address={HOST}",
                f"--port={port}",
                f"--log-file={log}",
            ]  # fmt: skip
            daemon = spawn("rsync daemon", argv, log=log)
            undo.callback(daemon.stop)
            try:
                wait_for_banner(daemon, port, b"@RSYNCD:", timeout)
            except ComponentUnavailable:
                if address_in_use(daemon):
                    continue
                raise
            server = RsyncDaemon(port, daemon, modules=dict(modules), config=config)
            server._undo = undo.pop_all()
            return server
    raise ComponentUnavailable("rsync daemon", f"no free port after {_PORT_ATTEMPTS} attempts")
