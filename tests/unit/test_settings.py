"""Settings: defaults < g2d.toml < G2D_* environment, and errors that name the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from g2d import settings as settings_mod
from g2d.settings import (
    GENTOO_MIRRORS,
    InvalidSettings,
    Resource,
    Settings,
    SiteConfig,
    default_state_dir,
    find_config_file,
    load_settings,
    render_json,
    render_toml,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No G2D_* variables, no ./g2d.toml, no /etc/g2d/g2d.toml: only what a test writes."""
    for name in list(os.environ):
        if name.startswith("G2D_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(settings_mod, "SYSTEM_CONFIG", tmp_path / "etc" / "g2d.toml")
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    s = load_settings()
    assert s.dom0_root == Path("/var/lib/portage")
    assert s.state_dir == Path("/var/lib/g2d")
    assert s.lab_dir == Path("/var/lib/g2d/lab")
    assert list(s.mirrors) == list(Resource)
    assert s.mirrors[Resource.releases] == ["https://distfiles.gentoo.org/releases/"]
    assert s.mirrors[Resource.repos][0] == "rsync://rsync.gentoo.org/gentoo-portage/"
    assert all(s.mirrors[r] == [] for r in Resource if r.is_site_specific())


@pytest.mark.parametrize(
    ("uid", "xdg", "expected"),
    [
        (0, "/xdg/state", "/var/lib/g2d"),  # root ignores XDG
        (1000, "/xdg/state", "/xdg/state/g2d"),
        (1000, "", "/home/u/.local/state/g2d"),
        (1000, "relative/state", "/home/u/.local/state/g2d"),  # XDG says: ignore relative
    ],
)
def test_state_dir(monkeypatch: pytest.MonkeyPatch, uid: int, xdg: str, expected: str) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert default_state_dir() == Path(expected)
    assert load_settings().lab_dir == Path(expected) / "lab"


def test_lab_dir_follows_state_dir_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G2D_STATE_DIR", "/srv/g2d")
    assert load_settings().lab_dir == Path("/srv/g2d/lab")
    monkeypatch.setenv("G2D_LAB_DIR", "/scratch/lab")
    assert load_settings().lab_dir == Path("/scratch/lab")


def test_file_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = write(
        tmp_path / "site.toml",
        'dom0_root = "/srv/portage"\n'
        'state_dir = "/srv/g2d"\n'
        "[mirrors]\n"
        'releases = ["file:///srv/releases/", "http://127.0.0.1:8080/releases/"]\n'
        'kernels = ["rsync://pkg.example/gentoo/kernels/current/"]\n',
    )
    monkeypatch.setenv("G2D_CONFIG", str(conf))
    s = load_settings()
    assert s.dom0_root == Path("/srv/portage")
    assert s.lab_dir == Path("/srv/g2d/lab")
    assert s.mirrors[Resource.releases] == [
        "file:///srv/releases/",
        "http://127.0.0.1:8080/releases/",
    ]
    assert s.mirrors[Resource.kernels] == ["rsync://pkg.example/gentoo/kernels/current/"]
    # a type the file leaves out keeps its default
    assert s.mirrors[Resource.snapshots] == list(GENTOO_MIRRORS[Resource.snapshots])


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = write(
        tmp_path / "site.toml",
        'dom0_root = "/from/file"\n'
        'lab_dir = "/file/lab"\n'
        "[mirrors]\n"
        'releases = ["http://file.example/releases/"]\n'
        'repos = ["rsync://file.example/gentoo-portage/"]\n',
    )
    monkeypatch.setenv("G2D_CONFIG", str(conf))
    monkeypatch.setenv("G2D_DOM0_ROOT", "/from/env")
    monkeypatch.setenv("G2D_MIRRORS__RELEASES", '["http://env.example/releases/"]')
    s = load_settings()
    assert s.dom0_root == Path("/from/env")
    assert s.lab_dir == Path("/file/lab")
    assert s.mirrors[Resource.releases] == ["http://env.example/releases/"]
    # the environment replaces one type; the file's other types stay
    assert s.mirrors[Resource.repos] == ["rsync://file.example/gentoo-portage/"]


def test_env_mirror_list_as_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G2D_MIRRORS__DISTFILES", "http://a.example/d/  rsync://b.example/d/")
    assert load_settings().mirrors[Resource.distfiles] == [
        "http://a.example/d/",
        "rsync://b.example/d/",
    ]


def test_whole_mirror_table_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G2D_MIRRORS", '{"binpkgs": ["http://127.0.0.1:1/binpkgs/"]}')
    s = load_settings()
    assert s.mirrors[Resource.binpkgs] == ["http://127.0.0.1:1/binpkgs/"]
    assert s.mirrors[Resource.releases] == list(GENTOO_MIRRORS[Resource.releases])


def test_config_file_search_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_env: Path
) -> None:
    assert find_config_file() is None
    system = write(settings_mod.SYSTEM_CONFIG, 'dom0_root = "/from/etc"\n')
    assert find_config_file() == system
    assert load_settings().dom0_root == Path("/from/etc")
    local = write(clean_env / "g2d.toml", 'dom0_root = "/from/cwd"\n')
    assert find_config_file() == local
    assert load_settings().dom0_root == Path("/from/cwd")
    named = write(tmp_path / "named.toml", 'dom0_root = "/from/named"\n')
    monkeypatch.setenv("G2D_CONFIG", str(named))
    assert find_config_file() == named
    assert load_settings().dom0_root == Path("/from/named")


def test_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G2D_DOM0_ROOT", "/from/env")
    assert load_settings(dom0_root="/given").dom0_root == Path("/given")


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("G2D_LAB_DIR", "~/lab")
    assert load_settings().lab_dir == Path("/home/u/lab")


def refused(**env: str) -> InvalidSettings:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with pytest.raises(InvalidSettings) as caught:
            load_settings()
    return caught.value


def test_bad_env_value_names_the_key() -> None:
    e = refused(G2D_DOM0_ROOT="relative/path")
    assert (
        str(e)
        == "invalid settings: setting 'dom0_root': needs an absolute path, got 'relative/path'"
    )
    assert e.hint == "set G2D_DOM0_ROOT or dom0_root in a g2d.toml (none was found)"


def test_bad_mirror_url_in_file_names_the_key(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "g2d.toml",
        '[mirrors]\nsnapshots = ["https://ok.example/snapshots/", "mirror.example/snapshots"]\n',
    )
    e = refused(G2D_CONFIG=str(conf))
    assert str(e) == (
        "invalid settings: setting 'mirrors.snapshots.1': 'mirror.example/snapshots' is not a "
        "mirror URL: the scheme must be one of file, ftp, http, https, rsync, ssh"
    )
    assert e.hint == f"set G2D_MIRRORS__SNAPSHOTS or mirrors.snapshots in {conf}"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http:///releases/", "it names no host"),
        ("file://relative", "file:// needs an absolute path"),
        ("gopher://old.example/", "the scheme must be one of file, ftp, http, https, rsync, ssh"),
    ],
)
def test_bad_mirror_urls(url: str, why: str) -> None:
    e = refused(G2D_MIRRORS__RELEASES=f'["{url}"]')
    assert str(e) == (
        f"invalid settings: setting 'mirrors.releases.0': {url!r} is not a mirror URL: {why}"
    )


def test_unknown_resource_type() -> None:
    e = refused(G2D_MIRRORS='{"profiles": ["http://a.example/"]}')
    assert str(e) == (
        "invalid settings: setting 'mirrors.profiles': Input should be 'releases', 'repos', "
        "'snapshots', 'distfiles', 'binpkgs', 'kernels', 'patchfiles', 'meta' or 'packages'"
    )
    assert e.hint == "set G2D_MIRRORS or [mirrors] in a g2d.toml (none was found)"


def test_unknown_key_in_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "g2d.toml", 'dom0root = "/srv/portage"\n')
    e = refused(G2D_CONFIG=str(conf))
    assert str(e) == "invalid settings: unknown setting 'dom0root'"
    assert e.hint == f"{conf} may set: dom0_root, state_dir, lab_dir, mirrors, mirror_lists, esync"


def test_bad_state_dir_reports_only_the_cause() -> None:
    # lab_dir derives from state_dir; its knock-on error is not reported twice
    e = refused(G2D_STATE_DIR="state")
    assert str(e) == "invalid settings: setting 'state_dir': needs an absolute path, got 'state'"


def test_env_json_that_is_not_json() -> None:
    e = refused(G2D_MIRRORS="releases=http://a.example/")
    assert str(e) == "invalid settings: G2D_MIRRORS is not valid JSON"
    assert e.hint == """e.g. G2D_MIRRORS='{"releases": ["https://host/releases/"]}'"""


def test_file_that_is_not_toml(tmp_path: Path) -> None:
    conf = write(tmp_path / "g2d.toml", "dom0_root = [\n")
    e = refused(G2D_CONFIG=str(conf))
    assert str(e).startswith(f"{conf}: not valid TOML: ")


def test_named_file_missing(tmp_path: Path) -> None:
    e = refused(G2D_CONFIG=str(tmp_path / "nope.toml"))
    assert str(e) == f"G2D_CONFIG names {str(tmp_path / 'nope.toml')!r}, which is not a file"
    assert e.hint == "create it, or unset G2D_CONFIG"


def test_toml_output_loads_back_equal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    odd = '/srv/a "quoted" dir/ünïcode\\x'
    s = load_settings(dom0_root=odd, mirrors={"meta": ["http://127.0.0.1:8000/meta/"]})
    text = render_toml(s)
    assert tomllib.loads(text)["dom0_root"] == odd
    monkeypatch.setenv("G2D_CONFIG", str(write(tmp_path / "out.toml", text)))
    assert load_settings() == s


def test_json_output() -> None:
    s = load_settings(dom0_root="/srv/portage")
    assert render_json(s).startswith('{\n  "dom0_root": "/srv/portage",\n')


def test_site_config_is_a_plain_model_for_blocks() -> None:
    # a Prefect block reuses these fields: each one documented, no environment involved
    assert not issubclass(SiteConfig, Settings)
    assert all(f.description for f in SiteConfig.model_fields.values())
    c = SiteConfig(state_dir="/srv/g2d")
    assert c.lab_dir == Path("/srv/g2d/lab")
    assert c.dom0_root == Path("/var/lib/portage")


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.dom0_root = Path("/elsewhere")  # type: ignore[misc]


def test_mirror_lists_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().mirror_lists is None
    monkeypatch.setenv("G2D_MIRROR_LISTS", str(tmp_path / "mirrors"))
    s = load_settings()
    assert s.mirror_lists == tmp_path / "mirrors"
    monkeypatch.setenv("G2D_CONFIG", str(write(tmp_path / "out.toml", render_toml(s))))
    monkeypatch.delenv("G2D_MIRROR_LISTS")
    assert load_settings() == s


def test_mirror_lists_must_be_absolute() -> None:
    e = refused(G2D_MIRROR_LISTS="config/mirrors")
    assert str(e) == (
        "invalid settings: setting 'mirror_lists': needs an absolute path, got 'config/mirrors'"
    )
    assert e.hint == "set G2D_MIRROR_LISTS or mirror_lists in a g2d.toml (none was found)"
