"""``g2d install``: the plan is printed; ``--dry-run`` writes nothing; without ``--yes`` and
without a terminal (CliRunner's stdin is none) it refuses, writing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import g2d.cli_install  # noqa: F401  registers `g2d install` (until cli.py imports it)
from g2d.cli import app
from g2d.core.lineage import Origin
from g2d.hosts.local import LocalHost
from g2d.lab.layout import LabLayout
from g2d.lab.process import random_token
from g2d.storage.base import BackendKind
from g2d.storage.lineage import create_op, seal_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import backend_class, pool_of

LOCAL = LocalHost()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / f"disk-{random_token()}.img"
    with open(image, "xb") as f:
        f.truncate(1 << 30)
    device = LOCAL.run(["losetup", "--show", "--find", "--partscan", str(image)]).stdout.strip()
    try:
        yield device
    finally:
        LOCAL.run(["losetup", "--detach", device])


@pytest.fixture
def work(tmp_path: Path) -> str:
    root = tmp_path / "src" / "sys"
    root.mkdir(parents=True)
    backend = backend_class(BackendKind.plain)(LOCAL)
    writer = LineageWriter(backend, str(root), pool_of(backend, str(root)), tmp_path / "lin")
    now = datetime.now(UTC)
    writer.run("create", create_op(backend, None, Origin(), now))
    (root / "g1" / "etc").mkdir()
    writer.run("seal g1", seal_op(backend, f"{root}/g1", now))
    return f"dir://{root}/g1@safe"


def _g2d(lab_world: LabLayout, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"G2D_STATE_DIR": str(tmp_path / "state"), "G2D_DOM0_ROOT": str(lab_world.mirror)}
    r = CliRunner().invoke(app, ["install", *args], env=env)
    return r.exit_code, r.stdout, r.stderr


def _signatures(disk: str) -> list[object]:
    return json.loads(LOCAL.run(["wipefs", "--json", disk]).stdout or "{}").get("signatures", [])


def test_dry_run_prints_the_plan_and_the_entries(
    lab_world: LabLayout, work: str, disk: str, tmp_path: Path
) -> None:
    code, out, _ = _g2d(lab_world, tmp_path, f"work={work}", f"boot=xfs://{disk}:/g1",
                        "--dry-run", "--esp-mib", "40")  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"plan: install local:{work[6:-5]}@g1-")
    assert lines[0].endswith(f" onto boot=xfs://{disk}:/g1")
    assert "    3. local: sgdisk --disk-guid " in out
    (entry,) = [ln for ln in lines if ln.startswith("    g2d-g1 (default): ")]
    assert entry.endswith(" rootfstype=xfs g2d.rootdir=/g1 rw console=tty0 console=ttyS0,115200")
    assert lines[-1] == "dry run: nothing was written"
    assert _signatures(disk) == []


def test_without_yes_and_without_a_terminal_it_refuses(
    lab_world: LabLayout, work: str, disk: str, tmp_path: Path
) -> None:
    code, out, err = _g2d(lab_world, tmp_path, "--work", work, "--boot", f"ext4://{disk}:/g1")
    assert code == 1
    assert "  boot entries (kernel " in out
    assert err == (
        f"error: not installing onto boot=ext4://{disk}:/g1: no terminal to ask for "
        "confirmation; nothing was written\n(read the plan (--dry-run), then pass --yes)\n"
    )
    assert _signatures(disk) == []
    assert not (tmp_path / "state" / "install").exists()
