"""The lab binhost, built once per session by real emerge and checked by Portage itself:
`PackageIndex` reads `Packages`, `emerge --usepkgonly` installs into an empty ROOT with
signature checking on, and a binpkg signed by a key the client does not trust is refused."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.runner import Completed
from g2d.lab.binhost import (
    BUILDER_FILES,
    BinhostBuildFailed,
    BinhostInfo,
    binhost_inputs,
    build_binhost,
    read_index,
)
from g2d.lab.checks import mounts_under
from g2d.lab.keys import LabKeys, ensure_keys
from g2d.lab.portage_config import (
    PortageConfig,
    check_namespace,
    etc_portage,
    portage_program,
    run_portage,
    write_config,
)
from g2d.lab.process import process_table
from g2d.lab.repo import RepoInfo, build_repo


@dataclass(frozen=True)
class Lab:
    base: Path
    keys: LabKeys
    repo: RepoInfo
    binhost: BinhostInfo
    seconds: float  # how long the cold build took


@pytest.fixture(scope="session")
def built_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("binhost-lab")
    keys = ensure_keys(base / "gnupg")
    repo = build_repo(base / "repo", keys=keys)  # signed, as the dom0 serves it
    started = time.monotonic()
    binhost = build_binhost(repo.path, base / "binpkgs", keys, base / "work")
    yield Lab(base, keys, repo, binhost, time.monotonic() - started)
    LocalHost().run(["gpgconf", "--homedir", str(keys.gnupghome), "--kill", "gpg-agent"])
    assert mounts_under(base) == []
    assert gpg_agents(keys.gnupghome, binhost.verify_gnupghome) == []


@pytest.fixture
def lab(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    start_component: Callable[[str, Callable[[], Any]], Any],
) -> Lab:
    start_component("clean-mode portage", lambda: check_namespace(tmp_path / "probe"))
    return request.getfixturevalue("built_lab")


def client(lab: Lab, work: Path, pkgdir: Path, **config: Any) -> list[Path]:
    """Write a client's /etc/portage (the site's masks and keywords, the lab's keyring);
    return the directories its commands must keep."""
    verify = config.pop("verify_home", lab.binhost.verify_gnupghome)
    write_config(
        etc_portage(work),
        PortageConfig(
            lab.repo.path, lab.repo.default_profile, pkgdir, work / "distfiles", work / "var",
            verify_home=verify, package_files=BUILDER_FILES, **config,
        ),
    )  # fmt: skip
    return [lab.repo.path, pkgdir, verify, lab.keys.gnupghome]


def emerge(args: list[str], *, work: Path, keep: list[Path], env: dict[str, str]) -> Completed:
    return run_portage(
        [portage_program("emerge"), *args], work=work, keep=keep, env=env, check=False
    )


def gpg_agents(*homes: Path) -> list[str]:
    """Command lines of live gpg-agents serving one of `homes`."""
    found = []
    for pid in process_table():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "gpg-agent" in cmdline and any(os.fspath(h) in cmdline for h in homes):
            found.append(cmdline)
    return found


def gpkg_members(path: Path) -> list[str]:
    return LocalHost().run(["tar", "-tf", str(path)]).lines()


# --- what was built ----------------------------------------------------------------------


def test_packages_index_holds_two_builds_of_hello_with_different_use(lab: Lab) -> None:
    index = read_index(lab.binhost.path)  # portage.getbinpkg.PackageIndex
    hello = [p for p in index.packages if p["CPV"] == "app-misc/hello-1.0"]
    flags = {"doc", "nls"}
    assert [(p["BUILD_ID"], sorted(flags & set(p["USE"].split())), p["PATH"]) for p in hello] == [
        ("1", ["nls"], "app-misc/hello/hello-1.0-1.gpkg.tar"),
        ("2", ["doc"], "app-misc/hello/hello-1.0-2.gpkg.tar"),
    ]
    assert index.header["PROFILE"] == "default/linux/amd64/23.0"
    assert index.header["PACKAGES"] == str(len(index.packages)) == "17"
    assert sorted(p["PATH"] for p in index.packages) == list(lab.binhost.binpkgs)
    breakme = [p for p in index.packages if p["CPV"] == "app-misc/breakme-1.0"]
    assert [("broken" in p["USE"].split(), p["IUSE"]) for p in breakme] == [(False, "broken")]
    assert lab.binhost.reused is False


def test_every_binpkg_is_a_signed_gpkg_with_clean_paths(lab: Lab) -> None:
    for rel in lab.binhost.binpkgs:
        top = Path(rel).name.removesuffix(".gpkg.tar")
        assert gpkg_members(lab.binhost.path / rel) == [
            f"{top}/gpkg-1",
            f"{top}/metadata.tar.zst",
            f"{top}/metadata.tar.zst.sig",
            f"{top}/image.tar.zst",
            f"{top}/image.tar.zst.sig",
            f"{top}/Manifest",
        ]
    greeter = lab.binhost.path / "app-misc/greeter/greeter-1.0-1.gpkg.tar"
    listing = lab.base / "greeter-image.txt"
    run_pipeline(
        [
            Stage.of(LocalHost(), ["tar", "-xOf", str(greeter), "greeter-1.0-1/image.tar.zst"]),
            Stage.of(LocalHost(), ["zstd", "-dc"]),
            Stage.of(LocalHost(), ["tar", "-t"]),
        ],
        stdout=listing,
    )
    files = [line for line in listing.read_text().splitlines() if not line.endswith("/")]
    assert files == [
        "image/etc/conf.d/greeter",
        "image/etc/init.d/greeter",
        "image/usr/bin/greeter",
        "image/usr/lib/systemd/system/greeter.service",
    ]


def test_a_second_build_with_the_same_inputs_returns_at_once(lab: Lab) -> None:
    before = (lab.binhost.path / "Packages").read_bytes()
    started = time.monotonic()
    again = build_binhost(lab.repo.path, lab.binhost.path, lab.keys, lab.base / "work")
    took = time.monotonic() - started
    assert (again.reused, again.inputs, again.binpkgs) == (True, lab.binhost.inputs,
                                                            lab.binhost.binpkgs)  # fmt: skip
    assert took < 5.0, f"reuse took {took:.1f} s (the cold build took {lab.seconds:.1f} s)"
    assert (lab.binhost.path / "Packages").read_bytes() == before


def test_a_new_timestamp_or_signature_is_no_new_input_but_an_ebuild_is(
    lab: Lab, tmp_path: Path
) -> None:
    plain = build_repo(tmp_path / "plain", timestamp=datetime(2030, 1, 1, tzinfo=UTC))
    assert binhost_inputs(plain.path, lab.keys) == lab.binhost.inputs
    ebuild = plain.path / "app-misc/greeter/greeter-1.0.ebuild"
    ebuild.write_text(ebuild.read_text() + "# changed\n")
    assert binhost_inputs(plain.path, lab.keys) != lab.binhost.inputs


# --- what a client does with it ----------------------------------------------------------


def test_emerge_installs_into_an_empty_root_with_signatures_checked(
    lab: Lab, tmp_path: Path
) -> None:
    work, root = tmp_path / "client", tmp_path / "root"
    keep = client(lab, work, lab.binhost.path)
    done = emerge(
        ["--oneshot", "--usepkgonly", "--binpkg-respect-use=y", "app-misc/greeter",
         "app-misc/hello"],
        work=work, keep=[*keep, root],
        env={"ROOT": str(root), "FEATURES": "binpkg-request-signature", "USE": "doc -nls"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    installed = sorted(str(p.relative_to(root / "var/db/pkg")) for p in
                       (root / "var/db/pkg").glob("*/*"))  # fmt: skip
    assert installed == [
        "app-misc/greeter-1.0",
        "app-misc/hello-1.0",
        "dev-libs/libdemo-1.5",  # the site's common.keys accepts ~amd64 for it
        "dev-libs/libdemo-2.0",  # and its common.mask caps SLOT 2 below 2.1
        "sys-apps/openrc-lab-0.56",
        "virtual/service-manager-1",
    ]
    assert (root / "etc/init.d/greeter").read_text().startswith("#!/sbin/openrc-run\n")
    assert (root / "usr/lib/systemd/system/greeter.service").is_file()
    # --binpkg-respect-use took the second build of hello, the one with USE="doc -nls"
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=no doc=yes\n"
    assert (root / "var/db/pkg/app-misc/hello-1.0/BUILD_ID").read_text().strip() == "2"
    contents = (root / "var/db/pkg/app-misc/greeter-1.0/CONTENTS").read_text().splitlines()
    assert sorted(line.split()[1] for line in contents if line.startswith("obj ")) == [
        "/etc/conf.d/greeter",
        "/etc/init.d/greeter",
        "/usr/bin/greeter",
        "/usr/lib/systemd/system/greeter.service",
    ]


def test_a_binpkg_signed_by_an_unknown_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    pkgdir, work = tmp_path / "binpkgs", tmp_path / "client"
    shutil.copytree(lab.binhost.path, pkgdir)
    # re-sign one binpkg with the release key, which the client's keyring does not hold
    keep = client(lab, work, pkgdir, signing_home=lab.keys.gnupghome,
                  signing_key=lab.keys.release)  # fmt: skip
    greeter = pkgdir / "app-misc/greeter/greeter-1.0-1.gpkg.tar"
    run_portage([portage_program("gpkg-sign"), greeter], work=work, keep=keep)
    # the server re-indexes without judging the new signature (it would drop the binpkg)
    run_portage([portage_program("emaint"), "binhost", "--fix"], work=work, keep=keep,
                env={"FEATURES": "binpkg-ignore-signature"})  # fmt: skip
    root = tmp_path / "root"
    done = emerge(
        ["--oneshot", "--usepkgonly", "--nodeps", "app-misc/greeter"],
        work=work, keep=[*keep, root],
        env={"ROOT": str(root), "FEATURES": "binpkg-request-signature"},
    )  # fmt: skip
    assert done.returncode == 1
    refusal = done.stderr.splitlines()
    assert " * \tbinpkg signed with at least one unknown key." in refusal
    assert f"!!! Error extracting '{greeter}', GnuPG verification failed" in refusal
    assert f" * \tgpg:                using EDDSA key {lab.keys.release}" in refusal
    assert not (root / "usr/bin/greeter").exists()


def test_the_failing_package_fails_under_its_flag_only(lab: Lab, tmp_path: Path) -> None:
    work, pkgdir, root = tmp_path / "builder", tmp_path / "binpkgs", tmp_path / "root"
    keep = [*client(lab, work, pkgdir), root]
    for name, data in lab.repo.distfiles.items():
        (work / "distfiles" / name).write_bytes(data)
    env = {"ROOT": str(root), "SYSROOT": str(root), "USE": lab.repo.failing_flag}
    atom = lab.repo.failing_package
    done = emerge(["--oneshot", "--buildpkgonly", atom], work=work, keep=keep, env=env)
    assert done.returncode == 1
    assert " * ERROR: app-misc/breakme-1.0::gentoo failed (compile phase):" in done.lines()
    assert " *   breakme fails on purpose when USE=broken is set" in done.lines()
    assert list(pkgdir.rglob("*.gpkg.tar")) == []
    # the binhost's own build of it (USE=-broken) is in the index: see the first test


def test_a_work_dir_under_var_is_refused_up_front(tmp_path: Path) -> None:
    keys = LabKeys(tmp_path / "gnupg", "0" * 40, "1" * 40)
    with pytest.raises(BinhostBuildFailed) as info:
        build_binhost(tmp_path / "repo", tmp_path / "binpkgs", keys, Path("/var/tmp/g2d-x/work"))
    assert str(info.value) == "the binhost cannot be built under /var: /var/tmp/g2d-x/work"
    assert not Path("/var/tmp/g2d-x").exists()  # refused before anything was made
