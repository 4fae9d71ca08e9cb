"""When a failed task is worth another try: a command or a transfer, never bad input.

Every g2d error the user can act on is a ``G2dUserError``. A failed or timed-out command
(``CommandFailed``) and a transfer that did not arrive whole (``TransferError``, an ssh
connection refused or reset) may succeed on another try: zfs-fuse calls a dataset busy for
a while, a mirror drops a connection. Anything else (a bad target, a refused lineage
operation, a verification failure, a missing program, a bug) fails the same way again, so
it fails at once. A lineage operation retried after a failed command resumes from its
journal, so a retry never repeats a step that was done.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from g2d.core.errors import CommandFailed
from g2d.sources.errors import is_retryable


def is_transient(exc: BaseException) -> bool:
    """Another attempt may succeed: a failed command, or a transfer (``is_retryable``)."""
    return isinstance(exc, CommandFailed) or is_retryable(exc)


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's ``retry_condition_fn``: retry only what ``is_transient`` accepts."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, rebuilt from the state
        return is_transient(exc)
    return False


def transient_retries(
    retries: int = 3, backoff: float = 10.0, jitter: float = 0.5
) -> dict[str, Any]:
    """``@task`` options: ``retries`` more attempts after ``backoff``, ``2*backoff``, ...
    seconds (each up to ``jitter`` longer), for transient failures only.

    ``@task(cache_policy=NO_CACHE, **transient_retries())``"""
    delays: Any = exponential_backoff(backoff_factor=backoff) if backoff > 0 else 0
    return {
        "retries": retries,
        "retry_delay_seconds": delays,
        "retry_jitter_factor": jitter if backoff > 0 else None,
        "retry_condition_fn": retry_transient,
    }
