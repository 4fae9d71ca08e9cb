"""Which members of a tar archive would land outside the directory it is extracted into.

The listing comes from GNU tar itself (``tar -tvP --quoting-style=c``), the same parser that
later extracts, so what is checked is what gets written. ``-P`` shows names and hard-link
targets raw: without it tar hides a leading ``/`` of a hard-link target, which is exactly
what must be seen. Extraction runs on the host, not in a chroot, so a symlink with an
absolute target points at the host's root: absolute symlinks are normal in a root file
system and are allowed as members, but a member whose path goes *through* one (or through
a relative one that climbs above the root) would be written outside, and is refused.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from g2d.core.errors import G2dUserError

MAX_SYMLINK_HOPS = 40  # the kernel's own limit (ELOOP)
MAX_SHOWN = 20  # bad members named in one message


class MemberKind(enum.StrEnum):
    file = "-"
    hardlink = "h"
    symlink = "l"
    directory = "d"
    char = "c"
    block = "b"
    fifo = "p"


@dataclass(frozen=True, slots=True)
class Member:
    kind: MemberKind
    name: str  # raw, as stored in the archive
    target: str | None = None  # link target, raw

    def __post_init__(self) -> None:
        has_target = self.kind in (MemberKind.symlink, MemberKind.hardlink)
        if has_target != (self.target is not None):
            raise ValueError(f"{self.kind.name} member {self.name!r}: target {self.target!r}")


@dataclass(frozen=True, slots=True)
class Refusal:
    member: str
    reason: str

    def __str__(self) -> str:
        return f"{self.member}: {self.reason}"


class UnsafeArchive(G2dUserError):
    """An archive holds members that would be written outside the target directory."""

    def __init__(self, archive: str, refusals: Sequence[Refusal]) -> None:
        super().__init__(
            archive, tuple(refusals), hint="nothing was extracted; use a trusted stage3"
        )
        self.archive = archive
        self.refusals = tuple(refusals)

    def __str__(self) -> str:
        shown = "".join(f"\n  {r}" for r in self.refusals[:MAX_SHOWN])
        more = len(self.refusals) - MAX_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        n = len(self.refusals)
        what = "member" if n == 1 else "members"
        return f"{self.archive}: refused, {n} {what} would land outside the root:{shown}{tail}"


class UnreadableListing(G2dUserError):
    """A line of tar's listing that g2d does not understand; refused rather than guessed."""

    def __init__(self, archive: str, line: str) -> None:
        super().__init__(archive, line, hint="nothing was extracted")
        self.archive = archive
        self.line = line

    def __str__(self) -> str:
        return f"{self.archive}: refused, tar lists a member g2d cannot read: {self.line!r}"


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LINE = re.compile(
    rf"^(?P<type>.)\S+ [^\"]*(?P<name>{_QUOTED})(?: (?P<rel>->|link to) (?P<target>{_QUOTED}))?$"
)
_ESCAPES = {"\\": 92, '"': 34, "n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}
_OCTAL = re.compile(r"[0-7]{1,3}")


def c_unquote(quoted: str) -> str:
    """A name as GNU tar prints it with --quoting-style=c, back to the file name."""
    body, out, i = quoted[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        octal = _OCTAL.match(body, i + 1)
        if octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i = octal.end()
        elif i + 1 < len(body) and body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            raise ValueError(f"unknown escape in {quoted!r}")
    return os.fsdecode(bytes(out))


def parse_listing(archive: str, text: str) -> list[Member]:
    """Members from ``LC_ALL=C tar -tvP --quoting-style=c --numeric-owner`` output."""
    members = []
    for line in text.splitlines():
        match = _LINE.match(line)
        try:
            if match is None:
                raise ValueError(line)
            kind = MemberKind(match["type"])
            rel = {"->": MemberKind.symlink, "link to": MemberKind.hardlink}.get(match["rel"])
            if rel is not None and rel is not kind:
                raise ValueError(line)
            target = c_unquote(match["target"]) if match["target"] else None
            members.append(Member(kind, c_unquote(match["name"]), target))
        except ValueError:
            raise UnreadableListing(archive, line) from None
    return members


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _walk(links: dict[str, str], parts: Sequence[str]) -> str | None:
    """Follow ``parts`` from the root through the archive's symlinks, as the kernel would on
    the host; the symlink that leads out of the root, or None if the walk stays inside."""
    todo, here, hops = list(reversed(parts)), [], 0
    via = None
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return via or ".."
            here.pop()
            continue
        here.append(part)
        key = "/".join(here)
        target = links.get(key)
        if target is None:
            continue
        hops += 1
        via = f"{key} -> {target}"
        if target.startswith("/") or hops > MAX_SYMLINK_HOPS:
            return via
        here.pop()
        todo.extend(reversed(target.split("/")))
    return None


def check_members(members: Iterable[Member]) -> list[Refusal]:
    """Every member that would be written outside the root, with the reason.

    Members are taken in archive order: a symlink only matters to the members after it, and
    a later member of the same name replaces it (tar unlinks before it creates).
    """
    links: dict[str, str] = {}  # path -> target of the symlinks extracted so far
    seen: set[str] = set()
    refused: list[Refusal] = []
    for m in members:
        reason = _path_problem(m.name) or _through(links, m.name)
        if reason is None and m.kind is MemberKind.hardlink:
            assert m.target is not None
            reason = _link_problem(links, seen, m.target)
        if reason is not None:
            refused.append(Refusal(m.name, reason))
            continue
        key = "/".join(_parts(m.name))
        seen.add(key)
        if m.kind is MemberKind.symlink:
            assert m.target is not None
            links[key] = m.target
        else:
            links.pop(key, None)
    return refused


def _path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "an absolute path"
    if ".." in path.split("/"):
        return "a '..' component"
    return None


def _through(links: dict[str, str], path: str) -> str | None:
    # the last component is created (or replaced), never followed
    escape = _walk(links, _parts(path)[:-1])
    return f"goes through the symlink {escape}, which leads out of the root" if escape else None


def _link_problem(links: dict[str, str], seen: set[str], target: str) -> str | None:
    bad = _path_problem(target)
    if bad is not None:
        return f"a hard link to {target} ({bad})"
    escape = _walk(links, _parts(target)[:-1])
    if escape is not None:
        return f"a hard link to {target}, through the symlink {escape}, out of the root"
    if "/".join(_parts(target)) not in seen:
        return f"a hard link to {target}, which no earlier member of the archive is"
    return None
