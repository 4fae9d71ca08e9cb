"""The ZFS backend: the ``zfs``/``zpool`` commands on any host, OpenZFS or zfs-fuse.

Volumes are datasets (``pool/sys/g1``), snapshots ``pool/sys/g1@name``, metadata ``g2d:*``
user properties. Where zfs-fuse (pool version 23) lacks something the backend knows it
from ``caps`` and takes a fallback (docs/storage-zfs.md):
- no ``zfs list -p``: every number comes from ``zfs get -Hp``;
- ``zfs holds`` is broken: hold tags are also kept in ``g2d:holds`` on the snapshot;
- no ``destroy -n``: destroys are planned from the pool's state (zfs_destroy);
- one name per ``zfs snapshot``: several volumes are atomic only as a whole subtree (``-r``);
- a mounted dataset that was written to cannot be renamed or destroyed ("dataset is
  busy"): plans unmount it first;
- no ``recv -x``: a ``send -p`` stream brings the sender's mountpoint; ``finish_receive``
  masks it with ``zfs inherit`` before anything mounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from g2d.core.errors import CommandFailed
from g2d.core.plan import Plan, Step
from g2d.hosts.pipeline import Stage
from g2d.hosts.together import run_together
from g2d.storage.apply import apply_plan
from g2d.storage.base import (
    AlreadyExists,
    Backend,
    BackendKind,
    Caps,
    NotFound,
    SnapRef,
    SnapshotInfo,
    StorageError,
    VolumeInfo,
    check_meta_keys,
)
from g2d.storage.zfs_caps import probe_caps
from g2d.storage.zfs_destroy import destroy_plan, rollback_plan
from g2d.storage.zfs_holds import hold_plan, read_holds, release_plan
from g2d.storage.zfs_props import (
    Row,
    check_dataset,
    check_meta_values,
    check_snapname,
    check_target,
    exists,
    exists_argv,
    failed,
    get_argvs,
    origins,
    origins_argv,
    parse_origins,
    parse_rows,
    pool_of,
    read_rows,
    snapshot_info,
)
from g2d.storage.zfs_recv import finish_receive

log = logging.getLogger("g2d.storage.zfs")

# zfs-fuse releases an unmounted dataset asynchronously: `zfs destroy`/`rename` right after
# `zfs unmount` can fail "dataset is busy" for a moment (seconds on a loaded machine)
_BUSY = "dataset is busy"  # not "target is busy": umount with open files is real
_BUSY_WAITS = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # about 30 s in all


def _props(meta: Mapping[str, str]) -> list[str]:
    return [arg for key in sorted(meta) for arg in ("-o", f"{key}={meta[key]}")]


def _checked_meta(meta: Mapping[str, str | None] | None) -> dict[str, str | None]:
    items = dict(meta or {})
    check_meta_keys(items)
    check_meta_values(items)
    return items


class ZfsBackend(Backend, kind=BackendKind.zfs):
    """ZFS datasets through ``self.host``; see the module docstring for zfs-fuse."""

    def probe_caps(self) -> Caps:
        return probe_caps(self.host)

    def apply(self, plan: Plan) -> None:
        """Run the plan; on ZFS that releases datasets late (``caps.extra["late_release"]``,
        zfs-fuse), a step that failed only because its dataset is still busy is retried."""
        if not self.caps.extra.get("late_release"):
            return super().apply(plan)
        hosts = {self.host.name: self.host}
        for step in plan.steps:
            for wait in (*_BUSY_WAITS, None):
                try:
                    apply_plan(Plan(plan.title, (step,)), hosts)
                    break
                except CommandFailed as e:
                    if wait is None or _BUSY not in e.tail:
                        raise
                    log.info("%s: still busy, trying again in %g s", step.why, wait)
                    time.sleep(wait)
        return None

    def step(self, argv: Sequence[str], why: str, done_if: Sequence[str] | None = None) -> Step:
        return Step.run(self.host.name, argv, why, done_if=done_if)

    def _row(self, name: str, native: Sequence[str], *, user: bool = False) -> Row:
        return read_rows(self.host, [name], native=native, user=user)[name]

    # queries

    def exists(self, name: str) -> bool:
        return exists(self.host, check_target(SnapRef.parse(name) if "@" in name else name))

    def _volume_info(self, row: Row) -> VolumeInfo:
        origin = row.get("origin")
        return VolumeInfo(
            name=row.name,
            origin=SnapRef.parse(origin) if origin else None,
            used=row.number("used"),
            mountpoint=row.mounted_at,
            meta=row.meta(),
        )

    def volume(self, name: str) -> VolumeInfo:
        check_dataset(name)
        return self._volume_info(read_rows(self.host, [name])[name])

    def volumes(self, root: str) -> list[VolumeInfo]:
        rows = read_rows(self.host, [check_dataset(root)], recursive=True)
        return [self._volume_info(r) for r in rows.values() if not r.is_snapshot]

    def listing(
        self, root: str, *, clones: bool = True
    ) -> tuple[list[VolumeInfo], list[SnapshotInfo]]:
        """The recursive read and (``clones``) the pool's clones, the commands started
        together."""
        argvs = get_argvs([check_dataset(root)], recursive=True)
        done = run_together(self.host, [*argvs, *([origins_argv(pool_of(root))] if clones else [])])
        try:
            rows = parse_rows(done[: len(argvs)], [root])
        except NotFound:
            return [], []
        clones_of = done[len(argvs)] if clones else None
        if clones_of is not None and not clones_of.ok:
            raise failed(clones_of, pool_of(root))
        volumes = [self._volume_info(r) for r in rows.values() if not r.is_snapshot]
        parent = root.rstrip("/")
        members = {v.name for v in volumes if v.name.rpartition("/")[0] == parent}
        snaps = [r for r in rows.values() if r.is_snapshot and r.name.split("@")[0] in members]
        snaps.sort(key=lambda r: r.number("createtxg") or 0)
        found = parse_origins(clones_of.stdout) if clones_of is not None else {}
        return volumes, self._snapshot_infos(snaps, found)

    def _snapshot_infos(self, snaps: list[Row], origins_in_pool: Mapping[str, str]
                        ) -> list[SnapshotInfo]:  # fmt: skip
        clones: dict[str, list[str]] = {}
        for clone, origin in origins_in_pool.items():
            clones.setdefault(origin, []).append(clone)
        holds = read_holds(self, snaps)
        return [
            snapshot_info(r, holds.get(r.name, frozenset()), clones.get(r.name, [])) for r in snaps
        ]

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        rows = read_rows(self.host, [check_dataset(name)], depth=1)
        snaps = [r for r in rows.values() if r.name.startswith(f"{name}@")]
        snaps.sort(key=lambda r: r.number("createtxg") or 0)
        return self._snapshot_infos(snaps, origins(self.host, pool_of(name)))

    def get_meta(self, name: str | SnapRef) -> dict[str, str]:
        target = check_target(name)
        return read_rows(self.host, [target], native=())[target].meta()

    def mountpoint(self, name: str) -> str | None:
        row = self._row(check_dataset(name), ("mounted", "mountpoint"))
        if row.get("mountpoint") == "legacy" and row.get("mounted") == "yes":
            found = self.host.run(["findmnt", "-rn", "-o", "TARGET", "--source", name], check=False)
            return found.lines()[0].replace("\\x20", " ") if found.ok else None
        return row.mounted_at

    # plans

    def create_plan(self, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        check_dataset(name)
        items = _checked_meta(meta)
        if exists(self.host, name):
            raise AlreadyExists(name)
        argv = ["zfs", "create", "-p", *_props(items), name]  # -p: parents too
        return Plan.of(f"create {name}", [self.step(argv, f"create {name}", exists_argv(name))])

    def destroy_plan(self, target: str | SnapRef, *, force: bool = False) -> Plan:
        return destroy_plan(self, target, force=force)

    def snapshot_plan(
        self, names: Sequence[str], snap: str, meta: Mapping[str, str] | None = None
    ) -> Plan:
        names = [check_dataset(n) for n in names]
        check_snapname(snap)
        items = _checked_meta(meta)
        if not names or len(set(names)) != len(names):
            raise StorageError(f"snapshot {snap!r} needs distinct volumes, got {names!r}")
        for name in names:
            if f"{name}@{snap}" in self._below(name):
                raise AlreadyExists(f"{name}@{snap}")
        with_props = bool(self.caps.extra.get("snapshot_props"))
        opts = _props(items) if with_props else []
        title = f"snapshot {', '.join(names)} as @{snap}"
        top = min(names, key=len)
        if len(names) == 1 or self.caps.atomic_snapshots:
            argv = ["zfs", "snapshot", *opts, *(f"{n}@{snap}" for n in names)]
            steps = [self.step(argv, title, exists_argv(f"{names[0]}@{snap}"))]
        elif self._is_subtree(top, names):
            argv = ["zfs", "snapshot", "-r", *opts, f"{top}@{snap}"]  # atomic: one txg
            steps = [self.step(argv, f"{title} (the whole subtree: atomic)", exists_argv(argv[-1]))]
        else:  # this zfs takes one name per command: not atomic, each step re-runnable
            steps = [
                self.step(["zfs", "snapshot", *opts, f"{n}@{snap}"], f"snapshot {n}@{snap}",
                           exists_argv(f"{n}@{snap}"))
                for n in names
            ]  # fmt: skip
        if not with_props:
            steps += self._set_steps([f"{n}@{snap}" for n in names], items)
        return Plan.of(title, steps)

    def _is_subtree(self, top: str, names: Sequence[str]) -> bool:
        listed = self.host.run(["zfs", "list", "-H", "-o", "name", "-r", "-t", "filesystem", top])
        return sorted(listed.lines()) == sorted(names)

    def _below(self, name: str) -> set[str]:
        """``name``, its snapshots and its children; NotFound if it does not exist."""
        argv = ["zfs", "list", "-H", "-o", "name", "-r", "-d", "1", "-t", "all", name]
        done = self.host.run(argv, check=False)
        if not done.ok:
            raise failed(done, name)
        return set(done.lines())

    def _set_steps(self, targets: Sequence[str], items: Mapping[str, str | None]) -> list[Step]:
        steps = []
        for target in targets:
            for key in sorted(items):
                value = items[key]
                if value is None:
                    steps.append(self.step(["zfs", "inherit", key, target], f"remove {key}"))
                else:
                    steps.append(self.step(["zfs", "set", f"{key}={value}", target], f"set {key}"))
        return steps

    def clone_plan(self, ref: SnapRef, name: str, meta: Mapping[str, str] | None = None) -> Plan:
        check_target(ref)
        check_dataset(name)
        items = _checked_meta(meta)
        if not exists(self.host, str(ref)):
            raise NotFound(str(ref))
        if exists(self.host, name):
            raise AlreadyExists(name)
        argv = ["zfs", "clone", "-p", *_props(items), str(ref), name]
        step = self.step(argv, f"clone {ref} as {name}", exists_argv(name))
        return Plan.of(f"clone {ref} as {name}", [step])

    def promote_plan(self, name: str) -> Plan:
        origin = self._row(check_dataset(name), ("origin",)).get("origin")
        if origin is None:
            raise StorageError(f"{name} is not a clone; there is nothing to promote")
        ref = SnapRef.parse(origin)
        parent = read_rows(self.host, [ref.volume], depth=1, native=("createtxg",), user=False)
        mine = read_rows(self.host, [name], depth=1, native=("createtxg",), user=False)
        upto = parent[origin].number("createtxg") or 0
        moving = {
            SnapRef.parse(r.name).name
            for r in parent.values()
            if r.name.startswith(f"{ref.volume}@") and (r.number("createtxg") or 0) <= upto
        }
        if clash := sorted(moving & {SnapRef.parse(n).name for n in mine if "@" in n}):
            raise StorageError(
                f"cannot promote {name}: snapshot names {', '.join(clash)} exist on both "
                f"{name} and {ref.volume}",
                hint="rename one of each pair first; g2d names snapshots uniquely per lineage",
            )
        step = self.step(
            ["zfs", "promote", name],
            f"promote {name}: {ref} and the snapshots before it move to {name}",
            exists_argv(f"{name}@{ref.name}"),  # there once the origin snapshot moved
        )
        return Plan.of(f"promote {name}", [step])

    def rename_plan(self, old: str, new: str) -> Plan:
        check_dataset(old)
        check_dataset(new)
        if pool_of(old) != pool_of(new):
            raise StorageError(f"cannot rename {old} to {new}: zfs renames within a pool only")
        mounted = self._row(old, ("mounted",)).get("mounted") == "yes"
        if exists(self.host, new):
            raise AlreadyExists(new)
        done = exists_argv(new)
        steps = [self.step(["zfs", "rename", old, new], f"rename {old} to {new}", done)]
        if mounted:  # zfs-fuse: renaming a mounted, written dataset fails "dataset is busy"
            steps.insert(0, self.step(["zfs", "unmount", old], f"unmount {old}", done))
            steps.append(
                self.step(["zfs", "mount", new], f"mount {new}", ["findmnt", "--source", new])
            )
        return Plan.of(f"rename {old} to {new}", steps)

    def rollback_plan(self, ref: SnapRef, *, destroy_newer: bool = False) -> Plan:
        return rollback_plan(self, ref, destroy_newer=destroy_newer)

    def set_meta_plan(self, target: str | SnapRef, items: Mapping[str, str | None]) -> Plan:
        name = check_target(target)
        checked = _checked_meta(items)
        if not exists(self.host, name):
            raise NotFound(name)
        return Plan.of(f"set metadata of {name}", self._set_steps([name], checked))

    def known_meta_plan(self, name: str, items: Mapping[str, str]) -> Plan:
        checked = _checked_meta(items)
        return Plan.of(f"set metadata of {name}", self._set_steps([check_target(name)], checked))

    def hold_plan(self, ref: SnapRef, tag: str) -> Plan:
        return hold_plan(self, ref, tag)

    def release_plan(self, ref: SnapRef, tag: str) -> Plan:
        return release_plan(self, ref, tag)

    def mount_plan(self, name: str, *, readonly: bool = False) -> Plan:
        row = self._row(check_dataset(name), ("mounted", "mountpoint", "canmount"))
        title = f"mount {name}" + (" read-only" if readonly else "")
        if row.get("mounted") == "yes":
            return Plan(title)
        if row.get("canmount") == "off" or row.get("mountpoint") in ("none", "legacy"):
            raise StorageError(
                f"zfs does not mount {name}: canmount={row.get('canmount')}, "
                f"mountpoint={row.get('mountpoint')}"
            )
        argv = ["zfs", "mount", *(["-o", "ro"] if readonly else []), name]
        return Plan.of(title, [self.step(argv, title, ["findmnt", "--source", name])])

    def unmount_plan(self, name: str) -> Plan:
        row = self._row(check_dataset(name), ("mounted",))
        if row.get("mounted") != "yes":
            return Plan(f"unmount {name}")
        return Plan.of(f"unmount {name}", [self.step(["zfs", "unmount", name], f"unmount {name}")])

    # streams

    def send_stage(self, ref: SnapRef, *, base: SnapRef | None = None) -> Stage:
        check_target(ref)
        if base is not None:
            check_target(base)
        if not exists(self.host, str(ref)):
            raise NotFound(str(ref))
        argv = [
            "zfs", "send",
            *(["-p"] if self.caps.extra.get("send_props") else []),  # carry g2d:* properties
            # base: an older snapshot of the same dataset, or the origin of a clone (the
            # receiver then makes the clone from its copy of that origin)
            *(["-i", str(base)] if base is not None else []),
            str(ref),
        ]  # fmt: skip
        return Stage.of(self.host, argv)

    def receive_stage(self, name: str, *, force: bool = False) -> Stage:
        check_dataset(name)
        # An existing volume with snapshots may take an incremental stream: zfs itself
        # refuses a full stream there, and an incremental one unless it starts from the
        # newest snapshot and the volume is unchanged since. One without snapshots could
        # only be overwritten: that needs force.
        try:
            below: set[str] | None = self._below(name)
        except NotFound:
            below = None
        if not force and below is not None and not any("@" in n for n in below):
            raise AlreadyExists(name, hint="receive into a new name, or pass force to overwrite it")
        argv = [
            "zfs", "receive",
            "-u",                                               # mount nothing yet
            *(["-F"] if force else []),                         # roll back / overwrite
            *(["-x", "mountpoint"] if self.caps.extra.get("recv_exclude") else []),
            name,
        ]  # fmt: skip
        return Stage.of(self.host, argv)

    def finish_receive(self, name: str, sent: SnapshotInfo) -> SnapshotInfo:
        check_dataset(name)
        return finish_receive(self.host, name, sent)
