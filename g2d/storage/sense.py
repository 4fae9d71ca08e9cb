"""Which backend holds a target, and which pool a writer must lock.

The URI scheme decides when there is one (``zfs://``, ``btrfs://``, ``dir://``). A bare
absolute path is btrfs when its file system is (``stat -f -c %T``), else plain; a bare
``pool/set`` is ZFS when ``zfs list`` knows it (or its nearest existing parent).
"""

from __future__ import annotations

import importlib
import posixpath

from g2d.core.errors import CommandNotFound, InvalidTarget
from g2d.core.uri import Backend as Scheme
from g2d.core.uri import Target
from g2d.hosts.base import Host
from g2d.storage.base import Backend, BackendKind

_BY_SCHEME = {Scheme.zfs: BackendKind.zfs, Scheme.btrfs: BackendKind.btrfs,
              Scheme.dir: BackendKind.plain}  # fmt: skip


def backend_class(kind: BackendKind) -> type[Backend]:
    importlib.import_module(f"g2d.storage.{kind.value}")  # registers the implementation
    return Backend.registry[kind]


def sense_kind(target: Target, host: Host) -> BackendKind:
    if not target.backend.is_sensed():
        return _BY_SCHEME[target.backend]
    if target.is_path:
        fs = _existing(host, target.name, ["stat", "-f", "-c", "%T"])
        return BackendKind.btrfs if fs == "btrfs" else BackendKind.plain
    if _zfs_knows(host, target.name):
        return BackendKind.zfs
    raise InvalidTarget(
        str(target),
        "no ZFS dataset of that name (or of a parent) exists",
        hint="write zfs://, btrfs:// or dir://, or an absolute path",
    )


def backend_for(target: Target, host: Host) -> Backend:
    """The backend that holds ``target``, driving its tool on ``host``."""
    return backend_class(sense_kind(target, host))(host)


def pool_of(backend: Backend, name: str) -> str:
    """The writer lock's key: the ZFS pool, or the mount point holding a path."""
    if backend.kind is BackendKind.zfs:
        return name.split("/", 1)[0]
    return _existing(backend.host, name, ["stat", "-c", "%m"])


def _existing(host: Host, path: str, argv: list[str]) -> str:
    """``argv + [path]`` on the nearest existing ancestor of ``path`` (it may not exist yet)."""
    while True:
        done = host.run([*argv, "--", path], check=False)
        if done.returncode == 0:
            return done.stdout.strip()
        if path == "/":
            return ""
        path = posixpath.dirname(path) or "/"


def _zfs_knows(host: Host, name: str) -> bool:
    while name:
        try:
            done = host.run(["zfs", "list", "-H", "-o", "name", name], check=False)
        except CommandNotFound:
            return False
        if done.returncode == 0:
            return True
        name = name.rpartition("/")[0]
    return False
