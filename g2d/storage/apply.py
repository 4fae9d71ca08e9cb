"""Run a plan: each step on its hosts, skipping steps whose effect is already there.

With a journal file, progress is written after every step (atomically), so a run that
died mid-plan can be inspected, and running the same plan again skips the finished steps
(through their ``done_if`` checks) and completes the rest.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.plan import Command, Plan, Step
from g2d.hosts.base import Host
from g2d.hosts.pipeline import Stage, run_pipeline

log = logging.getLogger("g2d.plan")


class UnknownHost(G2dUserError):
    """A plan names a host the executor was not given."""


def _host(hosts: Mapping[str, Host], command: Command) -> Host:
    try:
        return hosts[command.host]
    except KeyError:
        raise UnknownHost(
            f"plan step names host {command.host!r}; known: {', '.join(sorted(hosts))}"
        ) from None


def is_done(step: Step, hosts: Mapping[str, Host]) -> bool:
    if step.done_if is not None:
        check = step.done_if
        return _host(hosts, check).run(check.argv, check=False).returncode == 0
    if step.done_unless is not None:  # 1 = "not there"; any other failure is no answer
        check = step.done_unless
        return _host(hosts, check).run(check.argv, check=False).returncode == 1
    return False


def run_step(step: Step, hosts: Mapping[str, Host]) -> None:
    if len(step.pipeline) == 1:
        only = step.pipeline[0]
        _host(hosts, only).run(only.argv)
        return
    run_pipeline([Stage.of(_host(hosts, c), c.argv) for c in step.pipeline])


def _write_journal(journal: Path, plan: Plan, done: list[int], state: str) -> None:
    tmp = journal.with_name(f".{journal.name}.tmp")
    tmp.write_text(json.dumps({"plan": plan.to_json(), "done": done, "state": state}))
    os.replace(tmp, journal)


def journaled_done(journal: Path, plan: Plan) -> list[int]:
    """Steps an earlier, unfinished run of this same plan recorded as done."""
    try:
        data = json.loads(journal.read_text())
    except (OSError, ValueError):
        return []
    if data.get("state") != "running" or data.get("plan") != plan.to_json():
        return []
    return [int(i) for i in data.get("done", [])]


def apply_plan(
    plan: Plan,
    hosts: Mapping[str, Host],
    *,
    journal: Path | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> list[int]:
    """Run every step in order; return the indexes of the steps that ran (not skipped)."""
    logger = logger or log
    ran: list[int] = []
    done: list[int] = journaled_done(journal, plan) if journal else []
    if journal:
        _write_journal(journal, plan, done, "running")
    for i, step in enumerate(plan.steps):
        if i in done:
            logger.info("step %d/%d done before (journal): %s", i + 1, len(plan.steps), step.why)
            continue
        if is_done(step, hosts):
            logger.info("step %d/%d already done: %s", i + 1, len(plan.steps), step.why)
        else:
            logger.info("step %d/%d: %s", i + 1, len(plan.steps), step.why)
            run_step(step, hosts)
            ran.append(i)
        done.append(i)
        if journal:
            _write_journal(journal, plan, done, "running")
    if journal:
        _write_journal(journal, plan, done, "finished")
    return ran
