"""Real emerge inside a root extracted from the lab's stage3, with the lab's binhost, repository
and distfiles mirror bound read-only, binpkg signatures checked against the lab's key.

The root's /etc/portage gets the site's masks, keywords and licenses written here by hand
(g2d.rootfs.portage_files renders them in a deploy). The timeout test adds an overlay
repository with one ebuild that sleeps (the lab repository has none that hangs).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from g2d.hosts.local import LocalHost
from g2d.lab.keys import ensure_keys
from g2d.lab.layout import LabLayout
from g2d.lab.process import processes_with
from g2d.rootfs.binpkg_keys import install_binpkg_keys
from g2d.rootfs.emerge import EmergeFailed, emerge
from g2d.rootfs.emerge_log import MergeKind
from g2d.rootfs.kernel import (
    KernelArchiveRefused,
    check_modules_archive,
    current_kernel,
    install_kernel,
)
from g2d.rootfs.portage_sources import PortageSources
from g2d.rootfs.update import update_root

SITE_FILES = {  # what the lab's common package sets say (g2d.lab.packagesets.COMMON)
    "package.accept_keywords": "=dev-libs/libdemo-1.5 ~amd64\n",
    "package.license": "app-misc/eula-lab lab-EULA\n",
    "package.mask": ">=dev-libs/libdemo-2.1\n",
}
SLEEP = "4242.5"  # the sleeper's sleep: unique in the process table


@pytest.fixture(scope="module")
def stage3(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The lab's openrc stage3, extracted once as the handbook does."""
    tarball = next((lab_world.releases / "amd64/autobuilds/current-stage3-amd64-openrc").glob(
        "stage3-*.tar.xz"))  # fmt: skip
    dest = tmp_path_factory.mktemp("stage3") / "root"
    dest.mkdir()
    LocalHost().run(["tar", "xpf", tarball, "--xattrs-include=*.*", "--numeric-owner",
                     "-C", dest])  # fmt: skip
    yield dest
    shutil.rmtree(dest)  # 150 MB; each test's copy goes with pytest's tmp_path


@pytest.fixture(scope="module")
def keys_dir(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's binpkg and release public keys, exported as a dom0 holds them."""
    keys = ensure_keys(lab_world.gnupg)
    out = tmp_path_factory.mktemp("keys")
    try:
        keys.export_public(keys.binpkg, out / "binpkg.asc")
        keys.export_public(keys.release, out / "release.asc")
    finally:
        LocalHost().run(["gpgconf", "--homedir", lab_world.gnupg, "--kill", "gpg-agent"])
    return out


@pytest.fixture
def root(stage3: Path, keys_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the stage3 with the site's Portage files and the binpkg keyring."""
    dest = tmp_path / "root"
    LocalHost().run(["cp", "-a", "--reflink=auto", stage3, dest])
    for name, text in SITE_FILES.items():
        (dest / "etc/portage" / name).write_text(text)
    install_binpkg_keys(dest, [keys_dir / "binpkg.asc"])
    return dest


@pytest.fixture
def sources(lab_world: LabLayout) -> PortageSources:
    return PortageSources(
        repos={"gentoo": lab_world.gentoo_repo},
        binpkgs=lab_world.binpkgs,
        distfiles=lab_world.distfiles,
    )


def use(root: Path, text: str) -> None:
    (root / "etc/portage/package.use").write_text(text)


def installed(root: Path) -> list[str]:
    vdb = root / "var/db/pkg"
    return sorted(f"{c.name}/{p.name}" for c in vdb.iterdir() for p in c.iterdir())


def mounts_under_anywhere(root: Path) -> list[str]:
    """Mount points at or below ``root`` in the mount table of every process here."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            lines = Path(f"/proc/{entry.name}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        points = [line.split()[4] for line in lines]
        found += [p for p in points if p == str(root) or p.startswith(f"{root}/")]
    return found


STAGE3 = ["sys-apps/baselayout-lab-2.17", "sys-apps/openrc-lab-0.56", "virtual/service-manager-1"]


def test_a_deploy_merges_verified_binpkgs_and_an_update_takes_the_new_use(
    root: Path, sources: PortageSources, lab_world: LabLayout, tmp_path: Path
) -> None:
    use(root, "app-misc/hello nls -doc\n")
    result = emerge(root, ["app-misc/hello"], sources=sources, logs=tmp_path / "deploy")
    assert [(m.cpv, m.kind, m.build_id) for m in result.merged] == [
        ("dev-libs/libdemo-2.0", MergeKind.binary, 1),
        ("app-misc/hello-1.0", MergeKind.binary, 1),  # the instance built with USE="nls -doc"
    ]
    assert (result.failed, result.planned, result.returncode) == ((), 2, 0)
    assert installed(root) == sorted([*STAGE3, "app-misc/hello-1.0", "dev-libs/libdemo-2.0"])
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=yes doc=no\n"
    assert (root / "usr/bin/hello").is_file()
    assert (root / "var/lib/portage/world").read_text() == "app-misc/hello\n"
    assert result.metadata() == {
        "g2d:emerge-merged": "2", "g2d:emerge-binary": "2", "g2d:emerge-built": "0",
        "g2d:emerge-failed": "", "g2d:emerge-seconds": f"{result.seconds:.0f}",
    }  # fmt: skip
    assert "Emerging binary (2 of 2) app-misc/hello-1.0::gentoo" in result.transcript.read_text()
    assert mounts_under_anywhere(root) == []

    use(root, "app-misc/hello doc -nls\n")  # the site's package.use changed
    updated = update_root(
        root, sources=sources, logs=tmp_path / "update", kernels=lab_world.kernels
    )
    assert [(m.cpv, m.kind, m.build_id) for m in updated.emerge.merged] == [
        ("app-misc/hello-1.0", MergeKind.binary, 2)  # --newuse took the other instance
    ]
    assert (root / "usr/share/hello/build-flags").read_text() == "nls=no doc=yes\n"
    version = current_kernel(lab_world.kernels).version
    assert updated.kernel is not None
    assert (updated.kernel.version, updated.kernel.changed) == (version, True)
    assert updated.metadata() == {
        "g2d:update-merged": "1", "g2d:update-binary": "1", "g2d:update-built": "0",
        "g2d:update-failed": "", "g2d:update-seconds": f"{updated.emerge.seconds:.0f}",
        "g2d:kernel": version,
    }  # fmt: skip
    assert mounts_under_anywhere(root) == []


def test_a_binpkg_signed_by_a_key_the_root_does_not_trust_is_refused(
    root: Path, sources: PortageSources, keys_dir: Path, tmp_path: Path
) -> None:
    install_binpkg_keys(root, [keys_dir / "release.asc"])  # not the binpkg key
    with pytest.raises(EmergeFailed) as caught:
        emerge(root, ["app-misc/eula-lab"], sources=sources, logs=tmp_path / "logs")
    result = caught.value.result
    log = tmp_path / "logs/app-misc/eula-lab-1.0.log"
    assert str(caught.value) == (
        f"emerge in {root} failed for 1 of 1 packages: app-misc/eula-lab-1.0 (build log: {log})"
    )
    assert [(f.cpv, f.kind) for f in result.failed] == [("app-misc/eula-lab-1.0", MergeKind.binary)]
    binpkg = "/var/cache/binpkgs/app-misc/eula-lab/eula-lab-1.0-1.gpkg.tar"
    assert log.read_text().splitlines() == [
        ">>> Extracting info",
        f"!!! Error extracting '{binpkg}', GnuPG verification failed",
    ]
    assert installed(root) == STAGE3
    assert not (root / "usr/share/eula-lab").exists()


def test_a_failed_build_is_listed_with_its_log_and_a_rerun_resumes_after_what_merged(
    root: Path, sources: PortageSources, tmp_path: Path
) -> None:
    use(root, "app-misc/breakme broken\n")  # no binpkg has it: built, and the build dies
    targets = ["app-misc/breakme", "app-misc/greeter"]
    with pytest.raises(EmergeFailed) as caught:
        emerge(root, targets, sources=sources, logs=tmp_path / "logs")
    first = caught.value.result
    log = tmp_path / "logs/app-misc/breakme-1.0.log"
    assert str(caught.value) == (
        f"emerge in {root} failed for 1 of 3 packages: app-misc/breakme-1.0 (build log: {log})"
    )
    assert caught.value.hint == (
        "2 packages were merged and stay merged; fix the failed ones (their USE flags, or the "
        "ebuild) and run again to resume"
    )
    assert [(m.cpv, m.kind) for m in first.merged] == [
        ("dev-libs/libdemo-1.5", MergeKind.binary),
        ("app-misc/greeter-1.0", MergeKind.binary),
    ]
    assert [(f.cpv, f.kind) for f in first.failed] == [("app-misc/breakme-1.0", MergeKind.built)]
    assert " *   breakme fails on purpose when USE=broken is set" in log.read_text().splitlines()
    use(root, "")  # the admin drops the flag; the binhost's build (USE=-broken) now fits
    second = emerge(root, targets, sources=sources, logs=tmp_path / "logs2")
    assert [(m.cpv, m.kind) for m in second.merged] == [("app-misc/breakme-1.0", MergeKind.binary)]
    assert (root / "var/lib/portage/world").read_text() == "app-misc/breakme\napp-misc/greeter\n"


def sleeper_overlay(base: Path) -> Path:
    repo = base / "g2d-test"
    (repo / "profiles").mkdir(parents=True)
    (repo / "metadata").mkdir()
    (repo / "app-misc/sleeper").mkdir(parents=True)
    (repo / "profiles/repo_name").write_text("g2d-test\n")
    (repo / "metadata/layout.conf").write_text("masters = gentoo\nthin-manifests = true\n")
    (repo / "app-misc/sleeper/sleeper-1.ebuild").write_text(
        dedent(f"""\
        EAPI=8
        DESCRIPTION="Builds for a long time (for the timeout test)"
        HOMEPAGE="https://lab.g2d.invalid/"
        S="${{WORKDIR}}"
        LICENSE="MIT"
        SLOT="0"
        KEYWORDS="amd64"
        src_compile() {{
        \tsleep {SLEEP} || die
        }}
    """)
    )
    return repo


def test_emerge_killed_by_its_timeout_leaves_no_process_and_no_mount(
    root: Path, lab_world: LabLayout, tmp_path: Path
) -> None:
    overlay = sleeper_overlay(tmp_path)
    (root / "etc/portage/repos.conf/g2d-test.conf").write_text(
        "[g2d-test]\nlocation = /var/db/repos/g2d-test\n"
    )
    sources = PortageSources(repos={"gentoo": lab_world.gentoo_repo, "g2d-test": overlay})
    with pytest.raises(EmergeFailed) as caught:
        emerge(root, ["app-misc/sleeper"], sources=sources, logs=tmp_path / "logs", timeout=12)
    assert str(caught.value) == (
        f"emerge in {root} timed out after 12 s and was killed; "
        "0 merged, unfinished: app-misc/sleeper-1"
    )
    assert caught.value.hint == (
        "nothing is left running; run it again to resume after what was merged"
    )
    assert processes_with(f"sleep {SLEEP}") == []
    assert mounts_under_anywhere(root) == []
    assert "app-misc/sleeper-1" not in installed(root)


def test_the_current_kernel_is_installed_as_installkernel_names_it(
    root: Path, lab_world: LabLayout
) -> None:
    kernel = current_kernel(lab_world.kernels)
    v = kernel.version
    (root / "boot").mkdir(exist_ok=True)
    (root / "boot/vmlinuz-5.10.0-old").write_text("an older kernel\n")
    done = install_kernel(root, lab_world.kernels)
    assert (done.version, done.changed, done.replaced) == (v, True, ())
    assert done.boot_files == (f"/boot/vmlinuz-{v}", f"/boot/System.map-{v}", f"/boot/config-{v}")
    for name in ("vmlinuz", "System.map", "config"):
        assert (root / f"boot/{name}-{v}").read_bytes() == kernel.file(name).read_bytes()
    assert done.other_versions == ("5.10.0-old",)  # kept: the fallback an admin boots
    assert os.readlink(root / "lib") == "usr/lib"  # merged /usr survived the unpacking
    assert (root / f"usr/lib/modules/{v}/modules.dep").is_file()
    assert list((root / f"usr/lib/modules/{v}/kernel").rglob("*.ko"))
    again = install_kernel(root, lab_world.kernels)
    assert (again.changed, again.replaced) == (False, ())
    (root / f"boot/config-{v}").write_text("edited by hand\n")
    third = install_kernel(root, lab_world.kernels)
    assert (third.changed, third.replaced) == (True, (f"/boot/config-{v}",))
    assert (root / f"boot/config-{v}.old").read_text() == "edited by hand\n"
    assert mounts_under_anywhere(root) == []


def test_a_modules_archive_reaching_outside_its_version_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "modules.tar.gz"
    payload = tmp_path / "x"
    payload.write_text("x\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, "lib/modules/6.1.0/kernel/ok.ko")
        tar.add(payload, "lib/modules/6.1.0/../../../etc/passwd")
    with pytest.raises(KernelArchiveRefused) as caught:
        check_modules_archive(archive, "6.1.0")
    assert str(caught.value) == (
        f"{archive}: member 'lib/modules/6.1.0/../../../etc/passwd' is outside lib/modules/6.1.0"
    )
