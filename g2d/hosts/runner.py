"""Run one local process: argv only, own process group, timeout, group kill, streamed output.

Every command g2d runs on this machine goes through ``run_process``; hosts (ssh, chroot)
build on it. The loop runs in the calling thread, so a Prefect timeout (SIGALRM) or a
KeyboardInterrupt lands here and the whole process group is killed before it propagates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout
from g2d.hosts.output import OutputCollector

log = logging.getLogger("g2d.cmd")

DEFAULT_KEEP = 64 * 1024 * 1024  # bytes of stdout kept for the caller to parse
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
# Longest blocking wait. Exceptions injected into a thread (Prefect's timeouts and
# cancellation on worker threads, _thread.interrupt_main) land only between bytecodes.
WAKE_EVERY = 0.5
_CHUNK = 1 << 16

Logger = logging.Logger | logging.LoggerAdapter
StdinSpec = bytes | str | Path | int | None
StdoutSpec = Path | int | None


@dataclass(frozen=True, slots=True)
class Completed:
    """What a finished command left: exit code, kept stdout, stderr tail, wall time."""

    host: str
    argv: tuple[str, ...]
    returncode: int
    out: bytes = field(repr=False)
    stderr: str
    duration: float
    truncated: bool = False

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in a process group, read from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..." and comm may hold spaces or parentheses
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, wait up to ``grace`` for all of it, then SIGKILL."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_members(pgid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    # members that were not our children are reaped by init; wait until they are gone
    deadline = time.monotonic() + grace
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a child: ours, a stable locale for parsing, then the caller's."""
    merged = dict(os.environ)
    merged["LC_ALL"] = "C.UTF-8"
    if env:
        merged.update(env)
    return merged


def _open_stdin(stdin: StdinSpec) -> tuple[int | IO[bytes], bytes | None, IO[bytes] | None]:
    """(what Popen gets, bytes to feed, file to close afterwards)."""
    if stdin is None:
        return subprocess.DEVNULL, None, None
    if isinstance(stdin, bytes):
        return subprocess.PIPE, stdin, None
    if isinstance(stdin, int):
        return stdin, None, None
    f = open(stdin, "rb")  # noqa: SIM115 - closed by the caller after the run
    return f, None, f


def run_process(
    argv: Sequence[str | os.PathLike[str]],
    *,
    host: str = "local",
    stdin: StdinSpec = None,
    stdout: StdoutSpec = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    keep: int = DEFAULT_KEEP,
    logger: Logger | None = None,
    grace: float = KILL_GRACE,
) -> Completed:
    """Run ``argv`` and wait for it.

    stdin: None (/dev/null), bytes to feed, a path to read, or an open fd.
    stdout: None (collected; see ``capture``), a path to write, or an open fd.
    capture: keep stdout for the caller (logged at DEBUG); when False it is only
        streamed to the log at INFO, as a build's output is.
    timeout: seconds; on expiry the whole process group is killed and CommandTimeout raised.
    check: raise CommandFailed on a non-zero exit.
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("empty argv")
    logger = logger or log
    logger.info("%s$ %s", host, shlex.join(args))
    popen_stdin, feed, stdin_file = _open_stdin(stdin)
    out_file = None
    if isinstance(stdout, Path | str):
        out_file = open(stdout, "wb")  # noqa: SIM115 - closed below
    popen_stdout = out_file if out_file else (stdout if stdout is not None else subprocess.PIPE)
    started = time.monotonic()
    try:
        try:
            proc = subprocess.Popen(
                args,
                stdin=popen_stdin,
                stdout=popen_stdout,
                stderr=subprocess.PIPE,
                env=child_env(env),
                cwd=cwd,
                start_new_session=True,  # own session and process group: kill the group
                close_fds=True,
            )
        except FileNotFoundError as e:
            if cwd is not None and not Path(cwd).is_dir():
                raise CommandFailed(host, args, 127, f"working directory {cwd} missing") from e
            raise CommandNotFound(host, args[0]) from e
        except PermissionError as e:
            raise CommandFailed(host, args, 126, f"{args[0]}: {e.strerror}") from e
    finally:
        if stdin_file:
            stdin_file.close()
        if out_file:
            out_file.close()

    err = OutputCollector(logger, prefix=f"{host}: ", level=logging.INFO, keep=0)
    out = OutputCollector(
        logger,
        prefix=f"{host}> ",
        level=logging.DEBUG if capture else logging.INFO,
        keep=keep if capture else 0,
    )
    deadline = started + timeout if timeout is not None else None
    try:
        timed_out = _pump(proc, feed, out, err, deadline)
    except BaseException:
        kill_group(proc, grace)  # Ctrl-C, Prefect timeout or cancellation: no orphans
        raise
    duration = time.monotonic() - started
    out.close()
    err.close()
    if timed_out:
        kill_group(proc, grace)
        raise CommandTimeout(host, args, float(timeout or 0), err.tail_text())
    result = Completed(
        host=host,
        argv=tuple(args),
        returncode=proc.returncode,
        out=out.head,
        stderr=err.tail_text(),
        duration=duration,
        truncated=out.truncated,
    )
    if check and result.returncode != 0:
        raise CommandFailed(host, args, result.returncode, result.stderr)
    return result


def _pump(
    proc: subprocess.Popen,
    feed: bytes | None,
    out: OutputCollector,
    err: OutputCollector,
    deadline: float | None,
) -> bool:
    """Move bytes until the child closes its pipes and exits; True if the deadline passed."""
    sel = selectors.DefaultSelector()
    collectors: dict[int, OutputCollector] = {}
    for stream, collector in ((proc.stdout, out), (proc.stderr, err)):
        if stream is not None:
            sel.register(stream, selectors.EVENT_READ)
            collectors[stream.fileno()] = collector
    view = memoryview(feed) if feed is not None else None
    if proc.stdin is not None:
        if view:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    try:
        while sel.get_map():
            wait = WAKE_EVERY if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return True
            for key, _ in sel.select(min(wait, WAKE_EVERY)):
                fd = key.fd
                if key.events & selectors.EVENT_WRITE:
                    assert view is not None and proc.stdin is not None
                    try:
                        n = os.write(fd, view[:_CHUNK])
                        view = view[n:]
                    except BrokenPipeError:
                        view = view[:0]  # the child stopped reading; its exit code tells
                    if not view:
                        sel.unregister(key.fileobj)
                        proc.stdin.close()
                    continue
                data = os.read(fd, _CHUNK)
                if data:
                    collectors[fd].feed(data)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
    while True:
        wait = WAKE_EVERY if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            return True
        try:
            proc.wait(min(wait, WAKE_EVERY))
            return False
        except subprocess.TimeoutExpired:
            continue
