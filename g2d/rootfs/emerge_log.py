"""What one emerge run did, read from the lines it appended to ``emerge.log``.

emerge.log is Portage's own record (``<epoch>:  <message>``), written as each step starts
and ends, so it says what happened even when emerge was killed half-way. Per package:

    >>> emerge (2 of 5) dev-libs/libdemo-1.5 to /
     === (2 of 5) Merging Binary (dev-libs/libdemo-1.5::/var/cache/binpkgs/.../x-1.5-1.gpkg.tar)
     === (2 of 5) Compiling/Merging (app-misc/breakme-1.0::/var/db/repos/.../breakme-1.0.ebuild)
     ::: completed emerge (2 of 5) dev-libs/libdemo-1.5 to /

A package that started and has no ``completed`` line failed (or the run was killed).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_LINE = re.compile(r"^(?P<ts>\d+):\s+(?P<msg>.*)$")
_START = re.compile(r"^>>> emerge \((?P<n>\d+) of (?P<of>\d+)\) (?P<cpv>\S+) to (?P<root>\S+)$")
_BINARY = re.compile(r"^=== \(\d+ of \d+\) Merging Binary \((?P<cpv>[^:]+)::(?P<path>.+)\)$")
_BUILD = re.compile(r"^=== \(\d+ of \d+\) Compiling/(?:Merging|Packaging) \((?P<cpv>[^:]+)::")
_DONE = re.compile(r"^::: completed emerge \((?P<n>\d+) of \d+\) (?P<cpv>\S+) to \S+$")
_BUILD_ID = re.compile(r"-(\d+)\.(?:gpkg\.tar|xpak)$")


class MergeKind(enum.StrEnum):
    """How a package reached the root."""

    binary = enum.auto()  # a binpkg from PKGDIR or a binhost
    built = enum.auto()  # compiled from its ebuild in the root


@dataclass(frozen=True)
class Merge:
    """One package emerge started in this run."""

    cpv: str  # category/name-version[-rN]
    kind: MergeKind | None  # None: it stopped before emerge said which (a fetch, a kill)
    build_id: int | None  # the binpkg's BUILD_ID (multi-instance); None when built
    started: int  # epoch seconds, as emerge.log has them
    finished: int | None  # None: it never completed (failed, or emerge was killed)

    def __post_init__(self) -> None:
        if "/" not in self.cpv:
            raise ValueError(f"not a category/package-version: {self.cpv!r}")

    @property
    def completed(self) -> bool:
        return self.finished is not None

    @property
    def seconds(self) -> int | None:
        return None if self.finished is None else self.finished - self.started


@dataclass(frozen=True)
class RunLog:
    """The packages of one emerge run, in the order emerge started them, and how it ended."""

    merges: tuple[Merge, ...]
    planned: int  # the "of N" emerge announced; 0 if it never started a merge
    exit_status: int | None  # from "*** exiting ... with status"; None if it was killed

    @property
    def completed(self) -> tuple[Merge, ...]:
        return tuple(m for m in self.merges if m.completed)

    @property
    def unfinished(self) -> tuple[Merge, ...]:
        return tuple(m for m in self.merges if not m.completed)


def parse_emerge_log(text: str) -> RunLog:
    """The merges recorded in ``text``: the lines one emerge run appended to emerge.log."""
    started: dict[str, tuple[int, int]] = {}  # cpv -> (started, "n" of the run)
    kinds: dict[str, tuple[MergeKind | None, int | None]] = {}
    finished: dict[str, int] = {}
    planned = 0
    status: int | None = None
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        ts, msg = int(m["ts"]), m["msg"].strip()
        if s := _START.match(msg):
            started[s["cpv"]] = (ts, int(s["n"]))
            planned = max(planned, int(s["of"]))
        elif b := _BINARY.match(msg):
            build = _BUILD_ID.search(b["path"])
            kinds[b["cpv"]] = (MergeKind.binary, int(build[1]) if build else None)
        elif c := _BUILD.match(msg):
            kinds[c["cpv"]] = (MergeKind.built, None)
        elif d := _DONE.match(msg):
            finished[d["cpv"]] = ts
        elif msg.startswith("*** exiting successfully"):
            status = 0
        elif e := re.match(r"^\*\*\* exiting unsuccessfully with status '(\d+)'", msg):
            status = int(e[1])
    merges = []
    for cpv, (ts, _n) in sorted(started.items(), key=lambda kv: kv[1][1]):
        kind, build_id = kinds.get(cpv, (None, None))
        merges.append(Merge(cpv, kind, build_id, ts, finished.get(cpv)))
    return RunLog(tuple(merges), planned, status)
