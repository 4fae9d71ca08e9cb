"""What destroying a btrfs volume or snapshot takes with it, and the steps in a safe order.

btrfs itself would delete a snapshot that clones came from (they only keep a dangling
parent_uuid), but the contract keeps ZFS's rule: a clone depends on its origin, a hold
pins its snapshot, and a volume owns its snapshots and the subvolumes nested in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from g2d.core.plan import Step
from g2d.storage.base import SnapRef
from g2d.storage.btrfs_layout import HOLD, snap_home
from g2d.storage.btrfs_scan import Scan, Subvol
from g2d.storage.btrfs_steps import Steps


@dataclass
class Teardown:
    """Collects, deepest first, everything a destroy removes."""

    scan: Scan
    steps: Steps
    target: str  # the volume or snapshot asked for, as printed
    dependents: list[str] = field(default_factory=list)
    plan: list[Step] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)

    def _dependent(self, what: str) -> None:
        if what != self.target and what not in self.dependents:
            self.dependents.append(what)

    def volume(self, vol: Subvol) -> None:
        if vol.path in self._done:
            return
        self._done.add(vol.path)
        self._dependent(vol.path)
        for inner in self.scan.below(vol.path):
            if inner.ref is not None:
                self.snapshot(inner)
            elif inner.path in self.scan.origins:
                self.volume(inner)
            elif inner.path not in self._done:  # a leftover of a cut-off receive or rollback
                self._done.add(inner.path)
                self._dependent(inner.path)
                self.plan.append(self.steps.delete(inner.path, f"delete {inner.path}"))
        for snap in reversed(self.scan.snapshots_of(vol.path)):
            self.snapshot(snap)
        self.plan.append(self.steps.delete(vol.path, f"delete volume {vol.path}"))

    def snapshot(self, snap: Subvol) -> None:
        ref = snap.ref
        assert ref is not None
        if snap.path in self._done:
            return
        self._done.add(snap.path)
        self._dependent(str(ref))
        for clone in self.scan.clones(ref):
            self.volume(self.scan.by_path[clone])
        home = snap_home(ref)
        for name in sorted(self.scan.attrs_of(home)):
            if name.startswith(HOLD):
                tag = name[len(HOLD) :]
                self._dependent(
                    f"hold {tag}" if str(ref) == self.target else f"hold {tag} on {ref}"
                )
        self.plan.append(self.steps.delete(snap.path, f"delete snapshot {ref}"))
        self.plan.append(self.steps.rmdir(home, f"remove the home of {ref} (its holds and marks)"))


def teardown(scan: Scan, steps: Steps, target: Subvol) -> Teardown:
    """What destroying ``target`` (a volume or a snapshot) takes, and the steps."""
    ref: SnapRef | None = target.ref
    work = Teardown(scan, steps, str(ref) if ref else target.path)
    if ref:
        work.snapshot(target)
    else:
        work.volume(target)
    return work
