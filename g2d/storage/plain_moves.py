"""Plans that take volumes and snapshots away or move them, with what depends on them:
destroy (dependents first, each renamed out of sight before it is removed), rollback
(a copy of the snapshot swapped in), promote (the origin's snapshots move to the clone)
and rename (the directory and its snapshots)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from g2d.core.plan import Plan
from g2d.storage import plain_attrs as xa
from g2d.storage.base import AlreadyExists, HasDependents, NotFound, SnapRef, StorageError
from g2d.storage.plain_layout import ORIGIN, VOLUME, VolPath, snap_path, xattr_to_meta
from g2d.storage.plain_steps import Steps

if TYPE_CHECKING:
    from g2d.storage.plain import PlainBackend


def destroy_plan(backend: PlainBackend, target: str | SnapRef, *, force: bool = False) -> Plan:
    if isinstance(target, SnapRef):
        info = backend.snapshot(target)
        direct = [*info.clones, *(f"hold {t}" for t in sorted(info.holds))]
    else:
        backend.read.require(target)
        snaps = backend.read.snapshots(target)
        direct = [str(i.ref) for i in snaps] + [c for i in snaps for c in i.clones]
        direct += [f"hold {t} on {i.ref}" for i in snaps for t in sorted(i.holds)]
    if direct and not force:
        raise HasDependents(str(target), direct)
    doomed: list[SnapRef | str] = []
    holds: list[tuple[SnapRef, str]] = []
    _collect(backend, target, doomed, holds, set())
    # asked to destroy (force): holds are released first, as the plan shows
    releases = [step for ref, tag in holds for step in backend.release_plan(ref, tag).steps]
    s = Steps(backend.host.name)
    for item in doomed:
        if isinstance(item, SnapRef):
            vp = VolPath(item.volume)
            s.discard(snap_path(item), vp.work("trash", item.name), f"snapshot {item}")
        else:
            vp = VolPath(item)
            s.snapdir(vp)
            s.discard(item, vp.work("trash"), f"volume {item}")
    title = f"destroy {target}" + (" and its dependents" if force else "")
    return Plan.of(title, [*releases, *s.steps])


def _collect(
    backend: PlainBackend,
    target: str | SnapRef,
    doomed: list[SnapRef | str],
    held: list[tuple[SnapRef, str]],
    seen: set[str],
) -> None:
    """Everything destroying ``target`` takes, dependents first."""
    if str(target) in seen:
        return
    seen.add(str(target))
    infos = [backend.snapshot(target)] if isinstance(target, SnapRef) else backend.snapshots(target)
    for info in infos:
        for clone in info.clones:
            _collect(backend, clone, doomed, held, seen)
        held += [(info.ref, t) for t in sorted(info.holds)]
        doomed.append(info.ref)
    if not isinstance(target, SnapRef):
        doomed.append(target)


def rollback_plan(backend: PlainBackend, ref: SnapRef, *, destroy_newer: bool = False) -> Plan:
    vp = backend.read.require(ref.volume)
    snaps = backend.read.snapshots(ref.volume)
    index = next((i for i, info in enumerate(snaps) if info.ref == ref), None)
    if index is None:
        raise NotFound(str(ref))
    newer = snaps[index + 1 :]
    if newer and not destroy_newer:
        raise StorageError(
            f"{ref} is not the newest snapshot of {ref.volume}; newer: "
            + ", ".join(str(i.ref) for i in newer),
            hint="pass destroy_newer to destroy them too (the plan is shown first)",
        )
    blocking = [c for i in newer for c in i.clones]
    blocking += [f"hold {t} on {i.ref}" for i in newer for t in sorted(i.holds)]
    if blocking:
        raise HasDependents(", ".join(str(i.ref) for i in newer), blocking)
    current = backend.read.attrs(ref.volume)
    keep = {k: v for k, v in current.items() if xattr_to_meta(k) or k in (VOLUME, ORIGIN)}
    s = Steps(backend.host.name)
    # ZFS keeps a dataset's properties across a rollback; so does plain
    s.swap(
        vp,
        snap_path(ref),
        keep,
        backend.read.snapshot_attrs(ref),
        secrets.token_hex(8),
        f"the rollback of {ref.volume} to @{ref.name}",
    )
    for info in reversed(newer):
        s.discard(snap_path(info.ref), vp.work("trash", info.ref.name), f"snapshot {info.ref}")
    return Plan.of(f"roll {ref.volume} back to {ref}", s.steps)


def promote_plan(backend: PlainBackend, name: str) -> Plan:
    vp = backend.read.require(name)
    attrs = backend.read.attrs(name)
    if ORIGIN not in attrs:
        raise StorageError(f"{name} is not a clone", hint="only a clone can be promoted")
    origin = SnapRef.parse(attrs[ORIGIN])
    theirs = backend.read.snapshots(origin.volume)
    index = next((i for i, info in enumerate(theirs) if info.ref == origin), None)
    if index is None:
        raise NotFound(str(origin), hint=f"the origin of {name} is gone; nothing to promote")
    moving = theirs[: index + 1]  # like ZFS: the origin and every older snapshot
    mine = {info.ref.name for info in backend.read.snapshots(name)}
    clash = [info.ref.name for info in moving if info.ref.name in mine]
    if clash:
        raise AlreadyExists(
            f"{name}@{clash[0]}", hint="rename that snapshot first; promote moves snapshots"
        )
    their_origin = backend.read.attrs(origin.volume).get(ORIGIN)
    s = Steps(backend.host.name)
    s.snapdir(vp)
    for info in moving:
        dest = vp.snap(info.ref.name)
        s.add(
            ["mv", "--no-target-directory", "--", snap_path(info.ref), dest],
            f"move {info.ref} to {name}",
            done_if=["test", "-e", dest],
        )
        for clone in info.clones:
            if clone != name:
                moved = f"{name}@{info.ref.name}"
                s.add(xa.set_argv(clone, ORIGIN, moved), f"{clone} now comes from {moved}")
    back = str(SnapRef(name, origin.name))
    s.add(xa.set_argv(origin.volume, ORIGIN, back), f"{origin.volume} now comes from {back}")
    if their_origin:
        s.add(xa.set_argv(name, ORIGIN, their_origin), f"{name} takes over {their_origin}")
    else:
        s.attrs(name, {}, [ORIGIN], None, name)
    return Plan.of(f"promote {name} over {origin.volume}", s.steps)


def rename_plan(backend: PlainBackend, old: str, new: str) -> Plan:
    ovp = backend.read.require(old)
    nvp = backend.new_volume(new)
    snaps = backend.read.snapshots(old)
    s = Steps(backend.host.name)
    s.snapdir(nvp)
    s.add(
        ["mv", "--no-target-directory", "--", old, new],
        f"rename {old} to {new}",
        done_if=["test", "-e", new],
    )
    for info in snaps:
        dest = nvp.snap(info.ref.name)
        s.add(
            ["mv", "--no-target-directory", "--", ovp.snap(info.ref.name), dest],
            f"move {info.ref} along",
            done_if=["test", "-e", dest],
        )
        for clone in info.clones:
            moved = f"{new}@{info.ref.name}"
            s.add(xa.set_argv(clone, ORIGIN, moved), f"{clone} now comes from {moved}")
    return Plan.of(f"rename {old} to {new}", s.steps)
