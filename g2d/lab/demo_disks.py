"""The demo's disks: a loop device over a sparse image, and the way back from any leftover.

The demo's own data lives in one directory; what a killed run left there (a mount, a loop
device over an image in it) is released before the next run starts and after every run,
so nothing stays mounted or looped whatever happened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from g2d.lab.process import run


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are written as octal."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory`` in this process's mount table, deepest first."""
    top = os.fspath(directory)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == top or point.startswith(f"{top}/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def loops_backed_under(directory: Path) -> list[str]:
    """Loop devices whose backing file lies below ``directory``."""
    listed = json.loads(run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"]).stdout
                        or '{"loopdevices": []}')  # fmt: skip
    top = f"{os.fspath(directory)}/"
    return [d["name"] for d in listed.get("loopdevices", [])
            if (d.get("back-file") or "").removesuffix(" (deleted)").startswith(top)]  # fmt: skip


def release_under(directory: Path) -> list[str]:
    """Unmount everything below ``directory`` and detach the loop devices over its images;
    what was released, one line each."""
    done = []
    for point in mounts_under(directory):
        run(["umount", point])
        done.append(f"unmounted {point}")
    for device in loops_backed_under(directory):
        run(["losetup", "--detach", device])
        done.append(f"detached {device}")
    return done


@contextmanager
def loop_disk(image: Path, size_mib: int) -> Iterator[str]:
    """A new sparse ``image`` of ``size_mib`` on a loop device that scans partitions; the
    device is detached on the way out (the image stays, with what was written to it)."""
    with open(image, "xb") as f:
        f.truncate(size_mib << 20)
    device = run(["losetup", "--show", "--find", "--partscan", image]).stdout.strip()
    try:
        yield device
    finally:
        run(["losetup", "--detach", device], check=False)
