"""Mirror lists, their files, health records and the choice of a mirror (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from g2d.core.mirrors import (
    BadTimestamp,
    Health,
    MirrorListError,
    NoMirror,
    Protocol,
    Resource,
    candidates,
    freshness_of,
    list_resource,
    parse_mirror_list,
    parse_timestamp_chk,
    probe_path,
    rank,
    stage3_pointer,
)
from g2d.settings import load_settings
from g2d.sources.mirror_health import HealthStore
from g2d.sources.mirror_lists import MirrorListsUnreadable, mirror_table, read_mirror_lists

NOW = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


def test_list_with_comments_blanks_and_every_scheme() -> None:
    text = """\
# the dom0's own copy first
file:///var/lib/portage/releases

http://pkg.example/gentoo/releases/   # remark after a URL
https://distfiles.gentoo.org/releases/
  rsync://mirror.example/gentoo/releases/
ssh://sync@pkg.example:2222/srv/portage/releases
#rsync://commented.example/releases/
http://pkg.example/gentoo/releases/
"""
    assert parse_mirror_list(text, "releases") == (
        "file:///var/lib/portage/releases",
        "http://pkg.example/gentoo/releases/",
        "https://distfiles.gentoo.org/releases/",
        "rsync://mirror.example/gentoo/releases/",
        "ssh://sync@pkg.example:2222/srv/portage/releases",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "mirror.example/gentoo",
            "'mirror.example/gentoo' is not a mirror URL: the scheme must be one of "
            "file, ftp, http, https, rsync, ssh",
        ),
        (
            "gopher://old.example/",
            "'gopher://old.example/' is not a mirror URL: the scheme "
            "must be one of file, ftp, http, https, rsync, ssh",
        ),
        ("http:///releases/", "'http:///releases/' is not a mirror URL: it names no host"),
        (
            "file://relative",
            "'file://relative' is not a mirror URL: file:// needs an absolute path",
        ),
        (
            "file://other.host/srv/r",
            "'file://other.host/srv/r' is not a mirror URL: file:// names no host; use ssh:// "
            "for another machine",
        ),
        (
            "http://a.example/ http://b.example/",
            "'http://a.example/ http://b.example/' is not a mirror URL: one URL per line",
        ),
    ],
)
def test_bad_line_names_file_line_and_text(line: str, message: str) -> None:
    with pytest.raises(MirrorListError) as caught:
        parse_mirror_list(f"# ok\nhttp://ok.example/\n{line}\n", "/etc/g2d/mirrors/releases")
    assert str(caught.value) == f"/etc/g2d/mirrors/releases:3: {message}"
    assert caught.value.hint == "one URL per line; '#' starts a comment"


def test_list_file_names() -> None:
    assert list_resource("repos") is Resource.repos
    assert list_resource("kernel") is Resource.kernels  # the old tool's name
    assert list_resource("package") is Resource.packages
    assert list_resource("binpkg") is Resource.binpkgs
    assert list_resource("repo") is None
    assert list_resource("hosts") is None


def health(
    url: str,
    *,
    reachable: bool = True,
    latency: float | None = 0.1,
    fresh: datetime | None = None,
    age: timedelta = timedelta(minutes=5),
) -> Health:
    return Health(url, NOW - age, reachable, latency if reachable else None, fresh)


def test_rank_reachable_then_fresh_then_fast_then_list_order() -> None:
    old, new = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
    urls = ["http://down/", "http://unmeasured/", "http://old-fast/", "http://new-slow/",
            "http://new-fast/", "http://new-fast-2/", "http://no-time/"]  # fmt: skip
    records = {
        "http://down/": health("http://down/", reachable=False),
        "http://old-fast/": health("http://old-fast/", latency=0.01, fresh=old),
        "http://new-slow/": health("http://new-slow/", latency=0.9, fresh=new),
        "http://new-fast/": health("http://new-fast/", latency=0.05, fresh=new),
        "http://new-fast-2/": health("http://new-fast-2/", latency=0.05, fresh=new),
        "http://no-time/": health("http://no-time/", latency=0.001),
    }
    assert rank(urls, records, now=NOW) == [
        "http://new-fast/",
        "http://new-fast-2/",  # a tie keeps the list's order: no shuffling
        "http://new-slow/",
        "http://old-fast/",
        "http://no-time/",
        "http://unmeasured/",
        "http://down/",
    ]


def test_old_measurements_count_as_none() -> None:
    urls = ["http://a/", "http://b/"]
    records = {
        "http://a/": health("http://a/", reachable=False, age=timedelta(days=2)),
        "http://b/": health("http://b/", reachable=False),
    }
    assert rank(urls, records, now=NOW) == ["http://a/", "http://b/"]
    assert rank(urls, records, now=NOW, ttl=timedelta(days=3)) == ["http://a/", "http://b/"]
    records["http://a/"] = health("http://a/", reachable=False)
    records["http://b/"] = health("http://b/", age=timedelta(days=2))
    assert rank(urls, records, now=NOW) == ["http://b/", "http://a/"]


def test_protocols() -> None:
    urls = ["https://s.example/r/", "http://p.example/r/", "rsync://r.example/r/",
            "file:///srv/r/", "ssh://u@h.example/srv/r/"]  # fmt: skip
    pick = lambda p: candidates(Resource.releases, urls, p, {}, now=NOW)  # noqa: E731
    assert pick("http") == ["https://s.example/r/", "http://p.example/r/"]
    assert pick("https") == ["https://s.example/r/"]
    assert pick(Protocol.rsync) == ["rsync://r.example/r/"]
    assert pick("file") == ["file:///srv/r/"]
    assert pick("ssh") == ["ssh://u@h.example/srv/r/"]
    assert pick("any") == urls


def test_no_mirror_of_that_protocol_is_an_error() -> None:
    with pytest.raises(NoMirror) as caught:
        candidates(Resource.repos, ["rsync://r.example/gentoo-portage/"], "http", {}, now=NOW)
    assert str(caught.value) == "no http mirror for repos"
    assert caught.value.hint == "its mirrors offer: rsync"
    with pytest.raises(NoMirror) as caught:
        candidates(Resource.kernels, [], "rsync", {}, now=NOW)
    assert caught.value.hint == "add one to the mirror list or set G2D_MIRRORS__KERNELS"


def test_stage3_pointer_and_probe_paths() -> None:
    assert stage3_pointer("http://m.example/gentoo/releases", "amd64", "desktop-openrc") == (
        "http://m.example/gentoo/releases/amd64/autobuilds/latest-stage3-amd64-desktop-openrc.txt"
    )
    assert probe_path(Resource.repos, "amd64") == "metadata/timestamp.chk"
    assert probe_path(Resource.releases, "arm64") == "arm64/autobuilds/latest-stage3.txt"
    assert probe_path(Resource.kernels, "amd64") == ""


def test_timestamps() -> None:
    assert parse_timestamp_chk("Mon, 20 May 2024 00:40:01 +0000\n") == datetime(
        2024, 5, 20, 0, 40, 1, tzinfo=UTC
    )
    with pytest.raises(BadTimestamp) as caught:
        parse_timestamp_chk("20240520\n", "rsync://m/gentoo-portage/metadata/timestamp.chk")
    assert str(caught.value) == (
        "rsync://m/gentoo-portage/metadata/timestamp.chk: '20240520' is not a time like "
        "'Mon, 20 May 2024 00:40:01 +0000'"
    )
    latest = "-----BEGIN PGP SIGNED MESSAGE-----\n\n# Latest as of x\n# ts=1716140883\na 1\n"
    assert freshness_of(Resource.releases, latest, "l") == datetime.fromtimestamp(1716140883, UTC)
    packages = "ARCH: amd64\nTIMESTAMP: 1716170110\nVERSION: 0\n\nCPV: a/b-1\nTIMESTAMP: 1\n"
    assert freshness_of(Resource.binpkgs, packages, "P") == datetime.fromtimestamp(1716170110, UTC)
    assert freshness_of(Resource.distfiles, "[structure]\n0=flat\n", "layout.conf") is None
    with pytest.raises(BadTimestamp) as caught:
        freshness_of(Resource.binpkgs, "ARCH: amd64\n\nTIMESTAMP: 1\n", "http://b/Packages")
    assert str(caught.value) == (
        "http://b/Packages: 'ARCH: amd64\\n\\nTIMESTAMP: 1' is not a time like "
        "'TIMESTAMP: <unix time>'"
    )


def test_health_json_round_trip(tmp_path: Path) -> None:
    store = HealthStore(tmp_path / "state" / "mirror-health.json")
    assert store.load() == {}
    a = health("http://a/", fresh=datetime(2025, 1, 1, tzinfo=UTC))
    b = Health("rsync://b/", NOW, False, error="rsync://b/: connection failed")
    store.record([a])
    HealthStore(store.path).record([b])  # a second writer keeps the first one's record
    assert HealthStore(store.path).load() == {"http://a/": a, "rsync://b/": b}
    store.path.write_text("{not json")
    assert store.load() == {}


def test_health_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="has no zone"):
        Health("http://a/", datetime(2025, 1, 1), True)


def write_lists(directory: Path, **lists: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in lists.items():
        (directory / name).write_text(text)
    return directory


def test_list_files_win_over_the_setting(tmp_path: Path) -> None:
    lists = write_lists(
        tmp_path / "mirrors",
        repos="rsync://127.0.0.1:873/gentoo-portage/\n",
        kernel="# the old tool's name\nfile:///srv/kernels/current/\n",
    )
    (lists / ".hidden").write_text("not a list\n")
    settings = load_settings(
        mirror_lists=lists, mirrors={"repos": ["rsync://setting.example/gentoo-portage/"]}
    )
    table = mirror_table(settings)
    assert table[Resource.repos] == ("rsync://127.0.0.1:873/gentoo-portage/",)
    assert table[Resource.kernels] == ("file:///srv/kernels/current/",)
    assert table[Resource.releases] == ("https://distfiles.gentoo.org/releases/",)  # default


def test_list_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(MirrorListsUnreadable) as caught:
        read_mirror_lists(tmp_path / "none")
    assert str(caught.value) == f"{tmp_path / 'none'}: is not a directory"
    lists = write_lists(tmp_path / "typo", repo="rsync://a.example/gentoo-portage/\n")
    with pytest.raises(MirrorListsUnreadable) as caught:
        read_mirror_lists(lists)
    assert str(caught.value) == f"{lists / 'repo'}: is not named for a resource type"
    assert caught.value.hint == (
        "name list files releases, repos, snapshots, distfiles, binpkgs, kernels, patchfiles, "
        "meta, packages, binpkg, kernel, package"
    )
    lists = write_lists(tmp_path / "twice", kernel="file:///a/\n", kernels="file:///b/\n")
    with pytest.raises(MirrorListsUnreadable) as caught:
        read_mirror_lists(lists)
    assert (
        str(caught.value) == f"{lists / 'kernels'}: lists kernels mirrors, as kernel does; keep one"
    )
    lists = write_lists(tmp_path / "bad", distfiles="http://ok.example/\nnot a url\n")
    with pytest.raises(MirrorListError) as caught:
        read_mirror_lists(lists)
    assert (
        str(caught.value)
        == f"{lists / 'distfiles'}:2: 'not a url' is not a mirror URL: one URL per line"
    )
