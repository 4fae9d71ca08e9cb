"""Plain volumes: generations as directories on any file system (ext4, xfs, btrfs, ...).

Everything runs as commands on ``self.host`` (``cp``, ``mv``, ``rm``, ``tar``,
``getfattr``/``setfattr``), so a remote host over ssh works like this one. The layout and
the xattr names are in ``plain_layout``; docs/storage-plain.md says what plain can and
cannot promise compared with ZFS and btrfs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence

from g2d.core.plan import Plan
from g2d.hosts.base import Host
from g2d.hosts.pipeline import Stage
from g2d.storage import plain_attrs as xa
from g2d.storage import plain_moves, plain_receive
from g2d.storage.base import (
    AlreadyExists,
    Backend,
    BackendKind,
    Caps,
    NotFound,
    SnapRef,
    SnapshotInfo,
    StorageError,
    Unsupported,
    VolumeInfo,
    check_meta_keys,
)
from g2d.storage.plain_layout import (
    CREATED,
    GUID,
    HOLD_PREFIX,
    ORIGIN,
    OWN_PREFIX,
    SNAPKEYS,
    VOLUME,
    VolPath,
    check_snap_name,
    check_tag,
    meta_to_xattr,
    snap_path,
)
from g2d.storage.plain_query import PlainReader, user_meta
from g2d.storage.plain_steps import Steps
from g2d.storage.plain_stream import Header, send_argv


def _user(meta: Mapping[str, str]) -> dict[str, str]:
    return {meta_to_xattr(k): v for k, v in meta.items()}


class PlainBackend(Backend, kind=BackendKind.plain):
    """``root``: where ``caps`` probes reflink support (a host has many file systems)."""

    def __init__(self, host: Host, root: str | None = None) -> None:
        super().__init__(host)
        self.root = root
        self.read = PlainReader(host)
        self._reflink: dict[str, bool] = {}

    # capabilities

    def probe_caps(self) -> Caps:
        tar = self.read.version("tar")
        extra = {
            "gnu_tar": "GNU tar" in tar,
            "cp": self.read.version("cp"),
            "attr": self.read.version("getfattr"),
            "incremental": "whole tree with a base check; see docs/storage-plain.md",
            "reflink_probed_at": self.root,
        }
        return Caps(
            version=tar,
            list_holds=True,
            reflink=self.reflink_at(self.root) if self.root else False,
            incremental_send=True,
            extra=extra,
        )

    def reflink_at(self, directory: str) -> bool:
        """Whether copies in ``directory`` share blocks; probed once per directory."""
        if directory not in self._reflink:
            self._reflink[directory] = self.read.reflink_at(directory)
        return self._reflink[directory]

    # queries

    def exists(self, name: str) -> bool:
        return self.read.is_there(VolPath(name).path)

    def volume(self, name: str) -> VolumeInfo:
        self.read.require(name)
        return self.read.volume_info(name, self.read.attrs(name))

    def volumes(self, root: str) -> list[VolumeInfo]:
        return self.read.volumes(root)

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        return self.read.snapshots(name)

    def get_meta(self, name: str | SnapRef) -> dict[str, str]:
        if isinstance(name, SnapRef):
            return user_meta(self.read.snapshot_attrs(name))
        self.read.require(name)
        return user_meta(self.read.attrs(name))

    def mountpoint(self, name: str) -> str | None:
        self.read.require(name)
        return name  # a directory is always where it is

    # plans

    def _steps(self) -> Steps:
        return Steps(self.host.name)

    def new_volume(self, name: str) -> VolPath:
        vp = VolPath(name)
        if self.read.is_there(name):
            raise AlreadyExists(name)
        if not self.read.is_dir(vp.parent):
            raise NotFound(vp.parent, hint="create the directory that holds the volumes first")
        return vp

    def create_plan(self, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        check_meta_keys(meta or {})
        vp = self.new_volume(name)
        s = self._steps()
        s.snapdir(vp)
        s.build(None, vp.work("vol"), name, {VOLUME: "1", **_user(meta or {})}, (), name)
        return Plan.of(f"create {name}", s.steps)

    def snapshot_plan(
        self, names: Sequence[str], snap: str, meta: Mapping[str, str] | None = None
    ) -> Plan:
        meta = dict(meta or {})
        check_meta_keys(meta)
        check_snap_name(snap)
        s = self._steps()
        for name in names:
            vp = self.read.require(name)
            if self.read.is_there(vp.snap(snap)):
                raise AlreadyExists(f"{name}@{snap}")
            # the volume's own bookkeeping (origin, rollback marks) is not the snapshot's
            drop = [k for k in self.read.attrs(name) if k.startswith(OWN_PREFIX) and k != VOLUME]
            own = {
                GUID: secrets.token_hex(16),
                CREATED: str(time.time_ns()),  # the plan's time: plans are applied at once
                **({SNAPKEYS: ",".join(sorted(meta))} if meta else {}),
                **_user(meta),
            }
            s.snapdir(vp)
            s.build(name, vp.work("part", snap), vp.snap(snap), own, drop, f"{name}@{snap}")
        return Plan.of(f"snapshot {', '.join(names)} as @{snap} (one at a time)", s.steps)

    def clone_plan(self, ref: SnapRef, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        check_meta_keys(meta or {})
        attrs = self.read.snapshot_attrs(ref)
        vp = self.new_volume(name)
        # a clone starts with the metadata it is given, like a ZFS clone
        drop = [k for k in attrs if k != VOLUME]
        set_ = {VOLUME: "1", ORIGIN: str(ref), **_user(meta or {})}
        s = self._steps()
        s.snapdir(vp)
        s.build(snap_path(ref), vp.work("vol"), name, set_, drop, f"clone {name}")
        return Plan.of(f"clone {ref} as {name}", s.steps)

    def set_meta_plan(self, target: str | SnapRef, items: Mapping[str, str | None]) -> Plan:
        check_meta_keys(items)
        if isinstance(target, SnapRef):
            path, attrs = snap_path(target), self.read.snapshot_attrs(target)
        else:
            path = self.read.require(target).path
            attrs = self.read.attrs(path)
        set_ = {meta_to_xattr(k): v for k, v in items.items() if v is not None}
        drop = [meta_to_xattr(k) for k, v in items.items() if v is None]
        if isinstance(target, SnapRef):  # remember which keys are the snapshot's own
            keys = set(filter(None, attrs.get(SNAPKEYS, "").split(",")))
            keys = (keys | {k for k, v in items.items() if v is not None}) - {
                k for k, v in items.items() if v is None
            }
            if keys:
                set_[SNAPKEYS] = ",".join(sorted(keys))
            elif SNAPKEYS in attrs:
                drop.append(SNAPKEYS)
        s = self._steps()
        s.attrs(path, set_, drop, None, str(target))
        return Plan.of(f"set metadata on {target}", s.steps)

    def hold_plan(self, ref: SnapRef, tag: str) -> Plan:
        check_tag(tag)
        self.read.snapshot_attrs(ref)
        path, name = snap_path(ref), HOLD_PREFIX + tag
        s = self._steps()
        s.add(xa.set_argv(path, name, "1"), f"hold {ref} ({tag})", done_if=xa.has_argv(path, name))
        return Plan.of(f"hold {ref} as {tag}", s.steps)

    def release_plan(self, ref: SnapRef, tag: str) -> Plan:
        check_tag(tag)
        path, name = snap_path(ref), HOLD_PREFIX + tag
        if name not in self.read.snapshot_attrs(ref):
            raise StorageError(f"{ref} has no hold {tag}", hint="see the snapshot's holds")
        s = self._steps()
        s.add(xa.remove_argv(path, name), f"release {ref} ({tag})", xa.absent_argv(path, name))
        return Plan.of(f"release {tag} on {ref}", s.steps)

    def destroy_plan(self, target: str | SnapRef, *, force: bool = False) -> Plan:
        return plain_moves.destroy_plan(self, target, force=force)

    def rollback_plan(self, ref: SnapRef, *, destroy_newer: bool = False) -> Plan:
        return plain_moves.rollback_plan(self, ref, destroy_newer=destroy_newer)

    def promote_plan(self, name: str) -> Plan:
        return plain_moves.promote_plan(self, name)

    def rename_plan(self, old: str, new: str) -> Plan:
        return plain_moves.rename_plan(self, old, new)

    def mount_plan(self, name: str, *, readonly: bool = False) -> Plan:
        """A directory needs no mount; read-only is a read-only bind mount onto itself."""
        self.read.require(name)
        s = self._steps()
        if readonly:
            mounted = ["findmnt", "--mountpoint", name]
            s.add(["mount", "--bind", "--", name, name], f"bind {name} onto itself", mounted)
            s.add(["mount", "-o", "remount,bind,ro", "--", name], f"make {name} read-only")
        return Plan.of(f"mount {name}" + (" read-only" if readonly else ""), s.steps)

    def unmount_plan(self, name: str) -> Plan:
        self.read.require(name)
        s = self._steps()
        if self.host.run(["findmnt", "--mountpoint", name], check=False).ok:
            not_mounted = [
                "find", name, "-maxdepth", "0",
                "-exec", "mountpoint", "-q", "--", "{}", ";", "-exec", "false", "{}", "+",
            ]  # fmt: skip
            s.add(["umount", "--", name], f"remove the bind mount on {name}", not_mounted)
        return Plan.of(f"unmount {name}", s.steps)

    # streams

    def send_stage(self, ref: SnapRef, *, base: SnapRef | None = None) -> Stage:
        order = [i.ref for i in self.snapshots(ref.volume)]
        if ref not in order:
            raise NotFound(str(ref))
        if not self.caps.extra.get("gnu_tar"):
            raise Unsupported(
                f"{self.host.name}: plain streams need GNU tar, found {self.caps.version!r}"
            )
        header = Header(None)
        if base is not None:
            start = self.snapshot(base)
            earlier = base in order and order.index(base) < order.index(ref)
            if not earlier and self.volume(ref.volume).origin != base:
                raise StorageError(
                    f"{base} is neither an earlier snapshot of {ref.volume} nor its origin",
                    hint="send with a base the snapshot descends from",
                )
            header = Header(start.guid)
        vp = VolPath(ref.volume)
        return Stage.of(self.host, send_argv(vp.snapdir, f"{vp.leaf}@{ref.name}", header))

    def receive_stage(self, name: str, *, force: bool = False, foreign: bool = False) -> Stage:
        """``foreign``: a ZFS or btrfs snapshot's tree (``tree_send``), stamped on arrival."""
        return plain_receive.receive_stage(self, name, force=force, foreign=foreign)

    def finish_receive(self, name: str, sent: SnapshotInfo) -> SnapshotInfo:
        return plain_receive.finish_receive(self, name, sent)
