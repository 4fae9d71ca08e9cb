"""The plan executor: done_if skips, journals resume, pipelines run, unknown hosts refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from g2d.core.errors import CommandFailed
from g2d.core.plan import Command, Plan, Step
from g2d.hosts.local import LocalHost
from g2d.storage.apply import UnknownHost, apply_plan

HOSTS = {"local": LocalHost()}


def touch(path: Path, why: str) -> Step:
    return Step.run("local", ["touch", str(path)], why, done_if=["test", "-e", str(path)])


def test_steps_run_in_order_and_done_ones_are_skipped(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    plan = Plan.of("two files", [touch(a, "make a"), touch(b, "make b")])
    a.touch()
    assert apply_plan(plan, HOSTS) == [1]  # a was there already
    assert b.exists()
    assert apply_plan(plan, HOSTS) == []  # a re-run changes nothing


def test_a_failed_step_stops_the_plan_and_the_journal_resumes_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    log = tmp_path / "log"
    gate = tmp_path / "gate"
    append = ["sh", "-c", f'echo "$0" >> {log}']
    plan = Plan.of(
        "three steps",
        [
            Step.run("local", [*append, "one"], "first (no done_if: runs once only by journal)"),
            Step.run("local", ["test", "-e", str(gate)], "second fails until the gate exists"),
            Step.run("local", [*append, "three"], "third"),
        ],
    )
    with pytest.raises(CommandFailed):
        apply_plan(plan, HOSTS, journal=journal)
    assert json.loads(journal.read_text())["done"] == [0]
    gate.touch()
    assert apply_plan(plan, HOSTS, journal=journal) == [1, 2]
    assert log.read_text() == "one\nthree\n"  # the first step did not run twice
    assert json.loads(journal.read_text())["state"] == "finished"
    # a finished journal does not skip anything in a new run of the plan
    assert apply_plan(plan, HOSTS, journal=journal) == [0, 1, 2]


def test_a_journal_of_another_plan_is_ignored(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    other = Plan.of("other", [Step.run("local", ["true"], "x")])
    journal.write_text(json.dumps({"plan": other.to_json(), "done": [0], "state": "running"}))
    plan = Plan.of("this", [Step.run("local", ["true"], "y")])
    assert apply_plan(plan, HOSTS, journal=journal) == [0]


def test_a_pipeline_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = Plan.of(
        "pipe",
        [
            Step(
                "copy through a pipe",
                (
                    Command.of("local", ["printf", "a b c"]),
                    Command.of("local", ["tee", str(out)]),
                ),
            )
        ],
    )
    apply_plan(plan, HOSTS)
    assert out.read_text() == "a b c"


def test_a_plan_naming_an_unknown_host_is_refused() -> None:
    plan = Plan.of("remote", [Step.run("saturn", ["true"], "x")])
    with pytest.raises(UnknownHost) as info:
        apply_plan(plan, HOSTS)
    assert str(info.value) == "plan step names host 'saturn'; known: local"


def test_plans_render_and_round_trip_through_json() -> None:
    plan = Plan.of("demo", [Step.run("local", ["zfs", "snapshot", "p/g1@s 1"], "seal g1")])
    assert plan.render() == "plan: demo\n  1. local: zfs snapshot 'p/g1@s 1'  # seal g1"
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert Plan.of("empty", []).render() == "plan: empty\n  (nothing to do)"
