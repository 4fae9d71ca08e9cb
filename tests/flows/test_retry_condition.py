"""The retry condition: a failed command is tried again, a user error never."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from g2d.core.errors import CommandFailed, G2dUserError, InvalidTarget
from g2d.sources.errors import BadSignature, TransferError
from g2d.tasks.retry import is_transient, transient_retries


def test_what_is_transient() -> None:
    assert is_transient(CommandFailed("local", ["zfs", "destroy", "t/a"], 1, "busy"))
    assert is_transient(TransferError("http://127.0.0.1/x", "connection reset"))
    assert not is_transient(BadSignature("x.asc", "bad signature"))
    assert not is_transient(InvalidTarget("zfs://", "no dataset"))
    assert not is_transient(G2dUserError("bad input"))
    assert not is_transient(KeyError("a bug"))


def _attempts(error: Exception) -> int:
    calls: list[int] = []

    @task(cache_policy=NO_CACHE, **transient_retries(retries=2, backoff=0))
    def failing() -> None:
        calls.append(1)
        raise error

    @flow
    def run_it() -> None:
        failing()

    assert run_it(return_state=True).is_failed()
    return len(calls)


def test_a_failed_command_is_retried() -> None:
    assert _attempts(CommandFailed("local", ["false"], 1, "")) == 3


def test_a_user_error_runs_once() -> None:
    assert _attempts(G2dUserError("tank/sys/g9 does not exist")) == 1
