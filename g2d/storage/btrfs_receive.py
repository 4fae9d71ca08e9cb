"""btrfs send and receive, with the pitfalls measured on btrfs-progs 6.2 handled.

- ``btrfs send`` always gets ``-p`` for an incremental: without it, parent detection fails
  when the chain passes through a read-write subvolume.
- A stream lands in ``<dir>/.g2d-snap/.receiving-<vol>/`` and is named there by the sender's
  subvolume name. Only when it is complete (``received_uuid`` set, equal to the sent guid)
  does its directory become the snapshot's home, ``<vol>@<name>``; a read-only subvolume
  cannot change directories, but the plain directory around it can.
- A cut-off stream leaves a read-write subvolume without ``received_uuid``: ``finish`` deletes
  it and raises, and ``receive_stage`` deletes any such leftover before the next stream.
- A received snapshot is never flipped to read-write (that clears ``received_uuid`` and the
  next incremental fails with "cannot find parent subvolume"): the volume is a writable
  snapshot of it.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from g2d.core.plan import Plan, Step
from g2d.hosts.pipeline import Stage
from g2d.storage.base import AlreadyExists, SnapRef, SnapshotInfo, StorageError
from g2d.storage.btrfs_layout import SNAP_META, receiving_dir, snap_home
from g2d.storage.btrfs_scan import Scan, Subvol

if TYPE_CHECKING:
    from g2d.storage.btrfs import BtrfsBackend


class Receiver:
    def __init__(self, backend: BtrfsBackend) -> None:
        self.backend = backend
        self.forced: set[str] = set()  # names whose receive_stage was given force

    def send_stage(self, ref: SnapRef, base: SnapRef | None) -> Stage:
        b = self.backend
        snap = b.snap_of(b.scan(ref.volume), ref)
        parent = b.snap_of(b.scan(base.volume), base) if base else None
        argv = ["btrfs", "send", *(["-p", parent.path] if parent else []), snap.path]
        return Stage.of(b.host, argv)

    def receive_stage(self, name: str, force: bool) -> Stage:
        b = self.backend
        scan = b.scan(name)
        self._clear(scan, name)
        vol = scan.by_path.get(name)
        if vol is None and b.path_exists(name):
            raise AlreadyExists(name, hint="it is not a btrfs subvolume; receive into a new name")
        if vol is not None and not force:
            if not self._is_replica(scan, vol):
                raise AlreadyExists(
                    name, hint="receive into a new name, or pass force to replace it"
                )
            changed = self._local_changes(vol)
            if changed:
                raise StorageError(
                    f"{name} was changed since it was received: {', '.join(changed[:5])}",
                    hint="pass force to discard the changes",
                )
        b.host.run(["mkdir", "-p", receiving_dir(name)])
        if force:
            self.forced.add(name)
        else:
            self.forced.discard(name)
        return Stage.of(b.host, ["btrfs", "receive", receiving_dir(name)])

    def finish(self, name: str, sent: SnapshotInfo) -> SnapshotInfo:
        b = self.backend
        scan = b.scan(name)
        forced = name in self.forced
        self.forced.discard(name)
        landed = self._landed(scan, name)
        ref = SnapRef(name, sent.ref.name)
        if not landed:
            raise StorageError(f"nothing was received for {name}", hint="run the transfer again")
        partial = [s.path for s in landed if not s.received_uuid]
        if partial:
            self._clear(scan, name)
            raise StorageError(
                f"the receive into {name} was cut off; deleted the partial {', '.join(partial)}",
                hint="run the transfer again",
            )
        if len(landed) > 1 or landed[0].received_uuid != sent.guid:
            got = ", ".join(f"{s.path} ({s.received_uuid})" for s in landed)
            self._clear(scan, name)
            raise StorageError(f"received {got} into {name}, not {sent.ref} ({sent.guid}); deleted")
        if scan.snapshot(ref) or b.path_exists(snap_home(ref)):
            self._clear(scan, name)
            raise AlreadyExists(str(ref))
        vol = scan.by_path.get(name)
        if vol is not None and not (forced or self._is_replica(scan, vol)):
            self._clear(scan, name)
            raise AlreadyExists(name)
        b.apply(Plan.of(f"finish receiving {ref}", self._finish_steps(scan, landed[0], ref, vol)))
        info = b.snapshot(ref)
        if info.guid != sent.guid:
            raise StorageError(f"{ref} has guid {info.guid}, the sent {sent.ref} has {sent.guid}")
        return info

    def _finish_steps(
        self, scan: Scan, got: Subvol, ref: SnapRef, vol: Subvol | None
    ) -> list[Step]:
        steps = self.backend.steps
        where = receiving_dir(ref.volume)
        final = posixpath.join(snap_home(ref), ref.name)
        plan: list[Step] = []
        if posixpath.basename(got.path) != ref.name:  # the sender's name; same-directory rename
            plan.append(
                steps.move(got.path, posixpath.join(where, ref.name), f"name it {ref.name}")
            )
        plan.append(steps.move(where, snap_home(ref), f"keep it as {ref}"))
        inherited = scan.attrs_of(got.path)
        wanted = {a: v for a, v in inherited.items() if not a.startswith(SNAP_META)}
        fix = self.backend.steps.reset(ref.volume, inherited, wanted, ref.volume)
        if vol is None:
            plan.append(steps.snapshot(final, ref.volume, f"{ref.volume}: writable copy of {ref}"))
            plan += fix
        else:
            plan += self.backend.replace_steps(vol, final, "receive", fix)
        return plan

    @staticmethod
    def _landed(scan: Scan, name: str) -> list[Subvol]:
        where = receiving_dir(name)
        return [s for s in scan.subvols if s.path.startswith(where + "/")]

    def _clear(self, scan: Scan, name: str) -> None:
        """Delete what an earlier receive into ``name`` left half done."""
        for s in reversed(self._landed(scan, name)):
            self.backend.host.run(["btrfs", "subvolume", "delete", s.path])

    @staticmethod
    def _is_replica(scan: Scan, vol: Subvol) -> bool:
        """Made by a receive: a writable snapshot of one of its own received snapshots."""
        parent = scan.by_uuid.get(vol.parent_uuid or "")
        return bool(
            parent and parent.ref and parent.ref.volume == vol.path and parent.received_uuid
        )

    def _local_changes(self, vol: Subvol) -> list[str]:
        """Files written since the volume was made (``find-new`` sees data, not deletions)."""
        out = self.backend.host.run(
            ["btrfs", "subvolume", "find-new", vol.path, str(vol.cgen + 1)]
        ).stdout
        return sorted({line.split()[-1] for line in out.splitlines() if line.startswith("inode ")})
