"""The btrfs backend: volumes are subvolumes named by absolute paths, snapshots read-only.

Every query reads the file system through ``btrfs_scan`` (three commands); every change is
a plan of ``btrfs``/``setfattr``/``mv`` commands run through ``self.host``, so the same code
works on this machine and over ssh. Layout and metadata: ``btrfs_layout``; the choices and
the btrfs facts behind them: docs/storage-btrfs.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from g2d.core.plan import Plan, Step
from g2d.hosts.base import Host
from g2d.hosts.pipeline import Stage
from g2d.storage.base import (
    AlreadyExists,
    Backend,
    BackendKind,
    Caps,
    HasDependents,
    NotFound,
    SnapRef,
    SnapshotInfo,
    StorageError,
    Unsupported,
    VolumeInfo,
    check_meta_keys,
)
from g2d.storage.btrfs_caps import probe_btrfs
from g2d.storage.btrfs_destroy import teardown
from g2d.storage.btrfs_layout import (
    HOLD,
    ORIGIN,
    SNAP_META,
    VOL_META,
    aside_path,
    check_hold_tag,
    check_volume_name,
    is_volume_path,
    meta_attr,
    meta_of,
    overlay,
    parent_dir,
    snap_dir,
    snap_home,
    snap_path,
)
from g2d.storage.btrfs_receive import Receiver
from g2d.storage.btrfs_scan import Scan, Subvol, read_scan
from g2d.storage.btrfs_steps import Steps


class BtrfsBackend(Backend, kind=BackendKind.btrfs):
    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.steps = Steps(host.name)
        self.receiver = Receiver(self)

    def probe_caps(self) -> Caps:
        return probe_btrfs(self.host)

    # reading

    def scan(self, name: str) -> Scan:
        """The file system holding volume ``name``; NotFound if its directory is missing."""
        check_volume_name(name)
        anchor = parent_dir(name)
        try:
            return read_scan(self.host, anchor)
        except NotFound:
            raise NotFound(name, hint=f"{anchor} does not exist") from None

    def path_exists(self, path: str) -> bool:
        return self.host.run(["test", "-e", path], check=False).ok

    @staticmethod
    def vol_of(scan: Scan, name: str) -> Subvol:
        found = scan.by_path.get(name)
        if found is None or not is_volume_path(name):
            raise NotFound(name)
        return found

    @staticmethod
    def snap_of(scan: Scan, ref: SnapRef) -> Subvol:
        found = scan.snapshot(ref)
        if found is None:
            raise NotFound(str(ref))
        return found

    def exists(self, name: str) -> bool:
        check_volume_name(name)
        return self.host.run(["btrfs", "subvolume", "show", name], check=False).ok

    def _volume_info(self, scan: Scan, vol: Subvol) -> VolumeInfo:
        meta = meta_of(scan.attrs_of(vol.path), VOL_META)
        return VolumeInfo(vol.path, scan.origins.get(vol.path), None, vol.path, meta)

    def volume(self, name: str) -> VolumeInfo:
        scan = self.scan(name)
        return self._volume_info(scan, self.vol_of(scan, name))

    def volumes(self, root: str) -> list[VolumeInfo]:
        check_volume_name(root)
        scan = read_scan(self.host, root)
        found = [v for v in scan.volume_list if v.path == root or v.path.startswith(root + "/")]
        found.sort(key=lambda v: v.path.split("/"))
        return [self._volume_info(scan, v) for v in found]

    def snapshot_meta(self, scan: Scan, snap: Subvol) -> dict[str, str]:
        assert snap.ref is not None
        # the volume's keys as they were, then its own, then later changes: as a ZFS
        # snapshot inherits its dataset's user properties and overrides them
        attrs = scan.attrs_of(snap.path)
        own = meta_of(attrs, VOL_META) | meta_of(attrs, SNAP_META)
        return overlay(own, meta_of(scan.attrs_of(snap_home(snap.ref)), SNAP_META))

    @staticmethod
    def holds(scan: Scan, ref: SnapRef) -> frozenset[str]:
        attrs = scan.attrs_of(snap_home(ref))
        return frozenset(k[len(HOLD) :] for k in attrs if k.startswith(HOLD))

    def snapshot_infos(self, scan: Scan, snaps: Sequence[Subvol]) -> list[SnapshotInfo]:
        created = scan.created(snaps)
        infos = []
        for s in snaps:
            assert s.ref is not None
            infos.append(
                SnapshotInfo(
                    ref=s.ref,
                    guid=s.guid,
                    created=created.get(s.uuid, 0),
                    used=None,
                    meta=self.snapshot_meta(scan, s),
                    holds=self.holds(scan, s.ref),
                    clones=tuple(scan.clones(s.ref)),
                )
            )
        return infos

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        scan = self.scan(name)
        self.vol_of(scan, name)
        return self.snapshot_infos(scan, scan.snapshots_of(name))

    def snapshot(self, ref: SnapRef) -> SnapshotInfo:
        scan = self.scan(ref.volume)
        return self.snapshot_infos(scan, [self.snap_of(scan, ref)])[0]

    def get_meta(self, name: str | SnapRef) -> dict[str, str]:
        if isinstance(name, SnapRef):
            scan = self.scan(name.volume)
            return self.snapshot_meta(scan, self.snap_of(scan, name))
        scan = self.scan(name)
        return meta_of(scan.attrs_of(self.vol_of(scan, name).path), VOL_META)

    def mountpoint(self, name: str) -> str | None:
        return name if self.exists(name) else None

    # plans

    def create_plan(self, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        meta = dict(meta or {})
        check_meta_keys(meta)
        check_volume_name(name)
        if self.path_exists(name):
            raise AlreadyExists(name)
        steps = [self.steps.create(name, f"create subvolume {name}")]
        steps += self.steps.meta(name, VOL_META, meta, {})
        return Plan.of(f"create {name}", steps)

    def destroy_plan(self, target: str | SnapRef, *, force: bool = False) -> Plan:
        if isinstance(target, SnapRef):
            scan = self.scan(target.volume)
            work = teardown(scan, self.steps, self.snap_of(scan, target))
        else:
            scan = self.scan(target)
            work = teardown(scan, self.steps, self.vol_of(scan, target))
        if work.dependents and not force:
            raise HasDependents(str(target), work.dependents)
        return Plan.of(f"destroy {target}", work.plan)

    def snapshot_plan(
        self, names: Sequence[str], snap: str, meta: Mapping[str, str] | None = None
    ) -> Plan:
        meta = dict(meta or {})
        check_meta_keys(meta)
        made, filled, sealed = [], [], []
        for name in names:
            ref = SnapRef(name, snap)
            scan = self.scan(name)
            vol = self.vol_of(scan, name)
            if scan.snapshot(ref) or self.path_exists(snap_path(ref)):
                raise AlreadyExists(str(ref))
            path = snap_path(ref)
            made.append(self.steps.mkdir(snap_home(ref), f"home of {ref}"))
            made.append(self.steps.snapshot(name, path, f"snapshot {name} as {ref}"))
            # written while still writable: a read-only snapshot takes no xattr, and flipping
            # it back would break later incremental streams (docs/storage-btrfs.md)
            for attr in sorted(a for a in scan.attrs_of(vol.path) if a.startswith(SNAP_META)):
                filled += self.steps.remove_attr(
                    path, attr, f"{ref}: drop stale {attr}", until_ro=True
                )
            for key, value in meta.items():
                attr = meta_attr(SNAP_META, key)
                filled.append(
                    self.steps.set_attr(path, attr, value, f"{ref}: {key}={value}", until_ro=True)
                )
            sealed.append(self.steps.seal(path, f"make {ref} read-only"))
        return Plan.of(f"snapshot {', '.join(names)} @{snap}", made + filled + sealed)

    def clone_plan(self, ref: SnapRef, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        meta = dict(meta or {})
        check_meta_keys(meta)
        check_volume_name(name)
        scan = self.scan(ref.volume)
        snap = self.snap_of(scan, ref)
        if self.path_exists(name):
            raise AlreadyExists(name)
        if not self.host.run(["test", "-d", parent_dir(name)], check=False).ok:
            raise NotFound(parent_dir(name), hint=f"create it before cloning into {name}")
        wanted = {meta_attr(VOL_META, k): v for k, v in meta.items()} | {ORIGIN: snap.guid}
        steps = [self.steps.snapshot(snap.path, name, f"clone {ref} as {name}")]
        steps += self.steps.reset(name, scan.attrs_of(snap.path), wanted, name)
        return Plan.of(f"clone {ref} -> {name}", steps)

    def promote_plan(self, name: str) -> Plan:
        scan = self.scan(name)
        vol = self.vol_of(scan, name)
        origin = scan.origins.get(name)
        if origin is None:
            raise StorageError(f"{name} is not a clone; there is nothing to promote")
        older = scan.snapshots_of(origin.volume)
        moving = older[: [s.ref for s in older].index(origin) + 1]
        steps = [self.steps.mkdir(snap_dir(name), f"snapshot directory of {name}")]
        for s in moving:
            assert s.ref is not None
            new = SnapRef(name, s.ref.name)
            if scan.snapshot(new) or self.path_exists(snap_home(new)):
                raise StorageError(
                    f"cannot promote {name}: {new} already exists",
                    hint=f"rename or destroy {new} first",
                )
            steps.append(self.steps.move(snap_home(s.ref), snap_home(new), f"{s.ref} -> {new}"))
        old = scan.by_path[origin.volume]
        before = scan.origins.get(old.path)
        before_guid = self.snap_of(scan, before).guid if before else None
        if before_guid:
            steps.append(
                self.steps.set_attr(
                    name, ORIGIN, before_guid, f"{name} takes the origin of {old.path}"
                )
            )
        elif ORIGIN in scan.attrs_of(vol.path):
            steps += self.steps.remove_attr(name, ORIGIN, f"{name} is no longer a clone")
        guid = self.snap_of(scan, origin).guid
        steps.append(
            self.steps.set_attr(
                old.path, ORIGIN, guid, f"{old.path} is now a clone of {name}@{origin.name}"
            )
        )
        return Plan.of(f"promote {name}", steps)

    def rename_plan(self, old: str, new: str) -> Plan:
        check_volume_name(new)
        scan = self.scan(old)
        self.vol_of(scan, old)
        if self.path_exists(new):
            raise AlreadyExists(new)
        if not self.host.run(["test", "-d", parent_dir(new)], check=False).ok:
            raise NotFound(parent_dir(new), hint=f"create it before renaming {old} there")
        if (
            parent_dir(new) != parent_dir(old)
            and read_scan(self.host, parent_dir(new)).target != scan.target
        ):
            raise Unsupported(
                f"cannot rename {old} to {new}: not on the same mounted btrfs",
                hint="send/receive it there instead",
            )
        steps = [self.steps.move(old, new, f"rename {old} -> {new}")]
        snaps = scan.snapshots_of(old)
        if snaps:
            steps.append(self.steps.mkdir(snap_dir(new), f"snapshot directory of {new}"))
        for s in snaps:
            assert s.ref is not None
            ref = SnapRef(new, s.ref.name)
            steps.append(self.steps.move(snap_home(s.ref), snap_home(ref), f"{s.ref} -> {ref}"))
        return Plan.of(f"rename {old} -> {new}", steps)

    def rollback_plan(self, ref: SnapRef, *, destroy_newer: bool = False) -> Plan:
        scan = self.scan(ref.volume)
        vol = self.vol_of(scan, ref.volume)
        snap = self.snap_of(scan, ref)
        snaps = scan.snapshots_of(ref.volume)
        newer = snaps[snaps.index(snap) + 1 :]
        if newer and not destroy_newer:
            listed = ", ".join(str(s.ref) for s in newer)
            raise StorageError(
                f"cannot roll {ref.volume} back to {ref}: newer snapshots exist: {listed}",
                hint="pass destroy_newer to destroy them",
            )
        nested = scan.below(vol.path)
        if nested:
            raise Unsupported(
                f"cannot roll {ref.volume} back: it holds subvolumes "
                f"{', '.join(s.path for s in nested)} that a rollback would lose"
            )
        steps: list[Step] = []
        for s in reversed(newer):
            work = teardown(scan, self.steps, s)
            if work.dependents:
                raise HasDependents(str(s.ref), work.dependents, hint="nothing was rolled back")
            steps += work.plan
        # the volume keeps its metadata and origin: ZFS does not roll properties back either
        keep = {
            a: v
            for a, v in scan.attrs_of(vol.path).items()
            if a.startswith(VOL_META) or a == ORIGIN
        }
        fix = self.steps.reset(vol.path, scan.attrs_of(snap.path), keep, ref.volume)
        steps += self.replace_steps(vol, snap.path, "rollback", fix)
        return Plan.of(f"rollback {ref.volume} to {ref}", steps)

    def replace_steps(
        self, vol: Subvol, source: str, why: str, then: Sequence[Step] = ()
    ) -> list[Step]:
        """Put a writable snapshot of ``source`` where ``vol`` is, run ``then`` on it, and
        only then delete the old one: as long as the old one waits aside, a plan cut off
        anywhere resumes from its steps' checks; once it is gone, the plan has finished."""
        aside = aside_path(vol.path, vol.uuid)
        return [
            self.steps.move(vol.path, aside, f"{why}: move {vol.path} aside"),
            self.steps.snapshot(source, vol.path, f"{why}: {vol.path} from {source}"),
            *then,
            self.steps.delete(aside, f"{why}: delete the old {vol.path}"),
        ]

    def set_meta_plan(self, target: str | SnapRef, items: Mapping[str, str | None]) -> Plan:
        check_meta_keys(items)
        if isinstance(target, SnapRef):
            scan = self.scan(target.volume)
            self.snap_of(scan, target)
            home = snap_home(target)
            steps = [
                self.steps.set_attr(
                    home,
                    meta_attr(SNAP_META, key),
                    "-" if value is None else f"={value}",
                    f"{target}: {'remove ' + key if value is None else f'{key}={value}'}",
                )
                for key, value in items.items()
            ]
            return Plan.of(f"set metadata of {target}", steps)
        scan = self.scan(target)
        vol = self.vol_of(scan, target)
        steps = self.steps.meta(target, VOL_META, items, scan.attrs_of(vol.path))
        return Plan.of(f"set metadata of {target}", steps)

    def hold_plan(self, ref: SnapRef, tag: str) -> Plan:
        check_hold_tag(tag)
        scan = self.scan(ref.volume)
        self.snap_of(scan, ref)
        if tag in self.holds(scan, ref):
            return Plan(f"hold {ref} ({tag})")  # already held: nothing to do
        step = self.steps.set_attr(snap_home(ref), HOLD + tag, "", f"hold {ref} with {tag}")
        return Plan.of(f"hold {ref} ({tag})", [step])

    def release_plan(self, ref: SnapRef, tag: str) -> Plan:
        check_hold_tag(tag)
        scan = self.scan(ref.volume)
        self.snap_of(scan, ref)
        if tag not in self.holds(scan, ref):
            raise StorageError(f"{ref} has no hold {tag}")
        steps = self.steps.remove_attr(snap_home(ref), HOLD + tag, f"release {tag} on {ref}")
        return Plan.of(f"release {ref} ({tag})", steps)

    def mount_plan(self, name: str, *, readonly: bool = False) -> Plan:
        if not self.exists(name):
            raise NotFound(name)
        return Plan(f"mount {name} (a subvolume is always reachable at its path)")

    def unmount_plan(self, name: str) -> Plan:
        if not self.exists(name):
            raise NotFound(name)
        return Plan(f"unmount {name} (a subvolume is always reachable at its path)")

    # streams

    def send_stage(self, ref: SnapRef, *, base: SnapRef | None = None) -> Stage:
        return self.receiver.send_stage(ref, base)

    def receive_stage(self, name: str, *, force: bool = False) -> Stage:
        return self.receiver.receive_stage(name, force)

    def finish_receive(self, name: str, sent: SnapshotInfo) -> SnapshotInfo:
        return self.receiver.finish(name, sent)
