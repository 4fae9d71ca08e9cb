"""Plan steps for plain volumes: build under a work name, rename into place, remove via trash.

Every step carries a ``done_if`` that stays true once the step's effect is there, also after
later steps ran, so applying the same plan again after a crash skips what was finished and
redoes at most one interrupted copy. Pure: builds ``Step`` values, runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from g2d.core.plan import Step
from g2d.storage import plain_attrs as xa
from g2d.storage.plain_layout import SWAP_PREFIX, VolPath, in_snapdir


def _test(*args: str) -> list[str]:
    return ["test", *args]


def copy_argv(src: str, dest: str) -> list[str]:
    """``dest`` (not there yet) becomes a copy of the directory ``src``."""
    return [
        "cp", "--archive",
        "--reflink=auto",     # share blocks where the file system can (xfs, btrfs)
        "--one-file-system",  # mounts inside are not part of a volume
        "--no-target-directory", "--", src, dest,
    ]  # fmt: skip


class Steps:
    """Steps on one host, in order."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.steps: list[Step] = []

    def add(self, argv: list[str], why: str, done_if: list[str] | None = None) -> None:
        self.steps.append(Step.run(self.host, argv, why, done_if=done_if))

    def snapdir(self, vp: VolPath) -> None:
        self.add(
            ["mkdir", "-p", "--", vp.snapdir],
            f"keep snapshots and work copies of {vp.leaf} beside it",
            done_if=_test("-d", vp.snapdir),
        )

    def remove(self, path: str, why: str, done_if: list[str]) -> None:
        if not in_snapdir(path):  # g2d removes only inside .g2d-snap; anything else is a bug
            raise ValueError(f"refusing to plan the removal of {path!r}")
        self.add(["rm", "-rf", "--one-file-system", "--", path], why, done_if=done_if)

    def attrs(
        self,
        path: str,
        set_: Mapping[str, str],
        remove: Iterable[str],
        done_if: list[str] | None,
        what: str,
    ) -> None:
        """Remove then set xattrs on ``path``; ``done_if`` None: each step checks itself."""
        for name in sorted(set(remove) - set(set_)):
            check = done_if if done_if is not None else xa.absent_argv(path, name)
            self.add(xa.remove_argv(path, name), f"drop {name} from {what}", done_if=check)
        for name, value in sorted(set_.items()):
            self.add(xa.set_argv(path, name, value), f"set {name} on {what}", done_if=done_if)

    def build(
        self,
        src: str | None,
        work: str,
        dest: str,
        set_: Mapping[str, str],
        remove: Iterable[str],
        what: str,
    ) -> None:
        """``dest`` = a copy of ``src`` (an empty directory for None) with xattrs fixed,
        built at ``work`` and renamed into place, so ``dest`` is never half there."""
        there = _test("-e", dest)
        self.remove(work, f"clear what an interrupted run left at {work}", there)
        if src is None:
            self.add(["mkdir", "--", work], f"make {what}", done_if=there)
        else:
            self.add(copy_argv(src, work), f"copy {src} for {what}", done_if=there)
        self.attrs(work, set_, remove, there, what)
        self.add(
            ["mv", "--no-target-directory", "--", work, dest],
            f"put {what} in place at {dest} (one rename)",
            done_if=there,
        )

    def discard(self, path: str, trash: str, what: str) -> None:
        """Rename ``path`` out of sight in one step, then remove it, so no half-removed
        tree ever stands under its real name."""
        gone = _test("!", "-e", path)
        self.remove(trash, f"clear an old {trash}", gone)
        self.add(
            ["mv", "--no-target-directory", "--", path, trash],
            f"take {what} out of sight",
            done_if=gone,
        )
        self.remove(trash, f"remove {what}", _test("!", "-e", trash))

    def swap(
        self,
        vp: VolPath,
        src: str,
        set_: Mapping[str, str],
        remove: Iterable[str],
        token: str,
        what: str,
    ) -> None:
        """Replace the volume by a copy of ``src`` (rollback, incremental receive).

        The new copy carries ``SWAP_PREFIX+token``; until the volume has it, the steps up
        to the first rename run (or re-run); once it has it, or between the two renames
        (the volume missing), they are skipped."""
        mark = SWAP_PREFIX + token
        new, old = vp.work("new"), vp.work("old")
        before = xa.missing_or_has_argv(vp.parent, vp.leaf, mark)
        self.remove(new, f"clear an interrupted copy at {new}", before)
        self.remove(old, f"clear an old set-aside copy at {old}", before)
        self.add(copy_argv(src, new), f"copy {src} for {what}", done_if=before)
        self.attrs(new, {**set_, mark: "1"}, remove, before, f"the copy for {what}")
        self.add(
            ["mv", "--no-target-directory", "--", vp.path, old],
            f"set the current {vp.leaf} aside",
            done_if=before,
        )
        self.add(
            ["mv", "--no-target-directory", "--", new, vp.path],
            f"put the copy in place as {vp.path}",
            done_if=xa.has_argv(vp.path, mark),
        )
        self.remove(old, f"remove the old {vp.leaf}", _test("!", "-e", old))
