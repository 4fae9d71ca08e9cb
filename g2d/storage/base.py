"""The storage contract: where system roots live, on any host.

A *volume* is a ZFS dataset, a btrfs subvolume or a plain directory; it is named by a
dataset name (``pool/sys/g1``) on ZFS and by an absolute path (``/srv/sys/g1``) on btrfs
and plain. A snapshot is ``SnapRef(volume, name)``, printed ``volume@name`` everywhere.
On btrfs and plain, the snapshots of ``<dir>/<vol>`` live under ``<dir>/.g2d-snap/``: a
reflinked or copied directory ``<vol>@<name>`` on plain; on btrfs a read-only subvolume
``<vol>@<name>/<name>`` inside a plain directory of its own, because the kernel refuses to
move a read-only subvolume to another directory (rename, promote and receive move the home).

Metadata keys are ``g2d:<name>`` (lowercase ``[a-z0-9_.-]``): ZFS user properties as they
are; ``user.g2d.<name>`` xattrs on the volume's top directory on btrfs and plain, so they
travel with send/receive and tar.

Queries run read-only commands at once. Every change is returned as a ``Plan`` first
(``*_plan`` methods, pure given the state they read) and run by ``apply``; a dry run
prints the plan instead. Implementations register under their ``BackendKind``.
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from g2d.core.errors import G2dUserError
from g2d.core.plan import Plan
from g2d.hosts.base import Host
from g2d.hosts.pipeline import Stage

META_KEY = re.compile(r"g2d:[a-z0-9_.-]+")


class BackendKind(enum.StrEnum):
    zfs = enum.auto()
    btrfs = enum.auto()
    plain = enum.auto()

    def has_cheap_snapshots(self) -> bool:
        return self in (BackendKind.zfs, BackendKind.btrfs)

    def names_are_paths(self) -> bool:
        return self is not BackendKind.zfs


class StorageError(G2dUserError):
    """A storage operation refused or failed; names the volume and what is wrong."""


class NotFound(StorageError):
    def __init__(self, name: str, *, hint: str | None = None) -> None:
        super().__init__(f"{name} does not exist", hint=hint)
        self.name = name


class AlreadyExists(StorageError):
    def __init__(self, name: str, *, hint: str | None = None) -> None:
        super().__init__(f"{name} already exists", hint=hint)
        self.name = name


class HasDependents(StorageError):
    """A destroy would take other volumes or snapshots with it, or hits a hold."""

    def __init__(self, name: str, dependents: Sequence[str], *, hint: str | None = None) -> None:
        listed = ", ".join(dependents)
        super().__init__(
            f"{name} has dependents: {listed}",
            hint=hint or "nothing was destroyed; pass force to destroy them too (plan shown first)",
        )
        self.name = name
        self.dependents = tuple(dependents)


class Unsupported(StorageError):
    """The backend (or this host's version of its tool) cannot do what was asked."""


@dataclass(frozen=True, slots=True)
class SnapRef:
    volume: str
    name: str

    def __post_init__(self) -> None:
        if not self.volume or not self.name or "@" in self.name or "/" in self.name:
            raise StorageError(f"invalid snapshot reference {self.volume!r}@{self.name!r}")

    @classmethod
    def parse(cls, text: str) -> SnapRef:
        volume, sep, name = text.rpartition("@")
        if not sep:
            raise StorageError(f"{text!r} names no snapshot (expected volume@name)")
        return cls(volume, name)

    def __str__(self) -> str:
        return f"{self.volume}@{self.name}"


@dataclass(frozen=True)
class Caps:
    """What this backend can do on this host, probed from the real tool."""

    version: str
    resumable_send: bool = False
    raw_send: bool = False
    bookmarks: bool = False
    encryption: bool = False
    compression: tuple[str, ...] = ()
    list_holds: bool = False  # zfs-fuse can hold but not list; tags are kept in metadata
    atomic_snapshots: bool = False  # several volumes in one atomic snapshot
    reflink: bool = False  # plain: copies share blocks
    incremental_send: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    origin: SnapRef | None  # the snapshot it was cloned from, where the backend knows
    used: int | None  # bytes, where the backend can say
    mountpoint: str | None
    meta: Mapping[str, str]


@dataclass(frozen=True)
class SnapshotInfo:
    ref: SnapRef
    guid: str  # identity that survives send/receive (ZFS guid, btrfs received/own uuid)
    created: int  # epoch seconds
    used: int | None
    meta: Mapping[str, str]
    holds: frozenset[str]
    clones: tuple[str, ...]  # volumes cloned from it, where the backend knows


class Backend(ABC):
    """One storage backend driving its tool on one host."""

    kind: ClassVar[BackendKind]
    registry: ClassVar[dict[BackendKind, type[Backend]]] = {}

    def __init_subclass__(cls, kind: BackendKind | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if kind is not None:
            cls.kind = kind
            Backend.registry[kind] = cls

    def __init__(self, host: Host) -> None:
        self.host = host

    # capabilities

    @cached_property
    def caps(self) -> Caps:
        return self.probe_caps()

    @abstractmethod
    def probe_caps(self) -> Caps:
        """Ask the real tool; never assume."""

    # queries

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def volume(self, name: str) -> VolumeInfo:
        """Raises NotFound."""

    @abstractmethod
    def volumes(self, root: str) -> list[VolumeInfo]:
        """``root`` and every volume below it, parents first."""

    @abstractmethod
    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """Snapshots of one volume, oldest first."""

    def listing(
        self, root: str, *, clones: bool = True
    ) -> tuple[list[VolumeInfo], list[SnapshotInfo]]:
        """``volumes(root)`` and the snapshots of the volumes directly below ``root``;
        ``([], [])`` when ``root`` is missing. A backend that can read it all at once
        overrides this (ZFS: one round of commands, not one per generation). ``clones``
        False: a backend may leave ``SnapshotInfo.clones`` empty where listing them costs
        another command (ZFS: the pool's clones), for a reader that does not look at them."""
        volumes = self.volumes(root)
        members = [v for v in volumes if v.name.rpartition("/")[0] == root.rstrip("/")]
        return volumes, [s for v in members for s in self.snapshots(v.name)]

    def snapshot(self, ref: SnapRef) -> SnapshotInfo:
        for info in self.snapshots(ref.volume):
            if info.ref == ref:
                return info
        raise NotFound(str(ref))

    @abstractmethod
    def get_meta(self, name: str | SnapRef) -> dict[str, str]:
        """The ``g2d:*`` metadata of a volume or snapshot."""

    @abstractmethod
    def mountpoint(self, name: str) -> str | None: ...

    # plans

    @abstractmethod
    def create_plan(self, name: str, meta: Mapping[str, str] | None = None) -> Plan: ...

    @abstractmethod
    def destroy_plan(self, target: str | SnapRef, *, force: bool = False) -> Plan:
        """Raises HasDependents unless ``force``; with force the plan destroys them too."""

    @abstractmethod
    def snapshot_plan(
        self, names: Sequence[str], snap: str, meta: Mapping[str, str] | None = None
    ) -> Plan:
        """One snapshot name across volumes; atomic where ``caps.atomic_snapshots``."""

    @abstractmethod
    def clone_plan(
        self, ref: SnapRef, name: str, meta: Mapping[str, str] | None = None
    ) -> Plan: ...

    @abstractmethod
    def promote_plan(self, name: str) -> Plan: ...

    @abstractmethod
    def rename_plan(self, old: str, new: str) -> Plan: ...

    @abstractmethod
    def rollback_plan(self, ref: SnapRef, *, destroy_newer: bool = False) -> Plan:
        """Back to ``ref``; refuses when newer snapshots exist unless ``destroy_newer``."""

    @abstractmethod
    def set_meta_plan(self, target: str | SnapRef, items: Mapping[str, str | None]) -> Plan:
        """Set keys; a None value removes the key."""

    def known_meta_plan(self, name: str, items: Mapping[str, str]) -> Plan:
        """``set_meta_plan`` for a volume the caller has just read (so it exists): a backend
        whose plan needs no read of its own skips it (ZFS: a round trip less)."""
        return self.set_meta_plan(name, items)

    @abstractmethod
    def hold_plan(self, ref: SnapRef, tag: str) -> Plan: ...

    @abstractmethod
    def release_plan(self, ref: SnapRef, tag: str) -> Plan: ...

    @abstractmethod
    def mount_plan(self, name: str, *, readonly: bool = False) -> Plan: ...

    @abstractmethod
    def unmount_plan(self, name: str) -> Plan: ...

    # streams

    @abstractmethod
    def send_stage(self, ref: SnapRef, *, base: SnapRef | None = None) -> Stage:
        """A pipeline stage writing a stream of ``ref`` (incremental from ``base``)."""

    @abstractmethod
    def receive_stage(self, name: str, *, force: bool = False) -> Stage:
        """A pipeline stage reading a stream into ``name``; never over an existing volume
        unless ``force``, except an incremental stream into the replica it continues."""

    @abstractmethod
    def finish_receive(self, name: str, sent: SnapshotInfo) -> SnapshotInfo:
        """After a receive: check the post-condition (the snapshot exists and is the one
        sent), or clean up what a cut-off receive left and raise."""

    # running plans

    def apply(self, plan: Plan) -> None:
        from g2d.storage.apply import apply_plan

        apply_plan(plan, {self.host.name: self.host})


def check_meta_keys(items: Mapping[str, object]) -> None:
    bad = [k for k in items if not META_KEY.fullmatch(k)]
    if bad:
        raise StorageError(f"invalid metadata keys {bad!r}", hint="keys look like g2d:parent")
