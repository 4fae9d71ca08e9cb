"""What a lab component may leave behind: loop devices, mounts. Read from the tools' JSON.

Used by tests after a teardown and by `g2d lab down` to prove nothing is left.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from g2d.lab.process import run


def _loop_backing_files() -> list[tuple[str, str]]:
    out = run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"]).stdout
    if not out.strip():  # no loop device at all prints nothing
        return []
    return [
        (dev["name"], (dev.get("back-file") or "").removesuffix(" (deleted)"))
        for dev in json.loads(out)["loopdevices"]
    ]


def _at_or_under(path: str, base: Path) -> bool:
    root = os.fspath(base.resolve())
    return path == root or path.startswith(root.rstrip("/") + "/")


def loop_devices_for(image: Path) -> list[str]:
    """Loop devices whose backing file is `image` (also once `image` has been deleted)."""
    want = os.fspath(image.resolve())
    return [name for name, back in _loop_backing_files() if back == want]


def loop_devices_under(directory: Path) -> list[str]:
    """Loop devices backed by any file at or below `directory`."""
    return [name for name, back in _loop_backing_files() if _at_or_under(back, directory)]


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`."""
    out = run(["findmnt", "--list", "--json", "--output", "TARGET"]).stdout
    return [
        fs["target"] for fs in json.loads(out)["filesystems"] if _at_or_under(fs["target"], path)
    ]


def mount_info(mountpoint: Path) -> dict[str, str]:
    """`findmnt` facts for exactly `mountpoint`: source, fstype, options."""
    out = run(
        [
            "findmnt",
            "--json",
            "--output",
            "TARGET,SOURCE,FSTYPE,OPTIONS",
            "--mountpoint",
            mountpoint,
        ]
    ).stdout
    (fs,) = json.loads(out)["filesystems"]
    return {k: str(v) for k, v in fs.items()}
