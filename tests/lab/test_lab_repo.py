"""The lab's ebuild repository and package sets, checked by Portage and gemato themselves.

Portage runs in clean mode (EPREFIX="") inside the lab's private mount namespace; the probes
below are small Python scripts that use Portage's own config and portdbapi there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from portage.exception import DigestException
from portage.manifest import Manifest

from g2d.hosts.local import LocalHost
from g2d.lab.keys import LabKeys, ensure_keys
from g2d.lab.packagesets import FLAVOURS, SUFFIXES, check_names, set_files, write_package_sets
from g2d.lab.portage_config import (
    PortageConfig,
    check_namespace,
    etc_portage,
    portage_program,
    run_portage,
    write_config,
)
from g2d.lab.repo import RepoInfo, build_repo
from g2d.lab.staging import LabTreeError

STAMP = datetime(2026, 5, 20, tzinfo=UTC)
GEMATO = os.fspath(Path(sys.prefix) / "bin" / "gemato")
WIDE = {"COLUMNS": "1000"}  # gemato's log lines wrap at the terminal width
IMPLICIT = {"amd64", "elibc_glibc", "kernel_linux"}

PROFILE_PROBE = """\
import json, os, sys
from portage.dbapi.porttree import portdbapi
from portage.package.ebuild.config import config

repo, out = sys.argv[1], {}
for profile in sys.argv[2:]:
    settings = config(config_profile_path=os.path.join(repo, "profiles", profile),
                      config_root="/", target_root="/", eprefix="")
    db = portdbapi(mysettings=settings)
    out[profile] = {
        "system": {a.lstrip("*"): db.xmatch("bestmatch-visible", a.lstrip("*"))
                   for a in map(str, settings.packages)},
        "use": sorted(settings["USE"].split()),
        "selinux masked": "selinux" in settings.usemask,
    }
    db.close_caches()
print(json.dumps(out))
"""

MASK_PROBE = """\
import json, sys
import portage

print(json.dumps({cpv: portage.getmaskingstatus(cpv) for cpv in sys.argv[1:]}))
"""

VISIBLE_PROBE = """\
import json, sys
import portage
from portage.dep import Atom

db = portage.db[portage.root]["porttree"].dbapi
out = {"visible": {a: db.xmatch("bestmatch-visible", a) for a in sys.argv[2:]}, "bad": []}
for path in sys.argv[1].split(","):
    for line in open(path):
        words = line.split("#")[0].split()
        if not words:
            continue
        atom = Atom(words[0])  # raises InvalidAtom on a malformed one
        found = db.xmatch("match-all", atom)
        iuse = {f.lstrip("+-") for cpv in found for f in db.aux_get(cpv, ["IUSE"])[0].split()}
        if not found or any(w.lstrip("-") not in iuse for w in words[1:] if path.endswith(".uses")):
            out["bad"].append(line.strip())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabKeys]:
    home = tmp_path_factory.mktemp("repo-keys") / "gnupg"
    yield ensure_keys(home)
    LocalHost().run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    return build_repo(tmp_path_factory.mktemp("repo") / "gentoo", timestamp=STAMP)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: LabKeys) -> RepoInfo:
    return build_repo(tmp_path_factory.mktemp("signed") / "gentoo", keys=keys, timestamp=STAMP)


@pytest.fixture
def portage_work(tmp_path: Path, start_component: Callable[[str, Callable[[], Any]], Any]) -> Path:
    work = tmp_path / "portage"
    start_component("clean-mode portage", lambda: check_namespace(work))
    return work


def probe(script: str, args: list[str], *, work: Path, keep: list[Path]) -> Any:
    path = work / "probe.py"
    path.write_text(script)
    done = run_portage([sys.executable, path, *args], work=work, keep=keep)
    return json.loads(done.stdout)


def errors(lines: list[str]) -> list[str]:
    """gemato's ERROR lines (it logs to stdout, padded to the terminal width)."""
    return [line.rstrip() for line in lines if line.startswith("ERROR")]


def tree(root: Path) -> dict[str, tuple[bytes, int, float]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in [*files, "."]:
            path = Path(dirpath, name)
            st = path.stat()
            data = path.read_bytes() if name != "." else b""
            out[os.fspath(path.relative_to(root))] = (data, st.st_mode, st.st_mtime)
    return out


# --- the repository ---------------------------------------------------------------------


def test_same_inputs_give_identical_trees(
    repo: RepoInfo, signed: RepoInfo, keys: LabKeys, tmp_path: Path
) -> None:
    again = build_repo(tmp_path / "again", timestamp=STAMP)
    assert tree(again.path) == tree(repo.path)
    signed_again = build_repo(tmp_path / "signed-again", keys=keys, timestamp=STAMP)
    assert tree(signed_again.path) == tree(signed.path)  # the signature too
    assert tree(signed.path) != tree(repo.path)


def test_every_profile_resolves_its_system_set(repo: RepoInfo, portage_work: Path) -> None:
    write_config(
        etc_portage(portage_work),
        PortageConfig(repo.path, repo.default_profile, portage_work / "pkgs",
                      portage_work / "distfiles", portage_work / "var"),
    )  # fmt: skip
    found = probe(PROFILE_PROBE, [str(repo.path), *repo.profiles], work=portage_work,
                  keep=[repo.path])  # fmt: skip
    base = {
        "sys-apps/baselayout-lab": "sys-apps/baselayout-lab-2.17",
        "virtual/service-manager": "virtual/service-manager-1",
    }
    openrc = {**base, "sys-apps/openrc-lab": "sys-apps/openrc-lab-0.56"}
    systemd = {**base, "sys-apps/systemd-lab": "sys-apps/systemd-lab-257"}
    selinux = {**openrc, "sec-policy/selinux-base-lab": "sec-policy/selinux-base-lab-2.20240916"}
    p = "default/linux/amd64/23.0"
    want = {
        p: (openrc, "nls"),
        f"{p}/systemd": (systemd, "nls systemd"),
        f"{p}/desktop": (openrc, "X dbus nls wayland"),
        f"{p}/desktop/systemd": (systemd, "X dbus nls systemd wayland"),
        f"{p}/desktop/plasma": (openrc, "X dbus kde nls wayland"),
        f"{p}/desktop/plasma/systemd": (systemd, "X dbus kde nls systemd wayland"),
        f"{p}/desktop/gnome": (openrc, "X dbus gnome nls wayland"),
        f"{p}/desktop/gnome/systemd": (systemd, "X dbus gnome nls systemd wayland"),
        f"{p}/selinux": (selinux, "nls selinux"),
        f"{p}/hardened": (openrc, "hardened nls"),
        f"{p}/hardened/selinux": (selinux, "hardened nls selinux"),
    }
    assert {
        profile: (got["system"], " ".join(f for f in got["use"] if f not in IMPLICIT))
        for profile, got in found.items()
    } == want
    assert [p for p, got in found.items() if not got["selinux masked"]] == [
        f"{p}/selinux",
        f"{p}/hardened/selinux",
    ]
    assert list(found) == list(repo.profiles)


def test_emerge_reports_the_masked_versions(repo: RepoInfo, portage_work: Path) -> None:
    write_config(
        etc_portage(portage_work),
        PortageConfig(repo.path, repo.default_profile, portage_work / "pkgs",
                      portage_work / "distfiles", portage_work / "var"),
    )  # fmt: skip
    masked = ["kde-plasma/plasma-lab-6.1", "app-misc/hello-1.1", "app-misc/eula-lab-1.0"]
    found = probe(MASK_PROBE, masked, work=portage_work, keep=[repo.path])
    assert found == {
        "kde-plasma/plasma-lab-6.1": ["package.mask"],
        "app-misc/hello-1.1": ["~amd64 keyword"],
        "app-misc/eula-lab-1.0": ["lab-EULA license(s)"],
    }
    emerge = portage_program("emerge")
    done = run_portage(
        [emerge, "--pretend", "=kde-plasma/plasma-lab-6.1"],
        work=portage_work, keep=[repo.path], check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "- kde-plasma/plasma-lab-6.1::gentoo (masked by: package.mask)" in done.stderr


def test_thin_manifests_list_the_distfiles(repo: RepoInfo, tmp_path: Path) -> None:
    assert sorted(repo.distfiles) == ["hello-1.0.tar.gz", "hello-1.1.tar.gz"]
    manifests = sorted(p.relative_to(repo.path) for p in repo.path.rglob("Manifest*"))
    assert manifests == [Path("app-misc/hello/Manifest")]
    lines = (repo.path / manifests[0]).read_text().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["DIST", name, str(len(data))] for name, data in sorted(repo.distfiles.items())
    ]
    distdir = tmp_path / "distfiles"
    distdir.mkdir()
    for name, data in repo.distfiles.items():
        (distdir / name).write_bytes(data)
    manifest = Manifest(str(repo.path / "app-misc/hello"), str(distdir), thin=True)
    for name in repo.distfiles:
        manifest.checkFileHashes("DIST", name)  # Portage's own digest check
    (distdir / "hello-1.0.tar.gz").write_bytes(b"tampered")
    with pytest.raises(DigestException):
        manifest.checkFileHashes("DIST", "hello-1.0.tar.gz")


def test_gemato_verifies_the_signed_tree_and_finds_a_tampered_file(
    signed: RepoInfo, keys: LabKeys, tmp_path: Path
) -> None:
    key = tmp_path / "release.asc"
    keys.export_public(keys.release, key)
    # -R: never refresh the key from a keyserver (no network here)
    gemato = [GEMATO, "verify", "--require-signed-manifest", "-R", "-K", str(key)]
    done = LocalHost().run([*gemato, str(signed.path)], check=False, env=WIDE)
    assert done.returncode == 0, done.stdout
    info = [line.rstrip() for line in done.lines()]
    assert f"INFO     - primary key: {keys.release}" in info
    assert "INFO     Manifest timestamp: 2026-05-20 00:00:00 UTC" in info
    assert signed.signed_by == keys.release

    copy = tmp_path / "copy"
    shutil.copytree(signed.path, copy, symlinks=True)
    ebuild = copy / "app-misc/hello/hello-1.0.ebuild"
    ebuild.write_text(ebuild.read_text().replace('SLOT="0"', 'SLOT="1"'))
    done = LocalHost().run([*gemato, str(copy)], check=False, env=WIDE)
    assert done.returncode == 1
    assert errors(done.lines()) == [
        "ERROR    Manifest mismatch for app-misc/hello/hello-1.0.ebuild"
    ]


def test_an_unsigned_tree_is_refused_by_gemato_when_a_signature_is_required(
    repo: RepoInfo, signed: RepoInfo, keys: LabKeys, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(signed.path, copy, symlinks=True)
    manifest = copy / "Manifest"
    body = manifest.read_text().split("\n\n", 1)[1].split("-----BEGIN PGP SIGNATURE", 1)[0]
    manifest.write_text(body)  # the same entries, signature stripped
    key = tmp_path / "release.asc"
    keys.export_public(keys.release, key)
    gemato = [GEMATO, "verify", "--require-signed-manifest", "-R", "-K", str(key)]
    done = LocalHost().run([*gemato, str(copy)], check=False, env=WIDE)
    assert done.returncode == 1
    assert errors(done.lines()) == [f"ERROR    Top-level Manifest {manifest} is not OpenPGP signed"]


def test_build_repo_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    dest = tmp_path / "precious"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me\n")
    with pytest.raises(LabTreeError) as caught:
        build_repo(dest)
    assert str(caught.value) == f"{dest} is not empty and is not a g2d lab repository"
    assert caught.value.hint == (
        "the lab replaces only a repository it wrote; pick an empty directory"
    )
    assert (dest / "notes.txt").read_text() == "keep me\n"


# --- the package sets --------------------------------------------------------------------


def test_package_sets_have_the_old_tools_names(repo: RepoInfo, tmp_path: Path) -> None:
    dest = tmp_path / "packages"
    write_package_sets(dest, repo)
    write_package_sets(dest, repo)  # replaces its own tree
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(set_files())
    assert sorted(f"common.{sfx}" for sfx in SUFFIXES) == [
        f for f in files if f.startswith("common")
    ]
    stems = sorted({f.rsplit(".", 1)[0] for f in files} - {"README", "common"})
    assert stems == sorted(f.stem for f in FLAVOURS)
    assert "23.0/desktop/plasma.pkgs" in files
    assert "23.0/desktop/plasma/systemd.pkgs" in files
    assert sorted(f for f in files if f.startswith("23.0/hardened/selinux.")) == [
        "23.0/hardened/selinux.conf",
        "23.0/hardened/selinux.patches",
        "23.0/hardened/selinux.pkgs",
        "23.0/hardened/selinux.services",
    ]
    assert [f.profile for f in FLAVOURS if f.profile not in repo.profiles] == []


def test_package_sets_name_only_what_portage_finds(repo: RepoInfo, portage_work: Path) -> None:
    """Every atom and USE flag resolves in the repository, and the plasma sets, rendered
    into /etc/portage, change what Portage selects as they should."""
    sets = portage_work.parent / "packages"
    write_package_sets(sets, repo)

    def both(sfx: str) -> str:
        return "".join(
            (sets / f).read_text()
            for f in (f"common.{sfx}", f"23.0/desktop/plasma.{sfx}")
            if (sets / f).exists()
        )

    rendered = {
        "package.use": both("uses"),
        "package.accept_keywords": both("keys"),
        "package.license": both("license"),
        "package.mask": both("mask"),
        "package.unmask": both("unmask"),
    }
    write_config(
        etc_portage(portage_work),
        PortageConfig(repo.path, "default/linux/amd64/23.0/desktop/plasma",
                      portage_work / "pkgs", portage_work / "distfiles", portage_work / "var",
                      package_files=rendered),
    )  # fmt: skip
    atom_files = [
        str(p) for p in sorted(sets.rglob("*"))
        if p.suffix.lstrip(".") in ("pkgs", "uses", "keys", "license", "mask", "unmask")
    ]  # fmt: skip
    atoms = ["kde-plasma/plasma-lab", "app-misc/eula-lab", "dev-libs/libdemo:1",
             "dev-libs/libdemo:2", "app-misc/hello"]  # fmt: skip
    found = probe(VISIBLE_PROBE, [",".join(atom_files), *atoms], work=portage_work,
                  keep=[repo.path, sets])  # fmt: skip
    assert found == {
        "bad": [],
        "visible": {
            "kde-plasma/plasma-lab": "kde-plasma/plasma-lab-6.1",  # .unmask
            "app-misc/eula-lab": "app-misc/eula-lab-1.0",  # .license
            "dev-libs/libdemo:1": "dev-libs/libdemo-1.5",  # .keys
            "dev-libs/libdemo:2": "dev-libs/libdemo-2.0",  # .mask caps the series
            "app-misc/hello": "app-misc/hello-1.0",  # 1.1 stays ~amd64
        },
    }


def test_package_sets_refuse_names_the_repository_lacks(repo: RepoInfo) -> None:
    files = {
        "common.pkgs": "app-misc/hello\napp-misc/nope\n",
        "common.uses": "app-misc/hello doc -nls frobnicate\n",
        "common.conf": 'USE="anything goes here"\n',
    }
    with pytest.raises(LabTreeError) as caught:
        check_names(files, repo)
    assert str(caught.value) == (
        "package sets name what the lab repository lacks: "
        "['common.pkgs: app-misc/nope', 'common.uses: app-misc/hello frobnicate']"
    )


def test_package_sets_refuse_a_directory_they_did_not_write(repo: RepoInfo, tmp_path: Path) -> None:
    dest = tmp_path / "packages"
    dest.mkdir()
    (dest / "mine.pkgs").write_text("sys-apps/pv\n")
    with pytest.raises(LabTreeError) as caught:
        write_package_sets(dest, repo)
    assert str(caught.value) == f"{dest} is not empty and is not a g2d lab package-set tree"
    assert (dest / "mine.pkgs").read_text() == "sys-apps/pv\n"
