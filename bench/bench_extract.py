"""stage3 extraction: g2d's ``extract_stage3`` (every member checked before anything is
written; xz decoded on all cores into a scratch file, listed, then extracted) against the
handbook's ``tar xpf FILE --xattrs-include='*.*' --numeric-owner -C DIR``, on the lab's
openrc stage3. Clearing the target and flushing writes happen outside the timed part.

``python -m bench extract`` from the repository root.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Comparison
from g2d.lab.build import build_lab
from g2d.lab.layout import LabLayout
from g2d.rootfs.extract import extract_stage3

REPO = Path(__file__).resolve().parent.parent
CURRENT = "releases/amd64/autobuilds/current-stage3-amd64-openrc"


def lab() -> LabLayout:
    layout = LabLayout(Path(os.environ.get("G2D_TEST_LAB") or REPO / "state" / "test-lab"))
    build_lab(layout)  # a second or so when the tests' lab is built already
    return layout


def _timed(fn: Callable[[Path], object], dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    subprocess.run(["sync"], check=True)  # the previous run's writeback is not this run's cost
    started = time.perf_counter()
    fn(dest)
    return time.perf_counter() - started


def main(repeat: int = 3) -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)
    (tarball,) = (lab().mirror / CURRENT).glob("stage3-amd64-openrc-*.tar.xz")
    with tempfile.TemporaryDirectory(prefix="g2d-bench-extract-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)

        def g2d(dest: Path) -> None:
            extract_stage3(tarball, dest, scratch=tmp)

        def handbook(dest: Path) -> None:
            subprocess.run(
                ["tar", "xpf", tarball, "--xattrs-include=*.*", "--numeric-owner", "-C", dest],
                check=True,
            )

        g, b = float("inf"), float("inf")
        for _ in range(repeat):  # alternated, so drift of the machine hits both alike
            g = min(g, _timed(g2d, tmp / "g2d"))
            b = min(b, _timed(handbook, tmp / "tar"))
    name = "stage3 extract (checked) vs handbook tar xpf"
    return [Comparison(name, g, b, target=0.95)]


if __name__ == "__main__":
    for c in main():
        print(c.row())
