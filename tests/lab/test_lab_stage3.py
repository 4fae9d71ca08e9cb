"""The lab stage3 root: a real root file system in which Portage runs as on Gentoo.

One openrc and one systemd root are built once for this module (the debootstrap tarball comes
from the lab's cache; a cold cache costs about two minutes and a Debian mirror). Every check
runs the real tools inside the root through a Chroot: emerge, portageq, getent, python3.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from g2d.hosts.chroot import Chroot
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.lab_debootstrap import base_tarball
from g2d.lab.lab_names import Stamp, Variant
from g2d.lab.layout import LabLayout
from g2d.lab.repo import RepoInfo, build_repo
from g2d.lab.repo_ebuilds import FILES
from g2d.lab.stage3 import Stage3BuildFailed, Stage3Root, build_stage3_root

STAMP = Stamp("20250108T120000Z")
ENV = {"TERM": "dumb"}
SYSTEM = {
    Variant.openrc: [
        "sys-apps/baselayout-lab-2.17",
        "sys-apps/openrc-lab-0.56",
        "virtual/service-manager-1",
    ],
    Variant.systemd: [
        "sys-apps/baselayout-lab-2.17",
        "sys-apps/systemd-lab-257",
        "virtual/service-manager-1",
    ],
}


def lab_cache() -> Path:
    """The debootstrap cache `g2d lab build` uses, so tests and the lab share one download."""
    return LabLayout.from_settings().cache / "debootstrap"


def build_or_skip(build):  # type: ignore[no-untyped-def]
    try:
        return build()
    except ComponentUnavailable as exc:
        reason = f"stage3 root cannot be built: {exc}" + (f" ({exc.hint})" if exc.hint else "")
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> RepoInfo:
    return build_repo(tmp_path_factory.mktemp("lab-repo") / "gentoo")


@pytest.fixture(scope="module")
def roots(
    repo: RepoInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Variant, Stage3Root]]:
    base = tmp_path_factory.mktemp("stage3")
    built = {
        variant: build_or_skip(
            lambda variant=variant: build_stage3_root(
                base / str(variant),
                variant=variant,
                stamp=STAMP,
                repo=repo.path,
                cache_dir=lab_cache(),
                distfiles=repo.distfiles,
            )
        )
        for variant in Variant
    }
    yield built
    shutil.rmtree(base)


def in_root(root: Stage3Root, argv: list[str], **kw):  # type: ignore[no-untyped-def]
    with Chroot(root.root) as ch:
        return ch.run(argv, env=ENV, check=False, **kw)


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_emerge_info_runs_with_the_variants_profile(
    roots: dict[Variant, Stage3Root], variant: Variant
) -> None:
    done = in_root(roots[variant], ["emerge", "--info"])
    assert done.returncode == 0, done.stderr
    first = done.lines()[0]
    want = rf"Portage 3\.0\.\d+ \(python 3\.11\.\d+-final-0, {re.escape(variant.profile())}, .*\)"
    assert re.fullmatch(want, first), first
    repo_block = done.stdout.split("Repositories:\n\n", 1)[1].split("\n\n", 1)[0]
    assert repo_block.splitlines()[:2] == ["gentoo", "    location: /var/db/repos/gentoo"]


def test_portage_is_a_system_install_with_an_empty_eprefix(
    roots: dict[Variant, Stage3Root],
) -> None:
    code = (
        "import portage.const as c;"
        "print(repr(c.EPREFIX), c.GLOBAL_CONFIG_PATH, c.PORTAGE_BIN_PATH, c.PORTAGE_BASE_PATH)"
    )
    done = in_root(roots[Variant.openrc], ["python3", "-c", code])
    paths = "/usr/share/portage/config /usr/lib/portage/python3.11 /usr/lib/portage"
    assert done.stdout == f"'' {paths}\n"
    assert (roots[Variant.openrc].root / "usr/share/portage/config/make.globals").is_file()


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_the_vdb_holds_the_system_stand_ins_emerge_installed(
    roots: dict[Variant, Stage3Root], variant: Variant
) -> None:
    assert list(roots[variant].installed) == SYSTEM[variant]
    done = in_root(roots[variant], ["portageq", "match", "/", "*/*"])
    assert done.lines() == SYSTEM[variant]
    contents = roots[variant].root / "var/db/pkg/sys-apps/baselayout-lab-2.17/CONTENTS"
    assert re.fullmatch(
        r"dir /usr\ndir /usr/share\ndir /usr/share/baselayout-lab\n"
        r"obj /usr/share/baselayout-lab/version [0-9a-f]{32} \d+\n",
        contents.read_text(),
    )
    assert (roots[variant].root / "var/lib/portage/world").read_text() == ""


def test_emerge_pretend_resolves_a_lab_package(roots: dict[Variant, Stage3Root]) -> None:
    done = in_root(roots[Variant.openrc], ["emerge", "--pretend", "--color=n", "app-misc/greeter"])
    assert done.returncode == 0, done.stderr
    plan = [line for line in done.lines() if line.startswith("[ebuild")]
    assert plan == [
        "[ebuild  N     ] dev-libs/libdemo-1.4 ",
        "[ebuild  N     ] app-misc/greeter-1.0 ",
    ]


def test_emerge_builds_and_installs_into_a_root_inside_the_chroot(
    roots: dict[Variant, Stage3Root],
) -> None:
    root = roots[Variant.systemd]
    target = "/var/tmp/g2d-target"
    try:
        with Chroot(root.root) as ch:
            env = {**ENV, "ROOT": target}
            ch.run(["emerge", "--oneshot", "--quiet-build=y", "app-misc/greeter"], env=env)
            ran = ch.run(["sh", f"{target}/usr/bin/greeter"])
            owners = ch.run(["portageq", "owners", target, f"{target}/usr/bin/greeter"], env=env)
            installed = ch.run(["portageq", "match", target, "*/*"], env=env)
        script = FILES["app-misc/greeter"]["greeter.sh"]
        assert (root.root / target.lstrip("/") / "usr/bin/greeter").read_text() == script
        assert ran.stdout == re.fullmatch(r"#!/bin/sh\necho '(.*)'\n", script)[1] + "\n"
        assert owners.stdout == f"app-misc/greeter-1.0\n\t{target}/usr/bin/greeter\n"
        assert installed.lines() == [
            "app-misc/greeter-1.0",
            "dev-libs/libdemo-1.4",
            "sys-apps/openrc-lab-0.56",
            "virtual/service-manager-1",
        ]
        assert (root.root / "usr/bin/greeter").exists() is False  # / itself is untouched
    finally:
        shutil.rmtree(root.root / target.lstrip("/"), ignore_errors=True)


def test_the_portage_user_has_gentoos_ids(roots: dict[Variant, Stage3Root]) -> None:
    done = in_root(roots[Variant.openrc], ["getent", "passwd", "portage"])
    home = "/var/lib/portage/home"
    assert done.stdout == f"portage:x:250:250:System user; portage:{home}:/sbin/nologin\n"
    group = in_root(roots[Variant.openrc], ["getent", "group", "portage"])
    assert group.stdout == "portage:x:250:\n"


@pytest.mark.parametrize("variant", list(Variant), ids=str)
def test_init_refuses_to_power_off_when_it_is_not_pid_1(
    roots: dict[Variant, Stage3Root], variant: Variant
) -> None:
    done = in_root(roots[variant], ["/sbin/init"])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"g2d lab init: not pid 1, not booting (would print: G2D-LAB-BOOT-OK {variant} {STAMP})"
    )


def test_the_variants_differ_in_profile_link_and_init(roots: dict[Variant, Stage3Root]) -> None:
    links = {v: os.readlink(r.root / "etc/portage/make.profile") for v, r in roots.items()}
    assert links == {
        Variant.openrc: "../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0",
        Variant.systemd: "../../var/db/repos/gentoo/profiles/default/linux/amd64/23.0/systemd",
    }
    assert os.readlink(roots[Variant.systemd].root / "usr/sbin/init") == "../lib/systemd/systemd"
    assert not (roots[Variant.openrc].root / "usr/lib/systemd/systemd").exists()


def test_the_debootstrap_tarball_is_reused(roots: dict[Variant, Stage3Root]) -> None:
    cached = sorted(lab_cache().glob("debootstrap-*.tar.zst"))
    before = {p: p.stat().st_mtime_ns for p in cached}
    again = base_tarball(lab_cache())
    assert again in before
    assert {p: p.stat().st_mtime_ns for p in cached} == before


def test_a_directory_that_is_not_a_lab_root_is_never_replaced(
    roots: dict[Variant, Stage3Root], repo: RepoInfo, tmp_path: Path
) -> None:
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data").write_text("mine\n")
    with pytest.raises(Stage3BuildFailed) as caught:
        build_stage3_root(
            keep, variant=Variant.openrc, stamp=STAMP, repo=repo.path, cache_dir=lab_cache()
        )
    assert str(caught.value) == f"{keep} is not empty and is not a lab stage3 root"
    assert caught.value.hint == "the lab replaces only a root it built; pick an empty directory"
    assert (keep / "data").read_text() == "mine\n"
