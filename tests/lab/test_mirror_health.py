"""Probing the lab mirror over http and rsync, remembering the results, trying mirrors in turn,
and `g2d mirror` on top of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import g2d.cli_mirror  # noqa: F401  registers `g2d mirror`
from g2d.cli import app
from g2d.core.mirrors import Resource
from g2d.lab.mirror_served import LabMirror
from g2d.sources.errors import BadSignature, TransferError
from g2d.sources.mirror_health import AllMirrorsFailed, HealthStore, first_working, probe, probe_all
from g2d.sources.tree_sync import sync_repository

DEAD_RSYNC = "rsync://127.0.0.1:1/gentoo-portage/"
DEAD_HTTP = "http://127.0.0.1:1/releases/"
REFUSED = (
    "connection failed ([Receiver] failed to connect to 127.0.0.1 (127.0.0.1): "
    "Connection refused (111))"
)


def packages_time(lab_mirror: LabMirror) -> datetime:
    header = (lab_mirror.layout.binpkgs / "Packages").read_text().split("\n\n")[0]
    line = next(x for x in header.splitlines() if x.startswith("TIMESTAMP: "))
    return datetime.fromtimestamp(int(line.split()[1]), UTC)


def test_probe_each_resource(lab_mirror: LabMirror) -> None:
    http = lab_mirror.http.url
    expected = {
        (lab_mirror.rsync.url("gentoo-portage"), Resource.repos): datetime(2025, 1, 1, tzinfo=UTC),
        (f"{http}releases/", Resource.releases): datetime(2025, 1, 8, 12, tzinfo=UTC),
        (lab_mirror.rsync.url("gentoo") + "releases/", Resource.releases): datetime(
            2025, 1, 8, 12, tzinfo=UTC
        ),
        (f"{http}binpkgs/", Resource.binpkgs): packages_time(lab_mirror),
        (f"{http}distfiles/", Resource.distfiles): None,
        (f"{http}snapshots/", Resource.snapshots): None,
        (f"{http}kernels/", Resource.kernels): None,
        (lab_mirror.rsync.url("gentoo") + "kernels/", Resource.kernels): None,
    }
    for (url, resource), fresh in expected.items():
        h = probe(url, resource)
        assert (h.url, h.reachable, h.fresh_as_of, h.error) == (url, True, fresh, None), resource
        assert h.latency is not None and 0 < h.latency < 10


def test_probe_dead_mirrors() -> None:
    h = probe(DEAD_RSYNC, Resource.repos)
    assert (h.reachable, h.latency, h.error) == (False, None, f"{DEAD_RSYNC}: {REFUSED}")
    h = probe(DEAD_HTTP, Resource.releases)
    assert not h.reachable
    assert h.error is not None and h.error.startswith(
        f"{DEAD_HTTP}amd64/autobuilds/latest-stage3.txt: "
    )


def test_dead_mirror_first_the_next_is_used_and_remembered(
    lab_mirror: LabMirror, tmp_path: Path
) -> None:
    store = HealthStore.in_state_dir(tmp_path / "state")
    good = lab_mirror.rsync.url("gentoo-portage")
    dest = tmp_path / "repos" / "gentoo"
    result = first_working([DEAD_RSYNC, good], lambda url: sync_repository(url, dest), store=store)
    assert result.url == good and result.changed
    remembered = HealthStore(store.path).load()
    assert remembered[DEAD_RSYNC].reachable is False
    assert remembered[DEAD_RSYNC].error == f"{DEAD_RSYNC}: {REFUSED}"
    assert remembered[good].reachable is True


def test_verification_error_is_raised_at_once(tmp_path: Path) -> None:
    tried: list[str] = []

    def attempt(url: str) -> None:
        tried.append(url)
        raise BadSignature(url, "bad signature")

    with pytest.raises(BadSignature):
        first_working(["http://a.invalid/", "http://b.invalid/"], attempt)
    assert tried == ["http://a.invalid/"]


def test_every_mirror_failing_lists_each(tmp_path: Path) -> None:
    def attempt(url: str) -> None:
        raise TransferError(url, "HTTP 404 Not Found")

    with pytest.raises(AllMirrorsFailed) as caught:
        first_working(["http://a.invalid/", "http://b.invalid/"], attempt)
    assert str(caught.value) == (
        "no mirror worked: http://a.invalid/: HTTP 404 Not Found; "
        "http://b.invalid/: HTTP 404 Not Found"
    )
    assert isinstance(caught.value, TransferError)  # the task may retry the whole list later


def run_cli(lab_mirror: LabMirror, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "G2D_STATE_DIR": str(tmp_path / "state"),
        "G2D_MIRRORS": json.dumps(
            {
                "repos": [DEAD_RSYNC, lab_mirror.rsync.url("gentoo-portage")],
                "releases": [
                    DEAD_HTTP,
                    f"{lab_mirror.http.url}releases/",
                    lab_mirror.rsync.url("gentoo") + "releases/",
                ],
            }
        ),
    }
    r = CliRunner().invoke(app, ["mirror", *args], env=env)
    return r.exit_code, r.stdout, r.stderr


def test_cli_prints_the_mirror_it_would_use(lab_mirror: LabMirror, tmp_path: Path) -> None:
    code, out, _ = run_cli(lab_mirror, tmp_path, "repos", "rsync")
    assert (code, out) == (0, lab_mirror.rsync.url("gentoo-portage") + "\n")
    code, out, _ = run_cli(lab_mirror, tmp_path, "releases", "http", "plasma", "--arch", "amd64")
    pointer = "amd64/autobuilds/latest-stage3-amd64-desktop-openrc.txt"
    assert (code, out) == (0, f"{lab_mirror.http.url}releases/{pointer}\n")
    code, out, _ = run_cli(lab_mirror, tmp_path, "releases", "any", "--all")
    lines = [line.split("\t") for line in out.splitlines()]
    live = {f"{lab_mirror.http.url}releases/", lab_mirror.rsync.url("gentoo") + "releases/"}
    # the two live ones are equally fresh, so latency orders them; the dead one comes last
    assert {u for u, _ in lines[:2]} == live and lines[2][0] == DEAD_HTTP
    assert all(h.endswith("as of 2025-01-08 12:00 UTC") for _, h in lines[:2])
    assert lines[2][1].startswith(f"unreachable: {DEAD_HTTP}amd64/autobuilds/latest-stage3.txt: ")
    code, out, _ = run_cli(lab_mirror, tmp_path, "repos", "any", "--json")
    data = json.loads(out)
    assert data["chosen"] == lab_mirror.rsync.url("gentoo-portage")
    assert [r["health"]["reachable"] for r in data["ranking"]] == [True, False]


def test_cli_errors(lab_mirror: LabMirror, tmp_path: Path) -> None:
    code, _, err = run_cli(lab_mirror, tmp_path, "repos", "http")
    assert (code, err) == (1, "error: no http mirror for repos\n(its mirrors offer: rsync)\n")
    code, _, err = run_cli(lab_mirror, tmp_path, "repos", "rsync", "plasma")
    assert (code, err) == (
        1,
        "error: a profile selects a stage3 variant; repos mirrors take none\n"
        "(drop the profile, or ask for releases)\n",
    )
    code, _, err = run_cli(lab_mirror, tmp_path, "repo", "rsync")
    assert code == 2 and "'repo' is not a mirror type (releases, repos, snapshots" in err


def test_probe_all_records(lab_mirror: LabMirror, tmp_path: Path) -> None:
    store = HealthStore(tmp_path / "h.json")
    found = probe_all([DEAD_RSYNC, lab_mirror.rsync.url("gentoo-portage")], "repos", store=store)
    assert [h.reachable for h in found] == [False, True]
    assert set(store.load()) == {DEAD_RSYNC, lab_mirror.rsync.url("gentoo-portage")}
