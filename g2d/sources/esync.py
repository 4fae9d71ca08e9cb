"""One esync: every part asked for, one after the other; a failed part does not stop the
others, and the run fails at the end naming each failed part.

``run_esync`` takes the function that syncs one part: the ``esync`` flow passes its Prefect
task (retries, a task run per part), ``g2d esync`` without a Prefect server passes
``sync_part`` itself. Listeners (``listen``) hear each part start and end, which is how the
CLI draws its progress while the flow runs in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from g2d.core.errors import G2dUserError
from g2d.sources.errors import VerificationFailed
from g2d.sources.esync_parts import (
    EsyncSetup,
    Part,
    PartOutcome,
    PlannedPart,
    part_of,
    plan_part,
    sync_part,
)

SyncPart = Callable[[EsyncSetup, Part], PartOutcome]


class Listener(Protocol):
    def __call__(self, index: int, total: int, part: Part, outcome: PartOutcome | None) -> None:
        """``outcome`` is None when the part starts."""


_listeners: list[Listener] = []


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Hear every part of the esyncs run in this process while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class EsyncFailed(G2dUserError):
    """Some parts failed; the others were synced. Each failed part's error is listed."""

    def __init__(self, failed: Sequence[PartOutcome], total: int) -> None:
        super().__init__(tuple(failed), total, hint="the parts not named were synced")
        self.failed, self.total = tuple(failed), total

    def __str__(self) -> str:
        listed = "; ".join(f"{o.part}: {o.error}" for o in self.failed)
        return f"esync: {len(self.failed)} of {self.total} part(s) failed: {listed}"


@dataclass(frozen=True)
class EsyncReport:
    outcomes: tuple[PartOutcome, ...]

    @property
    def failed(self) -> tuple[PartOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.outcomes)

    def raise_if_failed(self) -> None:
        if self.failed:
            raise EsyncFailed(self.failed, len(self.outcomes))


def select_parts(setup: EsyncSetup, names: Sequence[str] | None) -> list[Part]:
    """The parts named (in esync's order, each once), or every part with a mirror."""
    if not names:
        return setup.configured()
    wanted = {part_of(n) for n in names}
    return [p for p in Part if p in wanted]


def run_esync(
    setup: EsyncSetup, parts: Sequence[Part], *, sync: SyncPart = sync_part
) -> EsyncReport:
    """Sync each part with ``sync``; a ``G2dUserError`` fails that part only (a bug still
    stops the run)."""
    outcomes = []
    for index, part in enumerate(parts, 1):
        _tell(index, len(parts), part, None)
        started = time.monotonic()
        try:
            outcome = sync(setup, part)
        except G2dUserError as e:
            outcome = PartOutcome(
                str(part), "", 0, 0, time.monotonic() - started,
                "FAILED" if isinstance(e, VerificationFailed) else "-",
                error=str(e),
            )  # fmt: skip
        outcomes.append(outcome)
        _tell(index, len(parts), part, outcome)
    return EsyncReport(tuple(outcomes))


def _tell(index: int, total: int, part: Part, outcome: PartOutcome | None) -> None:
    for listener in list(_listeners):
        listener(index, total, part, outcome)


def plan_esync(setup: EsyncSetup, parts: Sequence[Part]) -> list[PlannedPart]:
    return [plan_part(setup, p) for p in parts]
