"""A plan is data: ordered steps, each the exact commands per host and why.

Every mutating operation of g2d first becomes a ``Plan``. ``--dry-run`` prints it; applying
it runs the same commands verbatim. A step may carry ``done_if``: a read-only command that
exits 0 when the step's effect is already there, so running the same plan again after a
crash skips what was finished and completes the rest. A step whose effect is an absence
(a destroy, a release) carries ``done_unless`` instead: a read-only command that exits 0
while the thing is still there, so the step is done once it exits 1. Any other exit (an
unreachable host: ssh says 255) is no answer, and the step runs (and fails) as it would.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Command:
    """One argv on one host (by name; the executor maps names to hosts)."""

    host: str
    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ValueError(f"a command needs a non-empty argv of strings, not {self.argv!r}")

    @classmethod
    def of(cls, host: str, argv: Iterable[str]) -> Command:
        return cls(host, tuple(argv))

    def __str__(self) -> str:
        return f"{self.host}: {shlex.join(self.argv)}"


@dataclass(frozen=True, slots=True)
class Step:
    """Commands run as one pipeline (a single command is a pipeline of one), and why.

    ``done_if`` exits 0 when the effect is already present (the step is then skipped);
    ``done_unless`` exits 1 when it is (the effect is an absence: ``zfs list X`` of a
    destroyed X); ``undo`` reverses the step where that is possible, for rolling back a
    failed plan.
    """

    why: str
    pipeline: tuple[Command, ...]
    done_if: Command | None = None
    undo: tuple[Command, ...] = ()
    done_unless: Command | None = None

    def __post_init__(self) -> None:
        if not self.pipeline:
            raise ValueError(f"step {self.why!r} has no command")
        if self.done_if is not None and self.done_unless is not None:
            raise ValueError(f"step {self.why!r} has both done_if and done_unless")

    @classmethod
    def run(
        cls,
        host: str,
        argv: Iterable[str],
        why: str,
        *,
        done_if: Iterable[str] | None = None,
        undo: Iterable[str] | None = None,
        done_unless: Iterable[str] | None = None,
    ) -> Step:
        """A step of one command on one host."""
        return cls(
            why,
            (Command.of(host, argv),),
            Command.of(host, done_if) if done_if is not None else None,
            (Command.of(host, undo),) if undo is not None else (),
            Command.of(host, done_unless) if done_unless is not None else None,
        )

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(c.host for c in self.pipeline)

    def __str__(self) -> str:
        text = " | ".join(str(c) for c in self.pipeline)
        return f"{text}  # {self.why}"


def chained(steps: Sequence[Step]) -> list[Step]:
    """Runs of single-command steps on one host without done checks or undo, each as one
    ``sh -c 'a && b && ...'`` step: one command on that host instead of one each (over ssh,
    a round trip each). The chain stops at the first failure; running it again must be safe,
    so only commands that may run twice go before the last of a run (``zfs set``,
    ``zfs inherit``)."""
    out: list[Step] = []
    run: list[Step] = []

    def flush() -> None:
        if len(run) > 1:
            host = run[0].pipeline[0].host
            script = " && ".join(shlex.join(s.pipeline[0].argv) for s in run)
            why = "; ".join(s.why for s in run)
            out.append(Step.run(host, ["sh", "-c", script], why))
        else:
            out.extend(run)
        run.clear()

    for step in steps:
        plain = (len(step.pipeline) == 1 and step.done_if is None and step.done_unless is None
                 and not step.undo)  # fmt: skip
        if plain and run and step.pipeline[0].host != run[0].pipeline[0].host:
            flush()
        if plain:
            run.append(step)
        else:
            flush()
            out.append(step)
    flush()
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """What an operation will do, in order; printable, comparable, serialisable."""

    title: str
    steps: tuple[Step, ...] = field(default=())

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.title, self.steps + other.steps)

    def then(self, *steps: Step) -> Plan:
        return Plan(self.title, self.steps + steps)

    @classmethod
    def of(cls, title: str, steps: Sequence[Step]) -> Plan:
        return cls(title, tuple(steps))

    def render(self) -> str:
        lines = [f"plan: {self.title}"]
        lines += [f"  {i}. {step}" for i, step in enumerate(self.steps, 1)]
        if not self.steps:
            lines.append("  (nothing to do)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        def cmd(c: Command | None) -> dict[str, object] | None:
            return {"host": c.host, "argv": list(c.argv)} if c else None

        def step(s: Step) -> dict[str, object]:
            out = {
                "why": s.why,
                "pipeline": [cmd(c) for c in s.pipeline],
                "done_if": cmd(s.done_if),
                "undo": [cmd(c) for c in s.undo],
            }
            if s.done_unless is not None:  # absent otherwise: journals stay as they were
                out["done_unless"] = cmd(s.done_unless)
            return out

        return {"title": self.title, "steps": [step(s) for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Plan:
        def cmd(d: dict[str, object]) -> Command:
            return Command(str(d["host"]), tuple(str(a) for a in d["argv"]))  # type: ignore[attr-defined]

        steps = []
        for s in data["steps"]:  # type: ignore[attr-defined]
            steps.append(
                Step(
                    s["why"],
                    tuple(cmd(c) for c in s["pipeline"]),
                    cmd(s["done_if"]) if s["done_if"] else None,
                    tuple(cmd(c) for c in s["undo"]),
                    cmd(s["done_unless"]) if s.get("done_unless") else None,
                )
            )
        return cls(str(data["title"]), tuple(steps))
