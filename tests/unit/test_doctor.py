"""Doctor findings: aggregation, the table, JSON, and how check failures become findings."""

from __future__ import annotations

import json

import pytest

from g2d.core.errors import CommandNotFound, CommandTimeout
from g2d.doctor import (
    Check,
    Finding,
    Probe,
    Report,
    Status,
    apt_fix,
    format_json,
    format_table,
    run_check,
    run_checks,
    version_in,
)

OK = Finding("gpg", Status.ok, "2.2.40", "/usr/bin/gpg")
MISSING = Finding("sgdisk", Status.missing, detail="sgdisk not found", fix=apt_fix("gdisk"))
BROKEN = Finding("zfs", Status.broken, "0.7.0", "zpool list: timed out", fix="restart zfs-fuse")


def test_all_ok() -> None:
    report = Report((OK, OK))
    assert report.ok
    assert report.exit_code() == 0
    assert report.problems == ()
    assert report.summary() == "2 checks: 2 ok"


def test_a_required_problem_fails_the_report() -> None:
    report = Report((OK, MISSING, BROKEN))
    assert not report.ok
    assert report.exit_code() == 1
    assert report.problems == (MISSING, BROKEN)
    assert report.summary() == "3 checks: 1 ok, 1 missing (sgdisk), 1 broken (zfs)"


def test_an_optional_problem_does_not() -> None:
    optional = Finding("kvm", Status.missing, required=False)
    assert Report((OK, optional)).ok


def test_table() -> None:
    assert format_table(Report((OK, MISSING, BROKEN))) == (
        "COMPONENT  STATUS   VERSION  DETAIL\n"
        "gpg        ok       2.2.40   /usr/bin/gpg\n"
        "sgdisk     missing  -        sgdisk not found\n"
        "                             fix: apt-get install gdisk, or make setup\n"
        "zfs        broken   0.7.0    zpool list: timed out\n"
        "                             fix: restart zfs-fuse\n"
        "3 checks: 1 ok, 1 missing (sgdisk), 1 broken (zfs)\n"
    )


def test_json() -> None:
    data = json.loads(format_json(Report((OK, MISSING))))
    assert data == {
        "ok": False,
        "findings": [
            {"name": "gpg", "status": "ok", "version": "2.2.40", "detail": "/usr/bin/gpg",
             "fix": "", "required": True},
            {"name": "sgdisk", "status": "missing", "version": "", "detail": "sgdisk not found",
             "fix": "apt-get install gdisk, or make setup", "required": True},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("line", "version"),
    [  # first lines as these tools print them on Debian 12
        ("gpg (GnuPG) 2.2.40", "2.2.40"),
        ("btrfs-progs v6.2", "6.2"),
        ("mkfs.xfs version 6.1.0", "6.1.0"),
        ("mke2fs 1.47.0 (5-Feb-2023)", "1.47.0"),
        ("losetup from util-linux 2.38.1", "2.38.1"),
        ("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026", "9.2p1"),
        ("rsync  version 3.5.0  protocol version 32", "3.5.0"),
        ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "7.2.22"),
        ("debootstrap 1.0.128+nmu2+deb12u2", "1.0.128+nmu2+deb12u2"),
        ("mkfs.fat 4.2 (2021-01-31)", "4.2"),
        ("GPT fdisk (sgdisk) version 1.0.9", "1.0.9"),
        ("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.", "1.35.0"),
        ("zfs-2.1.11-1", "2.1.11-1"),
        ("Usage: frobnicate [OPTIONS]", ""),
    ],
)
def test_version_in(line: str, version: str) -> None:
    assert version_in(line) == version


def test_a_timeout_is_a_broken_finding() -> None:
    def hangs(p: Probe) -> Finding:
        raise CommandTimeout("local", ["/usr/sbin/zpool", "list"], 5.0, "")

    found = run_check(Check("zfs", hangs), Probe())
    assert found == Finding(
        "zfs", Status.broken, detail="zpool list hung for 5 s",
        fix="find out what the tool waits for (a daemon, a lock, a device)",
    )  # fmt: skip


def test_a_user_error_is_a_broken_finding() -> None:
    def gone(p: Probe) -> Finding:
        raise CommandNotFound("local", "zpool", hint="apt-get install zfs-fuse")

    found = run_check(Check("zfs", gone), Probe())
    assert found == Finding(
        "zfs", Status.broken, detail="local: zpool not found", fix="apt-get install zfs-fuse"
    )


def test_a_bug_in_a_check_propagates() -> None:
    def buggy(p: Probe) -> Finding:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_checks([Check("bug", buggy)])


def test_report_keeps_the_order_of_checks() -> None:
    names = [f"c{i}" for i in range(12)]
    checks = [Check(n, lambda p, n=n: Finding(n, Status.ok)) for n in names]
    assert [f.name for f in run_checks(checks).findings] == names


def test_probe_path_adds_the_venv_and_sbin() -> None:
    dirs = Probe(path="/bin:/usr/bin:/bin").path.split(":")
    assert dirs[:2] == ["/bin", "/usr/bin"]  # kept once, in order
    assert "/usr/sbin" in dirs and "/sbin" in dirs
