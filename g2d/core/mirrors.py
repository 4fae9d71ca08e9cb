"""Mirror lists and the choice of a mirror: pure logic, no I/O.

A list holds one URL per line (``http(s)://``, ``rsync://``, ``ssh://user@host/path``,
``file:///path``; ``ftp://`` is read but no g2d transport fetches it). ``#`` starts a comment
(a whole line, or after the URL and a blank); blank lines are skipped; anything else is an
error naming the list, the line number and the text.

Choosing works like the old ``mirror.sh <list> <protocol> [<profile>]``, minus its defects
(spec §2.2): candidates are ranked by measured health instead of shuffled, ``http`` also
takes ``https`` lines, the configured arch is used, and no match is an error instead of an
empty answer that callers turned into broken URLs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from g2d.core.errors import G2dUserError

MIRROR_SCHEMES = frozenset({"http", "https", "ftp", "rsync", "ssh", "file"})
HEALTH_TTL = timedelta(days=1)  # an older measurement says nothing about the mirror today


class Resource(enum.StrEnum):
    """A part of the dom0 tree that g2d fetches from mirrors."""

    releases = enum.auto()
    repos = enum.auto()
    snapshots = enum.auto()
    distfiles = enum.auto()
    binpkgs = enum.auto()
    kernels = enum.auto()
    patchfiles = enum.auto()
    meta = enum.auto()
    packages = enum.auto()

    def is_site_specific(self) -> bool:
        """Gentoo publishes no such tree; only a site's own dom0 serves it."""
        return self in (Resource.kernels, Resource.patchfiles, Resource.meta, Resource.packages)


# The old tool's list file names (config/mirrors/<name>), read as their resource.
OLD_LIST_NAMES = {
    "binpkg": Resource.binpkgs,
    "kernel": Resource.kernels,
    "package": Resource.packages,
}


class Protocol(enum.StrEnum):
    """What ``g2d mirror <type> <protocol>`` asks for."""

    any = enum.auto()
    http = enum.auto()
    https = enum.auto()
    ftp = enum.auto()
    rsync = enum.auto()
    ssh = enum.auto()
    file = enum.auto()

    def accepts(self, url: str) -> bool:
        scheme = urlsplit(url).scheme
        if self is Protocol.any:
            return True
        if self is Protocol.http:  # plain http is asked for by habit; TLS serves it as well
            return scheme in ("http", "https")
        return scheme == self.value


class MirrorListError(G2dUserError):
    """A mirror list line that is not a mirror URL."""

    def __init__(self, source: str, line: int, text: str, reason: str) -> None:
        super().__init__(source, line, text, reason, hint="one URL per line; '#' starts a comment")
        self.source, self.line, self.text, self.reason = source, line, text, reason

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text!r} is not a mirror URL: {self.reason}"


class NoMirror(G2dUserError):
    """No mirror of the list serves the asked protocol."""

    def __init__(self, resource: str, protocol: str, have: Sequence[str]) -> None:
        schemes = sorted({urlsplit(u).scheme for u in have})
        hint = (
            f"its mirrors offer: {', '.join(schemes)}"
            if schemes
            else f"add one to the mirror list or set G2D_MIRRORS__{resource.upper()}"
        )
        super().__init__(resource, protocol, tuple(have), hint=hint)
        self.resource, self.protocol = resource, protocol

    def __str__(self) -> str:
        return f"no {self.protocol} mirror for {self.resource}"


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a mirror URL, or None if it is one."""
    parts = urlsplit(url)
    if parts.scheme not in MIRROR_SCHEMES:
        return f"the scheme must be one of {', '.join(sorted(MIRROR_SCHEMES))}"
    if parts.scheme == "file" and not parts.path.startswith("/"):
        return "file:// needs an absolute path"
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        return "file:// names no host; use ssh:// for another machine"
    if parts.scheme != "file" and not parts.hostname:
        return "it names no host"
    return None


def check_mirror_url(url: str) -> str:
    """``url`` if it is a mirror URL; else ValueError saying why (the settings' validator)."""
    problem = url_problem(url)
    if problem:
        raise ValueError(f"{url!r} is not a mirror URL: {problem}")
    return url


def parse_mirror_list(text: str, source: str) -> tuple[str, ...]:
    """The URLs of a list file, in order, each once."""
    found: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if len(line.split()) > 1:
            raise MirrorListError(source, number, line, "one URL per line")
        problem = url_problem(line)
        if problem:
            raise MirrorListError(source, number, line, problem)
        if line not in found:
            found.append(line)
    return tuple(found)


def list_resource(name: str) -> Resource | None:
    """The resource a list file is named for (``repos``, or the old ``kernel``), else None."""
    if name in Resource.__members__:
        return Resource(name)
    return OLD_LIST_NAMES.get(name)


@dataclass(frozen=True, slots=True)
class Health:
    """One measurement of a mirror. ``fresh_as_of``: the time its timestamp file states."""

    url: str
    checked: datetime
    reachable: bool
    latency: float | None = None  # seconds the probe took, when reachable
    fresh_as_of: datetime | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.checked.tzinfo is None:
            raise ValueError(f"health of {self.url}: checked time {self.checked} has no zone")
        if self.latency is not None and self.latency < 0:
            raise ValueError(f"health of {self.url}: negative latency {self.latency}")

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "checked": self.checked.isoformat(),
            "reachable": self.reachable,
            "latency": self.latency,
            "fresh_as_of": self.fresh_as_of.isoformat() if self.fresh_as_of else None,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Health:
        fresh = data.get("fresh_as_of")
        return cls(
            url=str(data["url"]),
            checked=datetime.fromisoformat(data["checked"]),
            reachable=bool(data["reachable"]),
            latency=None if data.get("latency") is None else float(data["latency"]),
            fresh_as_of=datetime.fromisoformat(fresh) if fresh else None,
            error=data.get("error"),
        )


def rank(
    urls: Iterable[str],
    health: Mapping[str, Health],
    *,
    now: datetime,
    ttl: timedelta = HEALTH_TTL,
) -> list[str]:
    """Best first: reachable, then unmeasured, then unreachable; within those the freshest
    timestamp, then the lowest latency, then list order. Measurements older than ``ttl``
    count as none, so a mirror that was down yesterday gets its chance again."""
    ordered = list(dict.fromkeys(urls))

    def key(item: tuple[int, str]) -> tuple[int, float, float, int]:
        position, url = item
        h = health.get(url)
        if h is None or now - h.checked > ttl:
            return (1, 0.0, 0.0, position)
        if not h.reachable:
            return (2, 0.0, 0.0, position)
        fresh = -h.fresh_as_of.timestamp() if h.fresh_as_of else 0.0  # unknown sorts last
        latency = h.latency if h.latency is not None else float("inf")
        return (0, fresh, latency, position)

    return [url for _, url in sorted(enumerate(ordered), key=key)]


def candidates(
    resource: Resource | str,
    urls: Sequence[str],
    protocol: Protocol | str,
    health: Mapping[str, Health],
    *,
    now: datetime,
    ttl: timedelta = HEALTH_TTL,
) -> list[str]:
    """The list's mirrors of ``protocol``, ranked; NoMirror if there is none."""
    proto = Protocol(protocol)
    usable = [u for u in urls if proto.accepts(u)]
    if not usable:
        raise NoMirror(str(resource), str(proto), urls)
    return rank(usable, health, now=now, ttl=ttl)


def join(base: str, relative: str) -> str:
    """``relative`` under the mirror ``base`` (which may or may not end in '/')."""
    return base.rstrip("/") + "/" + relative.lstrip("/")


def stage3_pointer(base: str, arch: str, variant: str) -> str:
    """Where a releases mirror names the latest stage3 of ``arch`` and ``variant``: its
    (signed) ``latest-stage3-<arch>-<variant>.txt``, not a guess from a directory listing."""
    return join(base, f"{arch}/autobuilds/latest-stage3-{arch}-{variant}.txt")


# What a mirror of each resource carries that tells it is there and how fresh it is.
PROBE_FILES: Mapping[Resource, str] = {
    Resource.repos: "metadata/timestamp.chk",  # RFC 2822 time of the tree, as Portage reads it
    Resource.releases: "{arch}/autobuilds/latest-stage3.txt",  # its `# ts=` header
    Resource.binpkgs: "Packages",  # its TIMESTAMP header
    Resource.distfiles: "layout.conf",  # present on every GLEP 75 mirror; states no time
    Resource.snapshots: "gentoo-latest.tar.xz.md5sum",  # small, always there; no time
}


def probe_path(resource: Resource, arch: str) -> str:
    """The file a health probe fetches ('' for the directory itself)."""
    return PROBE_FILES.get(resource, "").format(arch=arch)


class BadTimestamp(G2dUserError):
    """A timestamp file that does not hold the time it should."""

    def __init__(self, source: str, text: str, expected: str) -> None:
        super().__init__(
            source, text, expected, hint="the mirror serves a damaged tree; use another"
        )
        self.source, self.text, self.expected = source, text, expected

    def __str__(self) -> str:
        return f"{self.source}: {self.text!r} is not a time like {self.expected!r}"


TIMESTAMP_CHK_FORMAT = "%a, %d %b %Y %H:%M:%S +0000"  # Portage's TIMESTAMP_FORMAT
TIMESTAMP_CHK_EXAMPLE = "Mon, 20 May 2024 00:40:01 +0000"


def parse_timestamp_chk(text: str, source: str = "metadata/timestamp.chk") -> datetime:
    """The UTC time in a repository's ``metadata/timestamp.chk`` (first line)."""
    first = text.splitlines()[0].strip() if text.strip() else ""
    try:
        return datetime.strptime(first, TIMESTAMP_CHK_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise BadTimestamp(source, first, TIMESTAMP_CHK_EXAMPLE) from None


_TS_HEADER = re.compile(r"^# ts=(\d+)\s*$", re.MULTILINE)
_PACKAGES_TIMESTAMP = re.compile(r"^TIMESTAMP: (\d+)\s*$", re.MULTILINE)


def freshness_of(resource: Resource, text: str, source: str) -> datetime | None:
    """The time a probe file states, if its resource's files state one. For ranking only:
    a release's ``# ts=`` is read without checking its signature, which the fetch does."""
    if resource is Resource.repos:
        return parse_timestamp_chk(text, source)
    if resource is Resource.releases:
        found = _TS_HEADER.search(text)
    elif resource is Resource.binpkgs:
        found = _PACKAGES_TIMESTAMP.search(text.split("\n\n", 1)[0])  # the header block only
    else:
        return None
    if not found:
        raise BadTimestamp(
            source,
            text.strip()[:60],
            "# ts=<unix time>" if resource is Resource.releases else "TIMESTAMP: <unix time>",
        )
    return datetime.fromtimestamp(int(found[1]), UTC)
