"""Command output reaches the Prefect run log, and failures carry the runner's error."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.context import get_run_context
from prefect.logging.handlers import APILogHandler

import g2d.tasks  # noqa: F401  (forwards g2d logs to Prefect)
from g2d.core.errors import CommandFailed
from g2d.hosts.local import LocalHost


@task(cache_policy=NO_CACHE)
def say(token: str) -> str:
    return LocalHost().run(["sh", "-c", f"echo out-{token}; echo err-{token} >&2"]).stdout


@task(cache_policy=NO_CACHE, retries=0)
def fail() -> None:
    LocalHost().run(["sh", "-c", "echo broken >&2; exit 5"])


@flow
def speak(token: str) -> str:
    say(token)
    return str(get_run_context().flow_run.id)


def _messages(flow_run_id: str) -> list[str]:
    APILogHandler().flush()  # logs go to the API in batches; send what is queued
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


def test_command_and_stderr_lines_reach_the_run_log() -> None:
    token = uuid.uuid4().hex[:8]
    run_id = speak(token)
    messages = _messages(run_id)
    assert f"local$ sh -c 'echo out-{token}; echo err-{token} >&2'" in messages
    assert f"local: err-{token}" in messages


def test_a_flow_run_from_the_quiet_cli_still_logs_its_commands() -> None:
    from g2d.cli import setup_logging

    setup_logging(logging.WARNING)  # what `g2d deploy` (no --verbose) sets up before its flow
    token = uuid.uuid4().hex[:8]
    messages = _messages(speak(token))
    assert f"local$ sh -c 'echo out-{token}; echo err-{token} >&2'" in messages
    assert f"local: err-{token}" in messages


def test_a_failed_command_fails_the_task_with_its_error() -> None:
    @flow
    def failing() -> None:
        fail()

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(CommandFailed) as info:
        state.result()
    assert str(info.value) == "local: \"sh -c 'echo broken >&2; exit 5'\" exited with 5\nbroken"
