"""`g2d lab build`: the step cache, and `g2d lab status` finding a damaged lab.

The cache tests run the lab's real builders for the steps that take seconds (keys, the ebuild
repository, package sets, snapshots, distfiles); the whole lab, stage3s and binhost
included, is the session's shared lab (`lab_world`, tests/conftest.py), whose first build the
slow test at the end checks.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from g2d.lab.build import (
    BuildReport,
    LabBusy,
    Step,
    StepContext,
    StepStatus,
    build_lab,
    stop_gpg_agent,
)
from g2d.lab.layout import LabLayout
from g2d.lab.stamps import read_stamp
from g2d.lab.status import Check, Finding, Level, is_sound, lab_status
from g2d.lab.steps import LAB_STEPS

FAST = ("keys", "repo", "package-sets", "snapshots", "distfiles")
FAST_STEPS = [s for s in LAB_STEPS if s.name in FAST]
G2D = Path(sys.executable).parent / "g2d"
RELEASE_UID = "g2d lab release engineering <releng@lab.g2d.invalid>"


def statuses(report: BuildReport) -> dict[str, str]:
    return {s.name: f"{s.status}: {s.reason}" for s in report.steps}


def replaced(steps: Sequence[Step], name: str, **changes: object) -> list[Step]:
    return [dataclasses.replace(s, **changes) if s.name == name else s for s in steps]  # type: ignore[arg-type]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabLayout]:
    layout = LabLayout(tmp_path / "lab")
    report = build_lab(layout, steps=FAST_STEPS)
    assert statuses(report) == {name: "built: never built" for name in FAST}
    yield layout
    stop_gpg_agent(layout.gnupg)  # a test that signs with gpg itself starts one


def test_every_builder_has_a_step() -> None:
    builders = [
        "g2d.lab.binhost",
        "g2d.lab.distfiles",
        "g2d.lab.kernel",
        "g2d.lab.keys",
        "g2d.lab.packagesets",
        "g2d.lab.patchfiles",
        "g2d.lab.releases",
        "g2d.lab.repo",
        "g2d.lab.snapshots",
        "g2d.lab.stage3",
    ]
    assert sorted({s.module for s in LAB_STEPS}) == builders


def test_a_second_build_is_all_cached_and_fast(lab: LabLayout) -> None:
    again = build_lab(lab, steps=FAST_STEPS)
    assert statuses(again) == {name: "cached: inputs and outputs unchanged" for name in FAST}
    assert again.seconds < 5.0, again.format_table()


def test_a_changed_input_rebuilds_its_step_and_the_steps_after_it(lab: LabLayout) -> None:
    later = replaced(FAST_STEPS, "repo", params={"timestamp": "2025-02-01T00:00:00+00:00"})
    report = build_lab(lab, steps=later)
    assert statuses(report) == {
        "keys": "cached: inputs and outputs unchanged",
        "repo": "built: inputs changed",
        "package-sets": "built: inputs changed",
        "snapshots": "built: inputs changed",
        "distfiles": "built: inputs changed",
    }
    timestamp = lab.gentoo_repo / "metadata" / "timestamp.chk"
    assert timestamp.read_text() == "Sat, 01 Feb 2025 00:00:00 +0000\n"
    assert build_lab(lab, steps=later).names(StepStatus.built) == []


def test_a_rebuild_with_the_same_result_stops_there(lab: LabLayout) -> None:
    # the repository is reproducible: rebuilt from a changed parameter that does not change
    # its bytes, it has the same digest, so nothing after it runs again
    same = replaced(FAST_STEPS, "repo", params={"timestamp": "2025-01-01T00:00:00Z"})
    assert statuses(build_lab(lab, steps=same)) == {
        "keys": "cached: inputs and outputs unchanged",
        "repo": "built: inputs changed",
        "package-sets": "cached: inputs and outputs unchanged",
        "snapshots": "cached: inputs and outputs unchanged",
        "distfiles": "cached: inputs and outputs unchanged",
    }


def test_a_damaged_output_is_rebuilt(lab: LabLayout) -> None:
    victim = next(p for p in sorted(lab.snapshots.iterdir()) if p.name.endswith(".tar.xz"))
    victim.unlink()
    report = build_lab(lab, steps=FAST_STEPS)
    assert report.names(StepStatus.built) == ["snapshots"]
    assert statuses(report)["snapshots"] == f"built: {lab.relative(victim)} missing"
    assert victim.is_file()


def test_force_rebuilds_every_step(lab: LabLayout) -> None:
    report = build_lab(lab, steps=FAST_STEPS, force=True)
    assert statuses(report) == {name: "built: forced" for name in FAST}


def test_only_builds_a_step_and_what_it_needs(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path / "lab")
    report = build_lab(layout, steps=FAST_STEPS, only=["package-sets"])
    assert [s.name for s in report.steps] == ["keys", "repo", "package-sets"]
    assert not lab_has(layout, "snapshots")


def lab_has(layout: LabLayout, step: str) -> bool:
    return read_stamp(layout, step) is not None


def _crash(ctx: StepContext) -> None:
    (ctx.out("mirror/distfiles") / "half-written").parent.mkdir(parents=True)
    (ctx.out("mirror/distfiles") / "half-written").write_text("")
    raise RuntimeError("the builder crashed")


def test_a_failed_step_keeps_the_old_output_and_is_retried(lab: LabLayout) -> None:
    # a builder that dies halfway: the test's own adapter, standing in for a crash
    before = sorted(p.name for p in lab.distfiles.rglob("*"))
    crashing = replaced(
        FAST_STEPS, "distfiles", run=_crash, params={"why": "a different key forces a build"}
    )
    with pytest.raises(RuntimeError, match="the builder crashed"):
        build_lab(lab, steps=crashing)
    assert sorted(p.name for p in lab.distfiles.rglob("*")) == before
    assert not any(p.name.endswith(".g2d-partial") for p in lab.mirror.iterdir())
    assert not lab_has(lab, "distfiles")
    assert statuses(build_lab(lab, steps=FAST_STEPS))["distfiles"] == "built: never built"


def test_a_build_in_progress_locks_the_lab(lab: LabLayout) -> None:
    with open(lab.root / ".g2d-build.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LabBusy) as busy:
            build_lab(lab, steps=FAST_STEPS)
    assert str(busy.value) == f"another g2d lab build is running in {lab.root}"
    assert busy.value.hint == "wait for it to finish"


# ----------------------------------------------------------------------------- status


def problems(layout: LabLayout) -> list[Finding]:
    return [f for f in lab_status(layout, steps=FAST_STEPS) if f.level is not Level.ok]


NOT_UP = Finding(Check.service, "lab", Level.info, "not up", fix="g2d lab up")


def test_status_of_a_sound_lab(lab: LabLayout) -> None:
    findings = lab_status(lab, steps=FAST_STEPS)
    assert is_sound(findings)
    assert problems(lab) == [NOT_UP]
    signatures = next(f for f in findings if f.check is Check.signature)
    assert signatures.level is Level.ok
    assert signatures.detail.endswith(" signatures good")


def test_status_finds_a_deleted_file(lab: LabLayout) -> None:
    victim = lab.gentoo_repo / "profiles" / "repo_name"
    victim.unlink()
    assert problems(lab) == [
        Finding(
            Check.file,
            "mirror/repos/gentoo/profiles/repo_name",
            Level.error,
            "missing (written by step repo)",
            fix="g2d lab build",
        ),
        NOT_UP,
    ]
    build_lab(lab, steps=FAST_STEPS)
    assert problems(lab) == [NOT_UP]


def signatures_checked(layout: LabLayout) -> int:
    summary = next(f for f in lab_status(layout, steps=FAST_STEPS) if f.subject == "mirror")
    good, _, total, *_ = summary.detail.split()
    assert summary.check is Check.signature and good == total
    return int(total)


def test_status_finds_a_corrupted_signature(lab: LabLayout) -> None:
    total = signatures_checked(lab)
    signature = next(p for p in sorted(lab.snapshots.iterdir()) if p.name.endswith(".gpgsig"))
    other = lab.root / "other"
    other.write_text("some other text, signed by the same key\n")
    # a genuine signature, of other bytes: gpg's verdict is BADSIG, never a parse error
    subprocess.run(
        ["gpg", "--homedir", lab.gnupg, "--batch", "--yes", "--armor", "--detach-sign",
         "--output", signature, other],
        check=True, capture_output=True,
    )  # fmt: skip
    rel = lab.relative(signature)
    assert problems(lab) == [
        Finding(
            Check.file,
            rel,
            Level.error,
            "was modified after it was built (written by step snapshots)",
            fix="g2d lab build",
        ),
        Finding(
            Check.signature,
            rel,
            Level.error,
            f"bad signature from {RELEASE_UID}: the signed bytes were changed",
            fix="g2d lab build",
        ),
        Finding(Check.signature, "mirror", Level.info, f"{total - 1} of {total} signatures good"),
        NOT_UP,
    ]
    result = subprocess.run(
        [G2D, "lab", "status", "--json"],
        env={**os.environ, "G2D_LAB_DIR": os.fspath(lab.root)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert {
        "check": "signature",
        "subject": rel,
        "level": "error",
        "detail": f"bad signature from {RELEASE_UID}: the signed bytes were changed",
        "fix": "g2d lab build",
    } in json.loads(result.stdout)["findings"]
    build_lab(lab, steps=FAST_STEPS)
    assert problems(lab) == [NOT_UP]


def test_status_finds_a_tampered_file_whose_checksum_list_is_intact(lab: LabLayout) -> None:
    total = signatures_checked(lab)
    tarball = next(p for p in sorted(lab.snapshots.iterdir()) if p.name.endswith(".tar.xz"))
    stat = tarball.stat()
    data = bytearray(tarball.read_bytes())
    data[-1] ^= 0xFF
    tarball.write_bytes(bytes(data))
    os.utime(tarball, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hides it from the stamp
    rel = lab.relative(tarball)
    latest = lab.snapshots / "gentoo-latest.tar.xz"  # a link to it, with its own .md5sum
    forced = "g2d lab build --force"  # size and mtime kept: a plain build sees nothing
    assert problems(lab) == [
        Finding(
            Check.signature,
            f"{rel}.gpgsig",
            Level.error,
            f"bad signature from {RELEASE_UID}: the signed bytes were changed",
            fix=forced,
        ),
        Finding(
            Check.digest,
            f"{rel}.md5sum",
            Level.error,
            f"{tarball.name}: MD5 differs from {tarball.name}.md5sum",
            fix=forced,
        ),
        Finding(
            Check.digest,
            f"{lab.relative(latest)}.md5sum",
            Level.error,
            f"{latest.name}: MD5 differs from {latest.name}.md5sum",
            fix=forced,
        ),
        Finding(Check.signature, "mirror", Level.info, f"{total - 1} of {total} signatures good"),
        Finding(Check.digest, "mirror", Level.info, "0 of 2 checksum lists match"),
        NOT_UP,
    ]
    assert build_lab(lab, steps=FAST_STEPS).names(StepStatus.built) == []
    assert build_lab(lab, steps=FAST_STEPS, force=True).names(StepStatus.built) == list(FAST)
    assert problems(lab) == [NOT_UP]


# -------------------------------------------------------------------------- whole lab


@pytest.mark.slow
def test_the_whole_lab_builds_then_is_all_cached_and_sound(
    lab_world_build: tuple[LabLayout, BuildReport],
) -> None:
    """The session's lab (`lab_world`): its first build made every step (a clean checkout,
    as in CI) or found every step current (built by an earlier session); never a part of
    it, which would mean a stamp that does not hold. One cold build serves this test and
    every test that uses the lab (it takes minutes; building a second one here would double
    them)."""
    layout, first = lab_world_build
    every = [s.name for s in LAB_STEPS]
    assert first.names(StepStatus.built) in (every, []), first.format_table()
    if first.names(StepStatus.built) == []:
        assert first.names(StepStatus.cached) == every, first.format_table()
    warm = build_lab(layout)
    assert warm.names(StepStatus.built) == [], warm.format_table()
    assert warm.seconds < 15.0, warm.format_table()
    findings = lab_status(layout)
    assert [f for f in findings if f.level is not Level.ok] == [NOT_UP]
    print(first.format_table(), warm.format_table(), sep="\n")  # the times for docs/lab.md


def test_patchfiles_overlay_has_the_modes_it_declares(tmp_path: Path) -> None:
    from g2d.lab.patchfiles import FILES, write_patchfiles

    (tmp_path / "over" / "stale").mkdir(parents=True)  # a previous overlay is replaced whole
    modes = write_patchfiles(tmp_path / "over")
    found = {
        os.fspath(p.relative_to(tmp_path / "over")): p.stat().st_mode & 0o7777
        for p in (tmp_path / "over").rglob("*")
        if p.is_file()
    }
    assert found == modes == {rel: mode for rel, (_, mode) in FILES.items()}
    assert (tmp_path / "over" / "root").stat().st_mode & 0o7777 == 0o700
    assert not (tmp_path / "over" / "stale").exists()
