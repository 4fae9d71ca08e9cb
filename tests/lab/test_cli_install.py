"""``g2d install``: the plan is printed; ``--dry-run`` writes nothing; without ``--yes`` and
without a terminal (CliRunner's stdin is none) it refuses, writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import g2d.cli_install  # noqa: F401  registers `g2d install` (until cli.py imports it)
from g2d.cli import app
from g2d.core.lineage import Origin
from g2d.hosts.local import LocalHost
from g2d.install.esp import EspImage, list_dir, read_text
from g2d.lab.layout import LabLayout
from g2d.lab.zfs_fuse import ZfsPool
from g2d.storage.base import BackendKind
from g2d.storage.lineage import create_op, seal_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import backend_class

LOCAL = LocalHost()


@pytest.fixture
def disk(loop_disk) -> str:
    return loop_disk()  # type: ignore[no-any-return]


@pytest.fixture
def work(sealed_plain_g1) -> str:
    root, _ = sealed_plain_g1({"etc/os-release": "NAME=Gentoo\n"})
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


# --- into an existing pool: the machine's ESP gets the entries --------------------------------


def test_two_installs_into_an_existing_pool_write_the_machines_esp(
    lab_world: LabLayout, zfs_pool: ZfsPool, tmp_path: Path
) -> None:
    pool = zfs_pool.name
    backend = backend_class(BackendKind.zfs)(LOCAL)
    LOCAL.run(["zfs", "create", f"{pool}/sys"])
    writer = LineageWriter(backend, f"{pool}/sys", pool, tmp_path / "lin")
    now = datetime.now(UTC)
    writer.run("create", create_op(backend, None, Origin(), now))
    writer.run("seal g1", seal_op(backend, f"{pool}/sys/g1", now))
    LOCAL.run(["zfs", "create", f"{pool}/saturn"])
    esp = tmp_path / "esp.img"  # the machine's ESP: a vfat image written through mtools
    LOCAL.run(["mkfs.vfat", "-C", "-F", "32", "-n", "EFI", str(esp), str(40 * 1024)])
    work = f"zfs://{pool}/sys/g1@safe"
    for gen in ("g1", "g2"):
        code, out, err = _g2d(lab_world, tmp_path, "--work", work, "--boot",
                              f"zfs://{pool}/saturn/{gen}", "--esp", str(esp), "--yes",
                              "--esp-mib", "40", "--hostname", "saturn")  # fmt: skip
        assert code == 0, out + err
        assert "sgdisk" not in out and "zpool create" not in out
        (kernel,) = (lab_world.mirror / "kernels" / "current").iterdir()
        fallback = "g1" if gen == "g2" else "-"
        entries = "g2d-g1.conf" if gen == "g1" else "g2d-g1.conf, g2d-g2.conf"
        assert out.splitlines()[-1] == (
            f"boot entries: {entries}; default {gen}, fallback {fallback}; kernel {kernel.name}"
        )
    loader = read_text(EspImage(esp), "loader/loader.conf") or ""
    assert loader.splitlines()[0] == "default g2d-g2.conf"
    for gen in ("g1", "g2"):
        entry = read_text(EspImage(esp), f"loader/entries/g2d-{gen}.conf") or ""
        (options,) = [ln for ln in entry.splitlines() if ln.startswith("options ")]
        assert options.split()[1] == f"root=ZFS={pool}/saturn/{gen}"
    assert list_dir(EspImage(esp), f"g2d/{kernel.name}") == ["initramfs", "vmlinuz"]


def test_an_esp_that_is_not_vfat_or_with_a_new_disk_is_refused(
    lab_world: LabLayout, work: str, disk: str, tmp_path: Path
) -> None:
    not_esp = tmp_path / "data.img"
    not_esp.write_bytes(b"\0" * 4096)
    code, _, err = _g2d(lab_world, tmp_path, "--work", work, "--boot", "zfs://tank/saturn/g1",
                        "--esp", str(not_esp), "--yes")  # fmt: skip
    assert code == 1
    assert err == (
        f"error: boot partition {not_esp} holds no known file system, not vfat\n"
        "(name the EFI system partition, or the directory it is mounted on)\n"
    )
    code, _, err = _g2d(lab_world, tmp_path, "--work", work, "--boot", f"ext4://{disk}:/g1",
                        "--esp", str(tmp_path), "--yes")  # fmt: skip
    assert code == 1
    assert err == (
        f"error: esp={tmp_path}: boot=ext4://{disk}:/g1 makes its own ESP on the new disk\n"
        "(name esp= only for an install into an existing pool)\n"
    )
    assert _signatures(disk) == []
