"""The local runner and pipelines, against real processes."""

from __future__ import annotations

import _thread
import hashlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.runner import run_process
from g2d.lab.process import processes_with

NASTY = "a b;c|d&e$(f)`g`'h\"i\\j*k?~l #m"
local = LocalHost()


def unique_sleep() -> tuple[str, str]:
    """A sleep argument nobody else uses, so the process table can be searched for it."""
    secs = f"{1000 + uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 1000:03d}"
    return secs, secs


def test_stdout_stderr_and_exit_code() -> None:
    r = local.run(["sh", "-c", "echo out; echo err >&2; exit 0"])
    assert (r.stdout, r.stderr, r.returncode, r.ok) == ("out\n", "err", 0, True)
    assert r.argv == ("sh", "-c", "echo out; echo err >&2; exit 0")


def test_failure_carries_host_argv_code_and_stderr_tail() -> None:
    with pytest.raises(CommandFailed) as info:
        local.run(["sh", "-c", "seq 1 5000 >&2; echo last words >&2; exit 3"])
    e = info.value
    assert (e.host, e.argv, e.code) == ("local", ("sh", "-c", e.argv[2]), 3)
    assert e.tail.endswith("5000\nlast words")
    assert len(e.tail) <= 8192  # a tail, not the whole stream
    head = "local: \"sh -c 'seq 1 5000 >&2; echo last words >&2; exit 3'\" exited with 3\n"
    assert str(e).startswith(head)
    assert str(e).endswith("\nlast words")


def test_check_false_returns_the_code() -> None:
    assert local.run(["sh", "-c", "exit 7"], check=False).returncode == 7


def test_missing_program_and_missing_cwd() -> None:
    with pytest.raises(CommandNotFound) as info:
        local.run(["g2d-no-such-program"])
    assert str(info.value) == "local: g2d-no-such-program not found"
    with pytest.raises(CommandFailed) as info2:
        local.run(["true"], cwd="/nonexistent/g2d")
    assert info2.value.tail == "working directory /nonexistent/g2d missing"


def test_argv_is_never_a_shell_string() -> None:
    assert local.run(["printf", "%s", NASTY]).stdout == NASTY


def test_stdin_bytes_path_and_stdout_path(tmp_path: Path) -> None:
    blob = os.urandom(3 * 1024 * 1024)  # larger than a pipe buffer: the writer must not block
    assert local.run(["cat"], stdin=blob).out == blob
    src = tmp_path / "in"
    src.write_bytes(blob)
    dst = tmp_path / "out"
    r = local.run(["cat"], stdin=src, stdout=dst)
    assert r.out == b""
    assert dst.read_bytes() == blob


def test_stdin_ignored_by_child_is_not_an_error() -> None:
    assert local.run(["true"], stdin=os.urandom(1 << 20)).ok


def test_env_and_cwd(tmp_path: Path) -> None:
    r = local.run(["sh", "-c", 'echo "$G2D_X"; pwd'], env={"G2D_X": NASTY}, cwd=tmp_path)
    assert r.lines() == [NASTY, str(tmp_path)]


def test_stdin_is_never_the_terminal() -> None:
    # a command that reads stdin must see EOF, not hang on whatever g2d was started from
    assert local.run(["cat"], timeout=10).out == b""


def test_timeout_kills_the_whole_group() -> None:
    secs, token = unique_sleep()
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as info:
        local.run(["sh", "-c", f"sleep {secs} & sleep {secs} & echo started >&2; wait"], timeout=1)
    assert time.monotonic() - started < 4
    assert processes_with(token) == []
    assert str(info.value).startswith('local: "sh -c ')
    assert "timed out after 1 s and was killed\nstarted" in str(info.value)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    secs, token = unique_sleep()
    script = f"trap '' TERM; sleep {secs} & wait; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        run_process(["sh", "-c", script], timeout=0.5, grace=0.5)
    assert time.monotonic() - started < 4
    assert processes_with(token) == []


def _sigint_main() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.mark.parametrize(
    "interrupt",
    [_sigint_main, _thread.interrupt_main],
    ids=["signal", "injected-exception"],
)
def test_cancellation_kills_the_group(interrupt: Callable[[], None]) -> None:
    """Ctrl-C or Prefect's SIGALRM (a signal), or an exception injected into the thread
    (Prefect's timeout on a worker thread), arrives mid-run."""
    secs, token = unique_sleep()
    timer = threading.Timer(0.5, interrupt)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            local.run(["sh", "-c", f"sleep {secs} & sleep {secs}"], timeout=60)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 3
    assert processes_with(token) == []


def test_output_is_capped_and_marked_truncated() -> None:
    r = local.run(["head", "-c", "100000", "/dev/zero"], keep=1000)
    assert (len(r.out), r.truncated) == (1000, True)
    r = local.run(["head", "-c", "1000", "/dev/zero"], keep=1000)
    assert (len(r.out), r.truncated) == (1000, False)


def test_output_is_streamed_to_the_logger_line_by_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="g2d.cmd")
    local.run(["sh", "-c", "echo one; echo two >&2; printf three"], capture=False)
    messages = [r.getMessage() for r in caplog.records if r.name == "g2d.cmd"]
    assert messages[0] == "local$ sh -c 'echo one; echo two >&2; printf three'"
    assert set(messages[1:]) == {"local> one", "local: two", "local> three"}
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_log_lines_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="g2d.cmd")
    r = local.run(["seq", "1", "30000"])
    logged = [r.getMessage() for r in caplog.records]
    assert len(r.lines()) == 30000  # all kept for the caller
    assert logged[-1] == "local> [further output not logged]"
    assert len(logged) == 1 + 20_000 + 1


# pipelines


def test_pipeline_moves_bytes_intact_across_stages(tmp_path: Path) -> None:
    blob = os.urandom(8 * 1024 * 1024)
    src = tmp_path / "src"
    src.write_bytes(blob)
    dst = tmp_path / "dst"
    seen: list[int] = []
    r = run_pipeline(
        [Stage.of(local, ["cat"]), Stage.of(local, ["gzip", "-1"]), Stage.of(local, ["zcat"])],
        stdin=src,
        stdout=dst,
        on_progress=lambda n, rate: seen.append(n),
    )
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(blob).digest()
    assert r.nbytes == len(blob)
    assert seen[-1] == len(blob)
    assert [c.returncode for c in r.stages] == [0, 0, 0]


def test_pipeline_captures_the_last_stage() -> None:
    r = run_pipeline([Stage.of(local, ["printf", "%s", NASTY]), Stage.of(local, ["rev"])])
    assert r.stdout == NASTY[::-1]


def test_pipeline_blames_the_reader_not_the_sigpipe_victim() -> None:
    with pytest.raises(CommandFailed) as info:
        run_pipeline(
            [Stage.of(local, ["yes"]), Stage.of(local, ["sh", "-c", "head -c 10; exit 4"])]
        )
    e = info.value
    assert (e.argv, e.code) == (("sh", "-c", "head -c 10; exit 4"), 4)
    assert e.hint == "in pipeline: local: yes | local: sh -c 'head -c 10; exit 4'"


def test_pipeline_writer_failure_is_reported() -> None:
    with pytest.raises(CommandFailed) as info:
        run_pipeline(
            [Stage.of(local, ["sh", "-c", "echo gone >&2; exit 9"]), Stage.of(local, ["cat"])]
        )
    assert (info.value.code, info.value.tail) == (9, "gone")


def test_pipeline_timeout_kills_every_stage() -> None:
    secs, token = unique_sleep()
    with pytest.raises(CommandTimeout):
        run_pipeline(
            [Stage.of(local, ["sh", "-c", f"sleep {secs}"]), Stage.of(local, ["sleep", secs])],
            timeout=1,
        )
    assert processes_with(token) == []


def test_pipeline_with_env_and_cwd(tmp_path: Path) -> None:
    r = run_pipeline(
        [
            Stage.of(local, ["sh", "-c", 'printf "%s" "$X"; pwd'], env={"X": NASTY}, cwd=tmp_path),
            Stage.of(local, ["cat"]),
        ]
    )
    assert r.stdout == NASTY + str(tmp_path) + "\n"
