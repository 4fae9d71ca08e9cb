"""An esync of an already-current repos tree against a bare ``rsync`` of it (issue 5: at most
1.2x its time, i.e. a ratio of at least 0.83).

Two trees, served by an rsync daemon on 127.0.0.1: the lab repository as built (about 200
files), and the same padded to Gentoo's shape with many small files (``FILES``), because the
bare rsync's cost grows with the tree and g2d's (one timestamp.chk) does not. The lab must be
built (``g2d lab build`` or the test session's ./state/test-lab).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import Comparison, compare
from g2d.lab.daemons import start_rsync_daemon
from g2d.lab.layout import LabLayout
from g2d.sources.rsync import portage_options
from g2d.sources.tree_sync import sync_repository

FILES = 30_000  # Gentoo's tree has ~150k; enough to show how the two scale
REPO = Path(__file__).resolve().parent.parent


def _lab_repo() -> Path:
    root = Path(os.environ.get("G2D_TEST_LAB") or REPO / "state" / "test-lab")
    repo = LabLayout(root).gentoo_repo
    if not (repo / "metadata" / "timestamp.chk").is_file():
        raise SystemExit(f"no lab repository at {repo}: run `g2d lab build` or the tests first")
    return repo


def _pad(tree: Path, files: int) -> None:
    for i in range(files):
        d = tree / f"cat-{i % 150:03d}" / f"pkg-{i // 150 % 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"pkg-{i}.ebuild").write_text(f"EAPI=8\nDESCRIPTION='padding {i}'\n")


def _one(name: str, served: Path, tmp: Path) -> Comparison:
    with start_rsync_daemon({"gentoo-portage": served}, state_dir=tmp / f"rsyncd-{name}") as d:
        url = d.url("gentoo-portage")
        dest = tmp / f"{name}-dest" / "gentoo"
        sync_repository(url, dest, verify=False)  # the padding is not in the Manifests
        bare = ["rsync", *portage_options(url), "--no-motd", url, os.fspath(dest) + "/"]

        def g2d() -> None:
            assert not sync_repository(url, dest).changed

        def baseline() -> None:
            subprocess.run(bare, check=True, stdout=subprocess.DEVNULL)

        return compare(f"esync repos, current ({name}) vs bare rsync", g2d, baseline,
                       repeat=5, target=0.83)  # fmt: skip


def main() -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)  # measure the work, not the console
    repo = _lab_repo()
    with tempfile.TemporaryDirectory(prefix="g2d-bench-esync-") as tmp_name:
        tmp = Path(tmp_name)
        padded = tmp / "padded"
        shutil.copytree(repo, padded)
        _pad(padded, FILES)
        return [
            _one("lab tree", repo, tmp),
            _one(f"+{FILES // 1000}k files", padded, tmp),
        ]
