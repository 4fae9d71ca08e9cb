"""Processes for the lab starters: short commands, long-lived daemons, and the process table.

Commands are argv lists, never shell strings. A daemon runs in its own session (so its pid is
its process group id) and is stopped by that pid: TERM to the group and to every descendant
that left it, a grace period, then KILL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from g2d.core.errors import G2dError
from g2d.hosts.local import LocalHost
from g2d.hosts.runner import Completed, group_members
from g2d.lab.errors import ComponentUnavailable

HOST = "127.0.0.1"  # the lab never listens on, or talks to, any other address
_TAIL_LINES = 20

Arg = str | os.PathLike[str]


def random_token(nbytes: int = 4) -> str:
    """A short hex token for names (pools, images), so parallel runs never collide."""
    return secrets.token_hex(nbytes)


def tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def find_program(name: str, *, component: str, package: str) -> str:
    """The absolute path of `name`, or ComponentUnavailable naming the Debian package."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise ComponentUnavailable(
            component, f"{name} not found", hint=f"apt-get install {package}"
        )
    return path


def run(
    argv: Sequence[Arg],
    *,
    input: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> Completed:
    """Run a short command through g2d's runner; a non-zero exit raises CommandFailed."""
    stdin = input.encode() if input is not None else None
    return LocalHost().run(argv, stdin=stdin, timeout=timeout, check=check)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    state: str


def process_table() -> dict[int, ProcInfo]:
    """Every process visible in /proc, read from /proc/PID/stat."""
    table: dict[int, ProcInfo] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # the command name is in parentheses and may hold spaces: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        table[pid] = ProcInfo(pid, int(fields[1]), int(fields[2]), fields[0])
    return table


def processes_with(token: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``token``: how tests prove that
    nothing they started survived, from the process table rather than from g2d's own view."""
    found = []
    for pid in process_table():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline and pid_alive(pid):
            found.append(pid)
    return found


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid`, including those that started a new session."""
    table = process_table()
    found: list[int] = []
    parents = {pid}
    while parents:
        kids = [p.pid for p in table.values() if p.ppid in parents and p.pid not in found]
        found.extend(kids)
        parents = set(kids)
    return found


def _signal(pid: int, sig: signal.Signals, *, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pids: Sequence[int], deadline: float) -> list[int]:
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if pid_alive(p)]
        if left:
            time.sleep(0.05)
    return [p for p in left if pid_alive(p)]


def stop_tree(pid: int, *, grace: float = 5.0) -> None:
    """TERM `pid`, its process group and every descendant; KILL what is left after `grace`.

    Works for a child of ours and for a daemon known only by its pid file. Descendants are
    collected by parentage first, because sshd's per-connection children call setsid() and
    so leave the group.
    """
    victims = {pid, *descendants(pid), *group_members(pid)}
    _signal(pid, signal.SIGTERM, group=True)
    for victim in victims:
        _signal(victim, signal.SIGTERM)
    left = _wait_gone(sorted(victims), time.monotonic() + grace)
    if left:
        _signal(pid, signal.SIGKILL, group=True)
        for victim in left:
            _signal(victim, signal.SIGKILL)
        left = _wait_gone(left, time.monotonic() + grace)
    if left:
        raise G2dError(f"processes {left} survived SIGKILL")


@dataclass
class Daemon:
    """A long-lived child process in its own session; `pid` is also its process group."""

    name: str
    argv: tuple[str, ...]
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        try:
            return tail(self.log.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """Stop the daemon and everything it started (see `stop_tree`), and reap it."""
        stop_tree(self.pid, grace=grace)
        self.proc.wait()


def spawn(
    name: str,
    argv: Sequence[Arg],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Daemon:
    """Start `argv` in a new session with stdout and stderr appended to `log`."""
    args = tuple(os.fspath(a) for a in argv)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ComponentUnavailable(name, f"{args[0]} not found") from None
    return Daemon(name, args, log, proc)


def _recv_upto(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_for_banner(daemon: Daemon, port: int, prefix: bytes, timeout: float) -> None:
    """Return once a connection to `port` is greeted with `prefix` (the daemon is accepting).

    Raises ComponentUnavailable if the daemon exits first or the deadline passes; the daemon
    is left for the caller's undo stack to stop.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            raise ComponentUnavailable(
                daemon.name,
                f"exited with {daemon.proc.returncode} before accepting connections:\n"
                + daemon.log_tail(),
            )
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as s:
                s.settimeout(2.0)
                if _recv_upto(s, len(prefix)) == prefix:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise ComponentUnavailable(
        daemon.name, f"not accepting on {HOST}:{port} after {timeout:g} s:\n{daemon.log_tail()}"
    )


def address_in_use(daemon: Daemon) -> bool:
    return "Address already in use" in daemon.log_tail()
