"""``A | B | ...`` across hosts, with OS pipes between the stages.

Each stage runs as a local process (a remote stage is its host's ssh client), so bytes
flow from process to process through the kernel and never through Python. Progress is
read from the first stage's ``/proc/<pid>/io`` (``wchar``: bytes it wrote), which costs
nothing on the data path and stays readable until the process is reaped.
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout
from g2d.hosts.base import Argv, Host
from g2d.hosts.output import OutputCollector
from g2d.hosts.runner import (
    DEFAULT_KEEP,
    KILL_GRACE,
    WAKE_EVERY,
    Completed,
    Logger,
    child_env,
    kill_group,
)

log = logging.getLogger("g2d.cmd")

PROGRESS_EVERY = 2.0  # seconds between progress lines


@dataclass(frozen=True)
class Stage:
    """One command of a pipeline and the host it runs on."""

    host: Host
    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: str | None = None

    @classmethod
    def of(
        cls,
        host: Host,
        argv: Argv,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Stage:
        return cls(host, tuple(os.fspath(a) for a in argv), env, os.fspath(cwd) if cwd else None)

    def __str__(self) -> str:
        return f"{self.host.name}: {shlex.join(self.argv)}"


@dataclass(frozen=True)
class PipelineResult:
    stages: tuple[Completed, ...]
    nbytes: int | None  # bytes the first stage wrote; None when not counted
    duration: float
    out: bytes = field(repr=False, default=b"")

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def rate(self) -> float | None:
        """Bytes per second through the first link."""
        if self.nbytes is None or self.duration <= 0:
            return None
        return self.nbytes / self.duration


ProgressFn = Callable[[int, float], None]  # (bytes so far, bytes per second)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def _make_pipe() -> tuple[int, int]:
    # The kernel's default pipe size: 1 MiB pipes measured slower for cat | cat here.
    return os.pipe2(os.O_CLOEXEC)


def written_bytes(pid: int) -> int | None:
    """Bytes a process has written so far (all its fds; its stderr is small beside the data)."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            for line in f:
                if line.startswith(b"wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_pipeline(
    stages: Sequence[Stage],
    *,
    stdin: Path | int | None = None,
    stdout: Path | int | None = None,
    timeout: float | None = None,
    check: bool = True,
    count: bool = True,
    on_progress: ProgressFn | None = None,
    keep: int = DEFAULT_KEEP,
    logger: Logger | None = None,
    grace: float = KILL_GRACE,
) -> PipelineResult:
    """Run ``stages[0] | stages[1] | ...`` and wait for all of them.

    stdin/stdout: a local path or fd for the first stage's input and the last stage's
    output; stdout None keeps the last stage's output in the result.
    count: report the bytes the first stage writes (progress lines, ``on_progress``, rate).
    A failure raises CommandFailed for the stage that caused it (a stage killed by SIGPIPE
    because its reader died is a victim, not the cause).
    """
    if len(stages) < 1:
        raise ValueError("a pipeline needs at least one stage")
    logger = logger or log
    logger.info("pipeline$ %s", " | ".join(str(s) for s in stages))
    n = len(stages)
    procs: list[subprocess.Popen] = []
    to_close: list[int] = []
    started = time.monotonic()

    in_fd: int | None = None
    if isinstance(stdin, Path | str):
        in_fd = os.open(stdin, os.O_RDONLY | os.O_CLOEXEC)
        to_close.append(in_fd)
    elif isinstance(stdin, int):
        in_fd = stdin
    out_fd: int | None = None
    if isinstance(stdout, Path | str):
        out_fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        to_close.append(out_fd)
    elif isinstance(stdout, int):
        out_fd = stdout

    try:
        prev_read: int | None = in_fd
        for i, stage in enumerate(stages):
            last = i == n - 1
            write_end: int | None
            next_read: int | None = None
            if last:
                write_end = out_fd
            else:
                r, w = _make_pipe()
                to_close += [r, w]
                write_end = w
                next_read = r
            argv = stage.host.command(stage.argv, env=stage.env, cwd=stage.cwd)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=prev_read if prev_read is not None else subprocess.DEVNULL,
                    stdout=write_end if write_end is not None else subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=child_env(None),
                    start_new_session=True,
                )
            except FileNotFoundError as e:
                raise CommandNotFound(stage.host.name, argv[0]) from e
            procs.append(proc)
            prev_read = next_read
        # the children hold their ends now; ours must go so EOF propagates
        for fd in to_close:
            os.close(fd)
        to_close = []
        result = _wait_all(stages, procs, count, started, timeout, keep, logger, on_progress, grace)
    except BaseException:
        for proc in procs:
            kill_group(proc, grace)
        raise
    finally:
        for fd in to_close:
            os.close(fd)
    if check:
        culprit = blame(stages, result.stages)
        if culprit is not None:
            done = result.stages[culprit]
            raise CommandFailed(
                stages[culprit].host.name,
                done.argv,
                done.returncode,
                done.stderr,
                hint="in pipeline: " + " | ".join(str(s) for s in stages),
            )
    return result


def blame(stages: Sequence[Stage], done: Sequence[Completed]) -> int | None:
    """Index of the stage whose failure broke the pipeline, or None if all exited 0."""
    failed = [i for i, c in enumerate(done) if c.returncode != 0]
    if not failed:
        return None
    # SIGPIPE (-13 for a local process, 141 through a shell, 255 from an ssh client whose
    # remote end died) means "my reader went away": the reader is the culprit.
    victims = {-13, 141}
    causes = [i for i in failed if done[i].returncode not in victims]
    return causes[-1] if causes else failed[0]


def _wait_all(
    stages: Sequence[Stage],
    procs: list[subprocess.Popen],
    count: bool,
    started: float,
    timeout: float | None,
    keep: int,
    logger: Logger,
    on_progress: ProgressFn | None,
    grace: float,
) -> PipelineResult:
    sel = selectors.DefaultSelector()
    errs: list[OutputCollector] = []
    for stage, proc in zip(stages, procs, strict=True):
        err = OutputCollector(logger, prefix=f"{stage.host.name}: ", level=logging.INFO, keep=0)
        errs.append(err)
        assert proc.stderr is not None
        sel.register(proc.stderr, selectors.EVENT_READ, err)
    out = OutputCollector(logger, prefix="pipeline> ", level=logging.DEBUG, keep=keep)
    if procs[-1].stdout is not None:
        sel.register(procs[-1].stdout, selectors.EVENT_READ, out)
    deadline = started + timeout if timeout is not None else None
    next_report = started + PROGRESS_EVERY
    timed_out = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if count and now >= next_report:
                _report(written_bytes(procs[0].pid) or 0, now - started, logger, on_progress)
                next_report = now + PROGRESS_EVERY
            wait = min(next_report - now, WAKE_EVERY) if count else WAKE_EVERY
            if deadline is not None:
                wait = min(wait, deadline - now)
            for key, _ in sel.select(max(wait, 0)):
                data = os.read(key.fd, 1 << 16)
                if data:
                    key.data.feed(data)
                else:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
        total: int | None = None
        for i, proc in enumerate(procs):
            if timed_out:
                break
            if i == 0 and count:
                # wait for exit without reaping, so /proc/<pid>/io is still there to read
                timed_out = not _wait_unreaped(proc.pid, deadline)
                total = written_bytes(proc.pid)
                if timed_out:
                    break
            timed_out = not _wait_unreaped(proc.pid, deadline)
            if not timed_out:
                proc.wait()
    finally:
        sel.close()
    if timed_out:
        for proc in procs:
            kill_group(proc, grace)
        tails = "\n".join(e.tail_text() for e in errs if e.tail_text())
        pipeline = " | ".join(shlex.join(s.argv) for s in stages)
        raise CommandTimeout("pipeline", [pipeline], float(timeout or 0), tails)
    duration = time.monotonic() - started
    if total is not None:
        _report(total, duration, logger, on_progress)
    results = []
    for stage, proc, err in zip(stages, procs, errs, strict=True):
        err.close()
        results.append(
            Completed(
                host=stage.host.name,
                argv=stage.argv,
                returncode=proc.returncode,
                out=b"",
                stderr=err.tail_text(),
                duration=duration,
            )
        )
    out.close()
    return PipelineResult(tuple(results), total, duration, out.head)


def _wait_unreaped(pid: int, deadline: float | None) -> bool:
    """Wait until ``pid`` has exited, leaving it a zombie; False if the deadline passed."""
    delay = 0.0005  # doubles up to WAKE_EVERY: quick for short stages, cheap for long ones
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, WAKE_EVERY / 10)


def _report(count: int, elapsed: float, logger: Logger, on_progress: ProgressFn | None) -> None:
    rate = count / elapsed if elapsed > 0 else 0.0
    logger.info("pipeline: %s at %s/s", human_bytes(count), human_bytes(rate))
    if on_progress is not None:
        on_progress(count, rate)
