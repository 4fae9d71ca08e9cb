"""The real doctor on this machine, checked against the same tools run independently."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from g2d import doctor
from g2d.doctor import CHECKS, Finding, Probe, Report, Status, run_checks, tool_check
from g2d.lab.zfs_fuse import ZfsPool

G2D = Path(sys.executable).parent / "g2d"


@pytest.fixture(scope="module")
def report() -> Report:
    return run_checks()


def finding(report: Report, name: str) -> Finding:
    return next(f for f in report.findings if f.name == name)


def first_line(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]


def test_every_check_reports(report: Report) -> None:
    assert [f.name for f in report.findings] == [c.name for c in CHECKS]
    for f in report.findings:
        assert f.status.is_ok() or f.fix, f"{f.name} is {f.status} and says nothing on a fix"


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI promises every component")
def test_ci_has_everything(report: Report) -> None:
    assert report.ok, doctor.format_table(report)


def test_gpg_version_is_what_gpg_says(report: Report) -> None:
    found = finding(report, "gpg")
    if shutil.which("gpg") is None:
        assert found.status is Status.missing
        return
    assert found.status is Status.ok
    assert first_line(["gpg", "--version"]) == f"gpg (GnuPG) {found.version}"


def test_rsync_version_is_what_rsync_says(report: Report) -> None:
    found = finding(report, "rsync")
    if shutil.which("rsync") is None:
        assert found.status is Status.missing
        return
    assert first_line(["rsync", "--version"]).startswith(f"rsync  version {found.version} ")


def test_python_packages_match_this_interpreter(report: Report) -> None:
    import portage

    assert finding(report, "portage").version == portage.VERSION
    assert finding(report, "gemato").version == importlib.metadata.version("gemato")
    assert finding(report, "prefect").version == importlib.metadata.version("prefect")
    assert all(finding(report, n).status is Status.ok for n in ("portage", "gemato", "prefect"))


def test_kernel_file_systems_match_proc(report: Report) -> None:
    mounted = {line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines()}
    for fs in ("btrfs", "xfs", "ext4"):
        found = finding(report, fs)
        if found.status is Status.ok and fs in mounted:
            assert found.detail.endswith(f"; the kernel mounts {fs}")


def test_static_elf_agrees_with_ldd(report: Report) -> None:
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("needs ldd (libc-bin)")
    found = finding(report, "busybox")
    programs = [os.path.realpath(sys.executable)]
    if found.status is not Status.missing:
        programs.append(os.path.realpath(found.detail.split()[0]))
    for exe in programs:
        r = subprocess.run([ldd, exe], capture_output=True, text=True, timeout=30)
        static = "not a dynamic executable" in r.stdout + r.stderr
        assert doctor.is_static_elf(exe) == static, exe
    if found.status is not Status.missing:
        assert (found.status is Status.ok) == doctor.is_static_elf(programs[-1])


def test_ovmf_file_exists(report: Report) -> None:
    found = finding(report, "ovmf")
    if found.status is Status.ok:
        assert Path(found.detail).is_file()


def test_a_program_that_does_not_exist_is_missing() -> None:
    check = tool_check("nosuch", "g2d-no-such-program", ["--version"], "g2d-no-such-package")
    [found] = run_checks([check]).findings
    assert found == Finding(
        "nosuch",
        Status.missing,
        detail="g2d-no-such-program not found",
        fix="apt-get install g2d-no-such-package, or make setup",
    )


def test_a_program_without_a_version_is_broken() -> None:
    true = shutil.which("true")
    assert true is not None
    [found] = run_checks([tool_check("true", "true", [], "coreutils")]).findings
    assert found == Finding(
        "true",
        Status.broken,
        detail=f"{true}: exit 0",
        fix="reinstall coreutils: apt-get install --reinstall coreutils",
    )


def test_a_hanging_program_is_broken_and_does_not_hang_the_doctor() -> None:
    started = time.monotonic()
    report = run_checks([tool_check("sleepy", "sleep", ["600"], "coreutils")], Probe(timeout=0.5))
    assert time.monotonic() - started < 10
    assert report.findings[0].status is Status.broken
    assert report.findings[0].detail == "sleep 600 hung for 0.5 s"


def test_zfs_with_the_lab_daemon(zfs_pool: ZfsPool) -> None:
    found = doctor.check_zfs(Probe(timeout=30))
    assert found.status is Status.ok, found
    pools = found.detail.split("pools: ", 1)[1].split(", ")
    assert zfs_pool.name in pools
    pid = int(found.detail.split("daemon pid ", 1)[1].split(";")[0])
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "zfs-fuse"


def test_cli_doctor_json(report: Report) -> None:
    started = time.monotonic()
    r = subprocess.run([G2D, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30
    data = json.loads(r.stdout)
    assert [f["name"] for f in data["findings"]] == [c.name for c in CHECKS]
    assert r.returncode == (0 if data["ok"] else 1)


def test_cli_doctor_table() -> None:
    r = subprocess.run([G2D, "doctor"], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["COMPONENT", "STATUS", "VERSION", "DETAIL"]
    assert lines[-1].startswith(f"{len(CHECKS)} checks: ")
    rows = [line.split()[0] for line in lines[1:-1] if not line.startswith(" ")]
    assert rows == [c.name for c in CHECKS]
