"""Running lineage operations: one writer per pool, a journal, and resuming after a crash.

An operation is one or more *phases*, each a Plan made from the lineage as it is when the
phase starts: a backend plans only for volumes and snapshots that exist, so "hold the
snapshot the seal just made" is planned once the snapshot is there. Each phase's plan runs
through ``apply_plan`` with the pool's journal file, titled ``<intent> [part k of n]``.

Running the same command again after a crash (SIGKILL, power loss, a failed command)
finds the journal: the interrupted phase's *journaled* plan is finished (its done steps
skipped through ``done_if``), then the later phases are planned and run. Nothing of the
first phase is decided again, so a resumed seal never makes a second snapshot. Any other
writer is refused until the journal is finished.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.lineage import Lineage
from g2d.core.plan import Plan
from g2d.storage.apply import apply_plan
from g2d.storage.base import Backend
from g2d.storage.lock import lock_path, pool_lock

_PART = re.compile(r"(.*) \[part ([0-9]+) of ([0-9]+)\]", re.DOTALL)


@dataclass(frozen=True)
class Phase:
    why: str  # what the phase does, shown by a dry run before its commands can be planned
    make: Callable[[Lineage], Plan]  # planned from the lineage as the phase starts


Phases = Callable[[Lineage], list[Phase]]


class UnfinishedPlan(G2dUserError):
    """The pool's journal holds an operation that did not finish."""


@dataclass(frozen=True)
class Journal:
    """What ``apply_plan`` wrote: the plan, the steps done, and running or finished."""

    plan: Plan
    done: tuple[int, ...]
    state: str

    @classmethod
    def read(cls, path: Path) -> Journal | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(Plan.from_json(data["plan"]), tuple(data["done"]), str(data["state"]))

    @property
    def part(self) -> tuple[str, int, int]:
        """(intent, phase index, phase count) from the plan's title."""
        found = _PART.fullmatch(self.plan.title)
        if found is None:
            return self.plan.title, 0, 1
        return found[1], int(found[2]) - 1, int(found[3])


def title(intent: str, index: int, count: int) -> str:
    return intent if count == 1 else f"{intent} [part {index + 1} of {count}]"


@dataclass(frozen=True)
class Outcome:
    plans: tuple[Plan, ...]  # the plans run; for a dry run, the one that would run first
    ran: tuple[tuple[int, ...], ...]  # per plan, the steps run (empty for a dry run)
    later: tuple[str, ...]  # dry run: the phases after the first, planned when they start
    resumed: bool  # finished what an interrupted run of the same command left
    done: tuple[int, ...] = ()  # resumed: the steps of the first plan already done before


@dataclass
class LineageWriter:
    """Runs lineage operations on one pool: takes its lock, keeps its journal."""

    backend: Backend
    root: str  # the lineage: volumes directly below this
    pool: str  # lock and journal key: a ZFS pool, or the mount point of a path
    state_dir: Path
    wait: float = 0.0
    logger: logging.Logger | logging.LoggerAdapter | None = None

    @property
    def journal_path(self) -> Path:
        lock = lock_path(self.state_dir, self.backend.host.name, self.pool)
        return self.state_dir / "journal" / f"{lock.stem}.json"

    def load(self) -> Lineage:
        from g2d.storage.lineage import load_lineage

        return load_lineage(self.backend, self.root)

    def pending(self, intent: str) -> Journal | None:
        """The journal of an interrupted run of ``intent``; another intent's refuses."""
        journal = Journal.read(self.journal_path)
        if journal is None:
            return None
        owner, index, count = journal.part
        if journal.state == "finished" and index + 1 == count:
            return None  # finished; only the clean-up was cut off
        if owner != intent:
            step = f"{len(journal.done)} of {len(journal.plan.steps)} steps of part {index + 1}"
            raise UnfinishedPlan(
                f"pool {self.pool} on {self.backend.host.name} has an unfinished operation: "
                f"{owner} ({step} of {count} done)",
                hint=f"run `g2d lineage {owner}` again to finish it, "
                f"or delete {self.journal_path} to abandon it",
            )
        return journal

    def preview(self, intent: str, phases: Phases) -> Outcome:
        """What running would do, changing nothing (a dry run)."""
        journal = self.pending(intent)
        lineage = self.load()
        if journal is not None:
            _, index, count = journal.part
            if journal.state == "running":
                later = self._later(phases, lineage, index + 1, count)
                return Outcome((journal.plan,), (), later, True, journal.done)
            if index + 1 < count:
                later = self._later(phases, lineage, index + 2, count)
                first = self._plan(phases(lineage), lineage, intent, index + 1)
                return Outcome((first,), (), later, True)
        chosen = phases(lineage)
        first = self._plan(chosen, lineage, intent, 0)
        return Outcome((first,), (), tuple(p.why for p in chosen[1:]), False)

    def run(self, intent: str, phases: Phases) -> Outcome:
        """Plan and apply every phase; or finish what an interrupted run left."""
        host = self.backend.host
        with pool_lock(self.state_dir, host.name, self.pool, purpose=intent, wait=self.wait):
            journal = self.pending(intent)
            plans: list[Plan] = []
            ran: list[tuple[int, ...]] = []
            start, count = 0, 0
            if journal is not None:
                _, index, count = journal.part
                if journal.state == "running":
                    plans.append(journal.plan)
                    ran.append(self._resume(journal))
                start = index + 1
            chosen: list[Phase] | None = None
            for index in range(start, count or 1 << 30):
                lineage = self.load()
                chosen = chosen or phases(lineage)
                if index >= len(chosen):
                    break
                plan = self._plan(chosen, lineage, intent, index)
                if plan.steps or len(chosen) > 1:  # a part, even empty, marks progress
                    plans.append(plan)
                    ran.append(self._apply(plan))
            self.journal_path.unlink(missing_ok=True)
            done = journal.done if journal is not None else ()
            return Outcome(tuple(plans), tuple(ran), (), journal is not None, done)

    def _plan(self, chosen: list[Phase], lineage: Lineage, intent: str, index: int) -> Plan:
        made = chosen[index].make(lineage)
        return Plan(title(intent, index, len(chosen)), made.steps)

    def _later(self, phases: Phases, lineage: Lineage, start: int, count: int) -> tuple[str, ...]:
        return tuple(p.why for p in phases(lineage)[start:count]) if start < count else ()

    def _resume(self, journal: Journal) -> tuple[int, ...]:
        """Run the steps the journal does not list as done; a step cut off mid-way is not
        listed and runs again (its ``done_if`` decides). Returns indexes into the plan."""
        left = [i for i in range(len(journal.plan.steps)) if i not in journal.done]
        rest = Plan(journal.plan.title, tuple(journal.plan.steps[i] for i in left))
        return tuple(left[i] for i in self._apply(rest))

    def _apply(self, plan: Plan) -> tuple[int, ...]:
        host = self.backend.host
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        ran = apply_plan(plan, {host.name: host}, journal=self.journal_path, logger=self.logger)
        return tuple(ran)
