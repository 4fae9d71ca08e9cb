"""Where a lineage operation runs: a target opened to its backend, lineage root and pool.

``open_site("zfs://tank/sys/g2")`` senses the backend, finds the lineage root (a target
naming a generation, by its ``gN`` name or its ``g2d:gen`` key, belongs to the lineage of
its parent; anything else is the root itself) and the pool whose lock a writer takes. The
CLI and the Prefect flows open targets the same way, so both take the same lock and keep
the same journal.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.core.lineage import GenName, Lineage, Meta
from g2d.core.uri import Target, parse_target
from g2d.hosts.base import Host
from g2d.storage.base import Backend, NotFound
from g2d.storage.lineage_run import LineageWriter


class RemoteLineage(G2dUserError):
    """A remote target needs an ssh host g2d has configured; none is wired in yet."""


def root_of(name: str) -> str:
    """The lineage that holds the volume ``name`` (its parent)."""
    return posixpath.dirname(name) if name.startswith("/") else name.rpartition("/")[0]


def is_generation(backend: Backend, name: str) -> bool:
    """``name`` is a generation: named ``gN``, or a volume carrying ``g2d:gen``."""
    if GenName.find(name.rstrip("/").rpartition("/")[2]) is not None:
        return True
    try:
        return Meta.gen in backend.volume(name).meta
    except NotFound:
        return False  # a directory that holds volumes, or nothing yet


@dataclass(frozen=True)
class LineageSite:
    """One lineage on one backend, and the pool a writer to it must lock."""

    target: Target
    backend: Backend
    root: str  # the lineage: volumes directly below this
    generation: str | None  # the volume the target names, when it names a generation
    pool: str  # lock key: a ZFS pool, or the mount point of a path
    state_dir: Path  # g2d's state: the pool's lock and journal live here

    @property
    def host_name(self) -> str:
        return self.backend.host.name

    def writer(self, wait: float = 0.0) -> LineageWriter:
        return LineageWriter(self.backend, self.root, self.pool, self.state_dir, wait)

    def load(self) -> Lineage:
        from g2d.storage.lineage import load_lineage

        return load_lineage(self.backend, self.root)


def open_site(text: str, *, host: Host | None = None, state_dir: Path | None = None) -> LineageSite:
    """The site of ``text`` (a target URI or name); local targets only for now."""
    from g2d.storage.sense import backend_for, pool_of

    target = parse_target(text)
    if target.is_remote:
        raise RemoteLineage(
            f"{target}: remote lineages are not wired in yet",
            hint="use g2d.storage.lineage with an SshHost, or run g2d on that host",
        )
    if host is None:
        from g2d.hosts.local import LocalHost

        host = LocalHost()
    if state_dir is None:
        from g2d.settings import load_settings

        state_dir = load_settings().state_dir
    backend = backend_for(target, host)
    name = target.name.rstrip("/") or target.name
    generation = name if is_generation(backend, name) else None
    root = root_of(name) if generation else name
    return LineageSite(target, backend, root, generation, pool_of(backend, root), state_dir)
