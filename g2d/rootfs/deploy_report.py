"""What a deploy or an update did, as the markdown a person reads in the Prefect UI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from g2d.rootfs.emerge import EmergeResult


@dataclass(frozen=True)
class StepRow:
    step: str
    result: str  # "ok", "skipped (done before)", "**failed**"
    seconds: float
    summary: str


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def render_report(
    title: str, facts: Sequence[str], rows: Sequence[StepRow],
    emerges: Sequence[EmergeResult], outcome: str,
) -> str:  # fmt: skip
    lines = [f"## {title}", "", *[f"- {f}" for f in facts], "",
             "| step | result | seconds | what |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r.step} | {r.result} | {r.seconds:.1f} | {_cell(r.summary)} |" for r in rows]
    text = "\n".join(lines) + "\n"
    for result in emerges:
        text += "\n" + result.markdown()
    return text + f"\n**{outcome}**\n"
