"""Receiving a plain stream: into a hidden directory first, into place only once complete.

``receive_stage`` extracts into ``<dir>/.g2d-snap/.recv.<leaf>``, which no query sees.
With ``foreign`` the stream is a ZFS or btrfs snapshot's tree (``tree_send``): it carries no
g2d identity, and ``finish_receive`` stamps the sent snapshot's guid, time and metadata on it.
``finish_receive`` checks that the stream reached its end marker and carries the snapshot
that was sent, then plans: the tree becomes the snapshot ``<leaf>@<snap>`` (one rename),
and the volume becomes a reflink copy of it (built aside and renamed, or swapped in for an
incremental). A cut-off or wrong stream is removed and raises; nothing of it stays.

The plan is saved in the receive directory before its first step runs, so a
``finish_receive`` interrupted half way is finished by calling it again (the steps'
``done_if`` skip what was done), and a new receive into the same name waits for that.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING

from g2d.core.plan import Plan
from g2d.hosts.pipeline import Stage
from g2d.storage import plain_attrs as xa
from g2d.storage.base import (
    AlreadyExists,
    NotFound,
    SnapRef,
    SnapshotInfo,
    StorageError,
    Unsupported,
)
from g2d.storage.plain_layout import (
    CREATED,
    FORCE,
    FOREIGN,
    GUID,
    HOLD_PREFIX,
    ORIGIN,
    SNAPKEYS,
    SWAP_PREFIX,
    VOLUME,
    XATTR_MATCH,
    VolPath,
    in_snapdir,
    meta_to_xattr,
    xattr_to_meta,
)
from g2d.storage.plain_steps import Steps
from g2d.storage.plain_stream import END_PREFIX, TREE, Header, receive_argv

if TYPE_CHECKING:
    from g2d.storage.plain import PlainBackend

PLAN = "plan.json"  # beside tree/ and g2d-end.* in the receive directory


def receive_stage(backend: PlainBackend, name: str, *, force: bool, foreign: bool = False
                  ) -> Stage:  # fmt: skip
    read, host = backend.read, backend.host
    vp = VolPath(name)
    if not backend.caps.extra.get("gnu_tar"):
        raise Unsupported(f"{host.name}: plain streams need GNU tar, not {backend.caps.version!r}")
    if not read.is_dir(vp.parent):
        raise NotFound(vp.parent, hint="create the directory that holds the volumes first")
    # with snapshots, an incremental may follow (finish_receive checks its base)
    if read.is_there(name) and not force and not read.attrs_below([vp.snapdir], f"{vp.leaf}@*"):
        raise AlreadyExists(name, hint="receive into a new name, or pass force to replace it")
    recv = vp.work("recv")
    if read.is_there(f"{recv}/{PLAN}"):
        raise StorageError(
            f"an earlier receive into {name} stopped half way",
            hint="call finish_receive for it again; it completes what was started",
        )
    host.run(["mkdir", "-p", "--", vp.snapdir])
    _drop(backend, recv)  # what an earlier cut-off receive left
    host.run(["mkdir", "--", recv])
    for key, wanted in ((FORCE, force), (FOREIGN, foreign)):
        if wanted:
            host.run(xa.set_argv(recv, key, "1"))
    return Stage.of(host, receive_argv(recv))


def _drop(backend: PlainBackend, recv: str) -> None:
    assert in_snapdir(recv), recv
    backend.host.run(["rm", "-rf", "--one-file-system", "--", recv])


def finish_receive(backend: PlainBackend, name: str, sent: SnapshotInfo) -> SnapshotInfo:
    read, host = backend.read, backend.host
    vp = VolPath(name)
    recv, saved = vp.work("recv"), f"{vp.work('recv')}/{PLAN}"
    ref = vp.ref(sent.ref.name)
    if read.is_there(saved):
        plan = Plan.from_json(json.loads(host.run(["cat", "--", saved]).out))
    elif not read.is_dir(recv):
        dest = vp.snap(ref.name)
        if read.is_dir(dest) and read.attrs(dest).get(GUID) == sent.guid and read.is_dir(name):
            return backend.snapshot(ref)  # finished before
        raise StorageError(f"nothing is being received into {name}", hint="run the receive first")
    else:
        try:
            plan = _placement(backend, vp, recv, ref, sent)
        except StorageError:
            _drop(backend, recv)
            raise
        text = json.dumps(plan.to_json()).encode()
        host.run(["dd", f"of={saved}.part", "status=none"], stdin=text)
        host.run(["mv", "--no-target-directory", "--", f"{saved}.part", saved])
    backend.apply(plan)
    got = backend.snapshot(ref)
    if got.guid != sent.guid:
        raise StorageError(f"{ref} has guid {got.guid}, not {sent.guid} of {sent.ref}")
    return got


def _cut_off(vp: VolPath) -> StorageError:
    return StorageError(
        f"the stream into {vp.path} was cut off; nothing of it was kept", hint="send it again"
    )


def _placement(
    backend: PlainBackend, vp: VolPath, recv: str, ref: SnapRef, sent: SnapshotInfo
) -> Plan:
    read = backend.read
    entries = backend.host.run(
        ["find", recv, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\n"]
    ).lines()
    ends = [e for e in entries if e.startswith(END_PREFIX)]
    if len(ends) != 1 or sorted(entries) != sorted([TREE, ends[0]]):
        raise _cut_off(vp)
    header = Header.parse(ends[0])
    dest, tree = vp.snap(ref.name), f"{recv}/{TREE}"
    attrs = read.attrs(tree)
    marks = read.attrs(recv)  # FORCE, FOREIGN: set by receive_stage
    stamp: dict[str, str] = {}
    unstamped: list[str] = []  # a foreign tree's own g2d xattrs (btrfs's user.g2d-snap.*)
    if marks.get(FOREIGN):
        if header.base_guid is not None:
            raise StorageError(f"a tree stream of {sent.ref} into {vp.path} has a base")
        stamp = _identity(sent)
        unstamped = [k for k in attrs if re.match(XATTR_MATCH, k) and k not in stamp]
        attrs = {k: v for k, v in attrs.items() if k not in unstamped} | stamp
    if attrs.get(GUID) != sent.guid:
        raise StorageError(
            f"the stream into {vp.path} holds the snapshot with guid {attrs.get(GUID)!r}, "
            f"not {sent.ref} (guid {sent.guid})"
        )
    force = bool(marks.get(FORCE))
    exists = read.is_there(vp.path)
    s = Steps(backend.host.name)
    origin: SnapRef | None = None
    replaced = False  # a forced full stream destroys the old volume and its snapshots first
    if header.base_guid is None and exists:
        if not force:
            raise AlreadyExists(vp.path, hint="receive a full stream into a new name, or force")
        s.steps += backend.destroy_plan(vp.path, force=True).steps
        exists, replaced = False, True
    elif header.base_guid is not None and exists:
        _continue(backend, vp, header.base_guid, sent, force, s)
    elif header.base_guid is not None:
        origin = read.find_guid(vp.parent, header.base_guid)
        if origin is None:
            raise StorageError(
                f"the stream of {sent.ref} continues the snapshot with guid "
                f"{header.base_guid}, which {vp.snapdir} does not have",
                hint="send its base first, or send a full stream",
            )
    if not replaced and read.is_there(dest):
        raise AlreadyExists(str(ref))
    # holds and origin describe the sender's side, not this one
    drop = [k for k in attrs if k.startswith((HOLD_PREFIX, SWAP_PREFIX)) or k in (ORIGIN, FORCE)]
    there = ["test", "-e", dest]
    s.attrs(tree, stamp, [*drop, *unstamped], there, str(ref))
    s.add(["mv", "--no-target-directory", "--", tree, dest], f"put {ref} in place", there)
    attrs = {k: v for k, v in attrs.items() if k not in drop}
    own = set(filter(None, attrs.get(SNAPKEYS, "").split(",")))
    volume = {
        VOLUME: "1",
        **{k: v for k, v in attrs.items() if (key := xattr_to_meta(k)) and key not in own},
    }
    if exists:
        current = read.attrs(vp.path).get(ORIGIN)
        volume.update({ORIGIN: current} if current else {})
        s.swap(vp, dest, volume, attrs, secrets.token_hex(8), f"receiving {ref}")
    else:
        volume.update({ORIGIN: str(origin)} if origin else {})
        s.build(dest, vp.work("vol"), vp.path, volume, attrs, vp.path)
    s.remove(recv, "remove the receive directory", ["test", "!", "-e", recv])
    return Plan.of(f"receive {sent.ref} as {ref}", s.steps)


def _identity(sent: SnapshotInfo) -> dict[str, str]:
    """The xattrs a plain snapshot of ``sent`` carries (a foreign tree arrives without)."""
    meta = {meta_to_xattr(k): v for k, v in sent.meta.items()}
    return {GUID: sent.guid, CREATED: str(sent.created * 1_000_000_000), **meta}


def _continue(
    backend: PlainBackend, vp: VolPath, base_guid: str, sent: SnapshotInfo, force: bool, s: Steps
) -> None:
    """Checks (and, with force, steps) for an incremental into an existing volume: its
    base must be there, and nothing newer, and the volume unchanged since its newest
    snapshot (as ``zfs recv`` demands without ``-F``)."""
    snaps = backend.read.snapshots(vp.path)
    base = next((i for i in snaps if i.guid == base_guid), None)
    if base is None:
        raise StorageError(
            f"{vp.path} has no snapshot with guid {base_guid}, the base of {sent.ref}",
            hint="send from a base the receiver has, or a full stream into a new name",
        )
    newer = snaps[snaps.index(base) + 1 :]
    if newer and not force:
        raise StorageError(
            f"{vp.path} has snapshots newer than {base.ref}, the base of {sent.ref}: "
            + ", ".join(str(i.ref) for i in newer),
            hint="pass force to destroy them",
        )
    changed = backend.read.changes(vp.path, vp.snap(snaps[-1].ref.name))
    if changed and not force:
        raise StorageError(
            f"{vp.path} was modified since its newest snapshot {snaps[-1].ref}: "
            + ", ".join(changed[:5])
            + (", ..." if len(changed) > 5 else ""),
            hint="pass force to discard the changes",
        )
    for info in newer:
        s.steps += backend.destroy_plan(info.ref).steps
