"""esync's setup from the settings, its choice of parts, its dry-run plan and how one failed
part is reported (no network: the plan reads only settings, and run_esync is given a sync
function that stands in for the real one, which the flows tier runs against the lab)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from g2d.settings import load_settings
from g2d.sources.errors import BadSignature
from g2d.sources.esync import EsyncFailed, listen, plan_esync, run_esync, select_parts
from g2d.sources.esync_errors import PARTS, MissingReleaseKeys, NoMirrorsFor, UnknownPart
from g2d.sources.esync_parts import EsyncSetup, Part, PartOutcome


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> EsyncSetup:
    for name in [n for n in os.environ if n.startswith("G2D_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("G2D_CONFIG", str(tmp_path / "g2d.toml"))
    (tmp_path / "g2d.toml").write_text(
        'dom0_root = "/srv/dom0"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        "[mirrors]\n"
        'releases = ["http://127.0.0.1:1/releases/", "http://127.0.0.1:2/releases/"]\n'
        'kernels = ["rsync://127.0.0.1:3/gentoo/kernels/"]\n'
        "[esync]\n"
        'stage3_variants = ["openrc", "systemd"]\n'
        'profiles = ["file:///srv/site/profiles/"]\n'
        f'release_keys = ["{tmp_path / "missing.asc"}"]\n'
    )
    return EsyncSetup.from_settings(load_settings())


def test_the_part_names_are_the_enum() -> None:
    assert ", ".join(Part) == PARTS


def test_setup_from_settings(setup: EsyncSetup) -> None:
    assert setup.variants == ("openrc", "systemd")
    assert setup.mirrors[Part.profiles] == ("file:///srv/site/profiles/",)
    assert setup.dest(Part.repos) == Path("/srv/dom0/repos/gentoo")
    # Gentoo's defaults stay for what the file leaves out; the site parts have none
    assert setup.configured() == [Part.releases, Part.repos, Part.snapshots, Part.distfiles,
                                  Part.binpkgs, Part.kernels, Part.profiles]  # fmt: skip


def test_select_parts(setup: EsyncSetup) -> None:
    assert select_parts(setup, ["kernels", "releases", "kernels"]) == [Part.releases, Part.kernels]
    with pytest.raises(UnknownPart) as e:
        select_parts(setup, ["repo"])
    assert str(e.value) == "'repo' is not a part of the dom0 tree"
    assert e.value.hint == f"parts: {PARTS}"


def test_dry_run_plan(setup: EsyncSetup) -> None:
    rows = [p.row() for p in plan_esync(setup, [Part.releases, Part.kernels])]
    assert rows == [
        {"part": "releases", "what": "latest stage3 of amd64 openrc, systemd (keep 2)",
         "from": "http://127.0.0.1:1/releases/ then http://127.0.0.1:2/releases/",
         "to": "/srv/dom0/releases"},
        {"part": "kernels", "what": "the site's tree, as it is",
         "from": "rsync://127.0.0.1:3/gentoo/kernels/", "to": "/srv/dom0/kernels"},
    ]  # fmt: skip
    with pytest.raises(NoMirrorsFor) as e:
        plan_esync(setup, [Part.meta])
    assert (str(e.value), e.value.hint) == (
        "no mirror is configured for meta", "set [mirrors] meta in g2d.toml, or G2D_MIRRORS__META"
    )  # fmt: skip


def test_missing_release_keys(setup: EsyncSetup) -> None:
    with pytest.raises(MissingReleaseKeys) as e:
        setup.key_files()
    assert str(e.value) == f"release key file(s) not found: {setup.release_keys[0]}"


def test_one_failed_part_does_not_stop_the_others(setup: EsyncSetup) -> None:
    def sync(setup: EsyncSetup, part: Part) -> PartOutcome:
        if part is Part.repos:
            raise BadSignature("rsync://m/gentoo-portage/Manifest", "bad signature: altered")
        return PartOutcome(str(part), f"http://m/{part}/", 10, 1, 0.5, "checked")

    heard: list[tuple[int, str, bool | None]] = []
    with listen(lambda i, n, part, o: heard.append((i, str(part), o.ok if o else None))):
        report = run_esync(setup, [Part.releases, Part.repos, Part.kernels], sync=sync)
    assert [(o.part, o.ok, o.verification) for o in report.outcomes] == [
        ("releases", True, "checked"), ("repos", False, "FAILED"), ("kernels", True, "checked")
    ]  # fmt: skip
    assert heard == [(1, "releases", None), (1, "releases", True), (2, "repos", None),
                     (2, "repos", False), (3, "kernels", None), (3, "kernels", True)]  # fmt: skip
    with pytest.raises(EsyncFailed) as e:
        report.raise_if_failed()
    assert str(e.value) == (
        "esync: 1 of 3 part(s) failed: repos: rsync://m/gentoo-portage/Manifest: "
        "bad signature: altered"
    )
