"""make.conf assignments, and merging site values into a make.conf by key.

make.conf is bash-like: ``KEY="value"`` (or ``'value'``, or bare), a quoted value may span
lines, ``#`` starts a comment outside quotes, ``export KEY=...`` is accepted. A site value
replaces the assignment of its key where it stands (later duplicates of that key are
dropped, so the file says one thing), or is appended when the key is absent. Commented
placeholders such as ``#PORTAGE_BINHOST=`` stay comments: the old tool's substring ``sed``
relied on them and rewrote every line that merely contained the key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

_KEY = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
APPENDED = "# set by g2d from the site's package sets"


class MakeConfError(G2dUserError):
    """A make.conf-style file g2d cannot read; names the file and line."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(source, line, reason, hint='fix the line; make.conf takes KEY="value"')
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Assignment:
    key: str
    text: str  # the assignment as written, without a trailing comment: KEY="value"
    first: int  # first and last line (0-based, inclusive) it spans in its file
    last: int


def parse_assignments(text: str, source: str = "make.conf") -> list[Assignment]:
    """Every assignment in ``text``, in order; anything else but comments is an error."""
    lines = text.split("\n")
    found: list[Assignment] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        match = _KEY.match(stripped)
        if match is None:
            raise MakeConfError(source, i + 1, f"not an assignment: {stripped!r}")
        value, last = _value(lines, i, lines[i].index(match.group(0)) + len(match.group(0)), source)
        found.append(Assignment(match.group(1), f"{match.group(1)}={value}", i, last))
        i = last + 1
    return found


def _value(lines: Sequence[str], row: int, col: int, source: str) -> tuple[str, int]:
    """The value text starting at lines[row][col], up to an unquoted blank or comment."""
    out: list[str] = []
    quote: str | None = None
    start = row
    while True:
        line = lines[row]
        while col < len(line):
            ch = line[col]
            if quote is None and ch in " \t#":
                rest = line[col:].strip()
                if rest and not rest.startswith("#"):
                    raise MakeConfError(source, row + 1, f"text after the value: {rest!r}")
                return "".join(out), row
            if ch == "\\" and quote != "'" and col + 1 < len(line):
                out.append(line[col : col + 2])
                col += 2
                continue
            if ch in "\"'" and quote in (None, ch):
                quote = None if quote else ch
            out.append(ch)
            col += 1
        if quote is None:
            return "".join(out), row
        row += 1
        if row == len(lines):
            raise MakeConfError(source, start + 1, f"unterminated {quote} quote")
        out.append("\n")
        col = 0


def merge_make_conf(existing: str, values: Sequence[Assignment]) -> str:
    """``existing`` with each value's key replaced in place, or appended when absent.

    ``values`` apply in order: of several values of one key the last wins.
    """
    wanted: dict[str, str] = {}
    for a in values:
        wanted.pop(a.key, None)  # a later value of a key takes its place in the order
        wanted[a.key] = a.text
    lines = existing.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[str] = []
    done: set[str] = set()
    row = 0
    spans = {a.first: a for a in parse_assignments(existing)}
    while row < len(lines):
        a = spans.get(row)
        if a is None or a.key not in wanted:
            out.append(lines[row])
            row += 1
            continue
        if a.key not in done:  # the first assignment of a key takes the new value
            out.append(wanted[a.key])
            done.add(a.key)
        row = a.last + 1
    appended = [text for key, text in wanted.items() if key not in done]
    if appended:
        if out and out[-1].strip():
            out.append("")
        out += [APPENDED, *appended]
    return "\n".join(out) + "\n"


def assignment(key: str, value: str) -> Assignment:
    """``KEY="value"``, quoted for make.conf."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ValueError(f"not a make.conf variable name: {key!r}")
    return Assignment(key, f'{key}="{_escape(value)}"', -1, -1)


def _escape(value: str) -> str:
    return re.sub(r'(["\\$`])', r"\\\1", value)
