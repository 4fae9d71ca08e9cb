"""Artifacts a person reads in the Prefect UI: markdown tables, the lineage tree, progress.

Keyed artifacts keep a version per run, so ``lineage-local-tank-sys`` shows the history of
one lineage across every flow that changed it. Prefect takes keys of lowercase letters,
digits and dashes only; ``artifact_key`` makes one from any words.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from g2d.core.lineage import Lineage
from g2d.core.lineage_tree import render_tree

KEY_MAX = 64  # long keys (paths) keep their tail and a hash of the whole


def artifact_key(*words: str) -> str:
    """``artifact_key("lineage", "local", "tank/sys")`` -> ``lineage-local-tank-sys``."""
    whole = "-".join(words)
    key = re.sub(r"[^a-z0-9]+", "-", whole.lower()).strip("-") or "g2d"
    if len(key) > KEY_MAX:
        digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
        key = f"{key[: KEY_MAX - 9 - 20].rstrip('-')}-{key[-20:].lstrip('-')}-{digest}"
    return key


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] = ()) -> str:
    """A markdown table of ``rows``; columns in the order given, else as first seen."""
    cols = list(columns) or list(dict.fromkeys(k for row in rows for k in row))
    if not cols:
        return "(nothing)\n"
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def publish_table(
    key: str, rows: Sequence[Mapping[str, object]], *, title: str = "",
    columns: Sequence[str] = (), description: str | None = None,
) -> UUID:  # fmt: skip
    """A markdown artifact holding ``rows`` as a table, under an optional heading."""
    head = f"## {title}\n\n" if title else ""
    return create_markdown_artifact(head + markdown_table(rows, columns), key, description)


def lineage_markdown(lineage: Lineage, host: str, *, sizes: bool = True) -> str:
    """The lineage tree as ``g2d lineage list`` prints it, in a code block."""
    return f"## Lineage {lineage.root} on {host}\n\n```\n{render_tree(lineage, sizes=sizes)}```\n"


def lineage_key(host: str, root: str) -> str:
    return artifact_key("lineage", host, root)


def publish_lineage_tree(
    lineage: Lineage, host: str, *, more: str = "", description: str | None = None
) -> UUID:
    """The tree (and ``more`` markdown below it) as the keyed artifact of this lineage."""
    text = lineage_markdown(lineage, host) + (f"\n{more}" if more else "")
    return create_markdown_artifact(text, lineage_key(host, lineage.root), description)


@dataclass
class Progress:
    """A progress artifact counting ``total`` steps: ``p = Progress.start(3, key=...)``,
    then ``p.advance()`` after each."""

    artifact_id: UUID
    total: int
    done: int = 0

    @classmethod
    def start(cls, total: int, *, key: str | None = None, description: str | None = None
              ) -> Progress:  # fmt: skip
        if total < 1:
            raise ValueError(f"progress needs at least one step, not {total}")
        return cls(create_progress_artifact(0.0, key, description), total)

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 1)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        self.done = min(self.total, self.done + steps)
        update_progress_artifact(self.artifact_id, self.percent, description)
