"""Plan steps for the btrfs backend, each safe to run again after a crash.

A step that creates or removes a path carries ``done_if`` (``test -e`` / ``test ! -e``).
Setting an xattr is idempotent by itself. Removing one is not (``setfattr -x`` fails when
the attribute is gone, and no single read-only command exits 0 on "attribute absent"), so a
removal is two steps, set then remove, which together run again cleanly.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from g2d.core.plan import Step
from g2d.storage.btrfs_layout import meta_attr

_WORD = re.compile(r"[A-Za-z0-9_.:+,/@=-]*")


def attr_value(value: str) -> str:
    """``setfattr -v`` reads ``0x..`` as hex, ``0s..`` as base64 and ``"..."`` with
    escapes: words pass as they are (plans stay readable), anything else goes as base64."""
    if _WORD.fullmatch(value) and value[:2].lower() not in ("0x", "0s"):
        return value
    return "0s" + base64.b64encode(value.encode()).decode()


class Steps:
    """Step builders bound to one host name."""

    def __init__(self, host: str) -> None:
        self.host = host

    def mkdir(self, path: str, why: str) -> Step:
        return Step.run(self.host, ["mkdir", "-p", path], why)

    def create(self, path: str, why: str) -> Step:
        return Step.run(
            self.host, ["btrfs", "subvolume", "create", path], why, done_if=["test", "-e", path]
        )

    def snapshot(self, source: str, path: str, why: str, *, readonly: bool = False) -> Step:
        return Step.run(
            self.host,
            ["btrfs", "subvolume", "snapshot", *(["-r"] if readonly else []), source, path],
            why,
            done_if=["test", "-e", path],
        )

    def seal(self, path: str, why: str) -> Step:
        # root may write anywhere except into a read-only subvolume: `test -w` sees the ro flag
        return Step.run(
            self.host,
            ["btrfs", "property", "set", "-ts", path, "ro", "true"],
            why,
            done_if=["test", "!", "-w", path],
        )

    def move(self, old: str, new: str, why: str) -> Step:
        return Step.run(self.host, ["mv", "-T", old, new], why, done_if=["test", "-e", new])

    def delete(self, path: str, why: str) -> Step:
        return Step.run(
            self.host,
            ["btrfs", "subvolume", "delete", path],
            why,
            done_if=["test", "!", "-e", path],
        )

    def rmdir(self, path: str, why: str) -> Step:
        return Step.run(self.host, ["rmdir", path], why, done_if=["test", "!", "-e", path])

    def set_attr(
        self, path: str, name: str, value: str, why: str, *, until_ro: bool = False
    ) -> Step:
        """``until_ro``: the path becomes read-only later in the plan; skip once it is."""
        return Step.run(
            self.host,
            ["setfattr", "-n", name, "-v", attr_value(value), path],
            why,
            done_if=["test", "!", "-w", path] if until_ro else None,
        )

    def remove_attr(self, path: str, name: str, why: str, *, until_ro: bool = False) -> list[Step]:
        done = ["test", "!", "-w", path] if until_ro else None
        return [
            Step.run(
                self.host,
                ["setfattr", "-n", name, "-v", "", path],
                f"{why} (set first, so the removal can run again)",
                done_if=done,
            ),
            Step.run(self.host, ["setfattr", "-x", name, path], why, done_if=done),
        ]

    def meta(
        self, path: str, prefix: str, items: Mapping[str, str | None], present: Mapping[str, str]
    ) -> list[Step]:
        """Set ``g2d:`` keys under ``prefix``; a None value removes one that is ``present``."""
        steps: list[Step] = []
        for key, value in items.items():
            attr = meta_attr(prefix, key)
            if value is not None:
                steps.append(self.set_attr(path, attr, value, f"set {key}={value}"))
            elif attr in present:
                steps += self.remove_attr(path, attr, f"remove {key}")
        return steps

    def reset(
        self, path: str, inherited: Mapping[str, str], wanted: Mapping[str, str], why: str
    ) -> list[Step]:
        """Make ``path`` (a fresh writable snapshot) carry exactly ``wanted`` of our attrs."""
        steps: list[Step] = []
        for attr in sorted(inherited):
            if attr not in wanted:
                steps += self.remove_attr(path, attr, f"{why}: drop {attr}")
        for attr, value in wanted.items():
            if inherited.get(attr) != value:
                steps.append(self.set_attr(path, attr, value, f"{why}: {attr}={value}"))
        return steps
