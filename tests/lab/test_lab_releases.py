"""The lab's mirror media, checked by the formats' own tools, never by g2d's parsers.

Built once for this module: two openrc stage3 builds (older, newer) and a systemd one, the
latest files, a repository snapshot, the distfiles mirror and the imported kernel. Then:
gpg (a keyring holding only the lab release key) on every signature, sha512sum / b2sum /
sha256sum / md5sum on every checksum list, tar on the stage3 and the snapshot, and Portage
itself inside the unpacked stage3: emerge --info, emerge --fetchonly from the hashed
distfiles layout, emerge-webrsync from the snapshots.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from g2d.hosts.chroot import Chroot
from g2d.hosts.local import LocalHost
from g2d.lab.daemons import HttpServer, start_http_server
from g2d.lab.distfiles import LAYOUT_CONF, publish_distfiles
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.kernel import KernelImport, import_kernel
from g2d.lab.keys import LabKeys, ensure_keys
from g2d.lab.lab_names import Stamp, Variant
from g2d.lab.layout import LabLayout
from g2d.lab.releases import Stage3Release, pack_stage3, publish_latest
from g2d.lab.repo import RepoInfo, build_repo
from g2d.lab.snapshots import Snapshot, publish_snapshot
from g2d.lab.stage3 import build_stage3_root, restamp_root

OLD, NEW = Stamp("20250101T120000Z"), Stamp("20250108T120000Z")
sh = LocalHost()


@dataclass(frozen=True)
class Media:
    mirror: Path
    keys: LabKeys
    verify_home: Path  # a keyring holding only the lab release public key
    repo: RepoInfo
    releases: dict[tuple[Variant, Stamp], Stage3Release]
    snapshot: Snapshot
    kernel: KernelImport

    @property
    def autobuilds(self) -> Path:
        return self.mirror / "releases/amd64/autobuilds"


def build_or_skip(build):  # type: ignore[no-untyped-def]
    try:
        return build()
    except ComponentUnavailable as exc:
        reason = f"lab media cannot be built: {exc}" + (f" ({exc.hint})" if exc.hint else "")
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    base = tmp_path_factory.mktemp("lab-media")
    cache = LabLayout.from_settings().cache  # shared with `g2d lab build`: one download
    keys = ensure_keys(base / "gnupg")
    verify_home = base / "verify"
    verify_home.mkdir(mode=0o700)
    try:
        keys.export_public(keys.release, base / "release.asc")
        sh.run(["gpg", "--homedir", verify_home, "--batch", "--import", base / "release.asc"])
        repo = build_repo(base / "repo" / "gentoo", keys=keys)
        mirror = base / "mirror"
        releases = {}
        for variant, stamps in ((Variant.openrc, (OLD, NEW)), (Variant.systemd, (NEW,))):
            root = build_or_skip(
                lambda v=variant, s=stamps[0]: build_stage3_root(
                    base / "root",
                    variant=v,
                    stamp=s,
                    repo=repo.path,
                    cache_dir=cache / "debootstrap",
                    distfiles=repo.distfiles,
                    release_key=base / "release.asc",
                )
            )
            for stamp in stamps:  # the newer openrc build: the same root, restamped
                root = restamp_root(root, stamp)
                releases[variant, stamp] = pack_stage3(root, mirror / "releases", keys)
            shutil.rmtree(root.root)
        publish_latest(mirror / "releases", keys)
        snapshot = publish_snapshot(repo.path, mirror / "snapshots", keys)
        publish_distfiles(mirror / "distfiles", repo.distfiles)
        kernel = import_kernel(mirror / "kernels", cache / "kernel")
        yield Media(mirror, keys, verify_home, repo, releases, snapshot, kernel)
    finally:
        for home in (base / "gnupg", verify_home):
            sh.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
        shutil.rmtree(base)


def gpg_verify(media: Media, *files: Path) -> list[str]:
    """gpg's VALIDSIG status line words for one signature (clear-signed or detached)."""
    done = sh.run(
        ["gpg", "--homedir", media.verify_home, "--batch", "--status-fd", "1", "--verify", *files],
        check=False,
    )
    valid = [ln.split() for ln in done.lines() if ln.startswith("[GNUPG:] VALIDSIG ")]
    return valid[0] if done.ok and len(valid) == 1 else [f"exit {done.returncode}: {done.stderr}"]


def signed_payload(media: Media, path: Path) -> str:
    return sh.run(["gpg", "--homedir", media.verify_home, "--batch", "--decrypt", path]).stdout


def test_every_signature_verifies_with_the_release_key(media: Media) -> None:
    clear = [
        *(r.sidecar(s) for r in media.releases.values() for s in (".DIGESTS", ".sha256")),
        *(media.autobuilds / f"latest-stage3-amd64-{v}.txt" for v in Variant),
        media.autobuilds / "latest-stage3.txt",
    ]
    latest = media.mirror / "snapshots/gentoo-latest.tar.xz"
    detached = [
        *((r.sidecar(".asc"), r.tarball) for r in media.releases.values()),
        (media.snapshot.gpgsig, media.snapshot.tarball),
        (latest.with_name(latest.name + ".gpgsig"), latest),
    ]
    found = {os.fspath(p.relative_to(media.mirror)): gpg_verify(media, p)[-1] for p in clear}
    for sig, data in detached:
        found[os.fspath(sig.relative_to(media.mirror))] = gpg_verify(media, sig, data)[-1]
    assert found == dict.fromkeys(found, media.keys.release)
    assert len(found) == 3 * 2 + 2 + 1 + 3 + 2  # DIGESTS+sha256, 2 latest, aggregate, .asc, .gpgsig


def test_digests_are_what_b2sum_and_sha512sum_say(media: Media) -> None:
    for release in media.releases.values():
        files = [release.tarball.name, release.sidecar(".CONTENTS.gz").name]
        cwd = release.directory
        b2 = sh.run(["b2sum", *files], cwd=cwd).lines()
        sha512 = sh.run(["sha512sum", *files], cwd=cwd).lines()
        want = "".join(
            f"# BLAKE2B HASH\n{b2[i]}\n# SHA512 HASH\n{sha512[i]}\n" for i in range(len(files))
        )
        payload = signed_payload(media, release.sidecar(".DIGESTS"))
        assert payload == want
        for tool, algo in (("b2sum", "BLAKE2B"), ("sha512sum", "SHA512")):
            lines = payload.split(f"# {algo} HASH\n")[1:]
            listing = "".join(block.split("\n", 1)[0] + "\n" for block in lines)
            checked = sh.run([tool, "--check", "-"], stdin=listing.encode(), cwd=cwd)
            assert checked.stdout == "".join(f"{name}: OK\n" for name in files)


def test_sha256_checks_with_sha256sum(media: Media) -> None:
    for release in media.releases.values():
        done = sh.run(
            ["sha256sum", "--check", release.sidecar(".sha256").name], cwd=release.directory
        )
        assert done.stdout == f"{release.tarball.name}: OK\n"


def test_the_stage3_is_a_root_file_system_tar_can_list(media: Media) -> None:
    release = media.releases[Variant.openrc, NEW]
    names = sh.run(["tar", "-tJf", release.tarball]).lines()
    assert names[0] == "./"
    assert names == sorted(names, key=lambda n: n.rstrip("/").split("/"))
    for member in (
        "./etc/portage/make.profile",
        "./etc/portage/make.conf",
        "./usr/sbin/init",
        "./var/db/pkg/sys-apps/openrc-lab-0.56/CONTENTS",
        "./var/db/repos/gentoo/profiles/default/linux/amd64/23.0/parent",
        "./usr/share/portage/config/make.globals",
        "./dev/null",
    ):
        assert member in names
    verbose = sh.run(["tar", "--numeric-owner", "-tvJf", release.tarball], env={"TZ": "UTC"})
    by_name = {line.split()[-1]: line.split()[:2] for line in verbose.lines() if " -> " not in line}
    assert by_name["./dev/null"] == ["crw-rw-rw-", "0/0"]
    assert by_name["./var/lib/portage/home/"] == ["drwxr-xr-x", "250/250"]
    assert max(line.split()[3] for line in verbose.lines()) == "2025-01-08"  # clamped mtimes


def test_contents_gz_is_the_tar_listing(media: Media) -> None:
    release = media.releases[Variant.systemd, NEW]
    listing = sh.run(["tar", "--xattrs", "-tvJf", release.tarball], env={"TZ": "UTC"}).out
    assert gzip.decompress(release.sidecar(".CONTENTS.gz").read_bytes()) == listing


def test_latest_files_name_the_newest_build_of_each_variant(media: Media) -> None:
    header = "# Latest as of Wed, 08 Jan 2025 12:00:00 +0000\n# ts=1736337600\n"
    lines = {}
    for variant in Variant:
        tarball = media.releases[variant, NEW].tarball
        lines[variant] = f"{NEW}/{tarball.name} {tarball.stat().st_size}\n"
        latest = media.autobuilds / f"latest-stage3-amd64-{variant}.txt"
        assert signed_payload(media, latest) == header + lines[variant]
        current = media.autobuilds / f"current-stage3-amd64-{variant}"
        assert (current / latest.name).read_text() == header + lines[variant][len(f"{NEW}/") :]
        assert sorted(p.name for p in current.iterdir()) == sorted(
            [latest.name, *(p.name for p in media.releases[variant, NEW].files)]
        )
        targets = {p.resolve().parent for p in current.iterdir() if p.is_symlink()}
        assert targets == {media.autobuilds / str(NEW)}
    aggregate = signed_payload(media, media.autobuilds / "latest-stage3.txt")
    assert aggregate == header + lines[Variant.openrc] + lines[Variant.systemd]
    assert sorted(p.name for p in media.autobuilds.iterdir()) == [
        str(OLD),
        str(NEW),
        "current-stage3-amd64-openrc",
        "current-stage3-amd64-systemd",
        "latest-stage3-amd64-openrc.txt",
        "latest-stage3-amd64-systemd.txt",
        "latest-stage3.txt",
    ]


def test_the_snapshot_is_a_dated_tree_with_its_md5sum(media: Media) -> None:
    snapshots = media.mirror / "snapshots"
    for name in ("gentoo-20250101.tar.xz", "gentoo-latest.tar.xz"):
        done = sh.run(["md5sum", "--check", f"{name}.md5sum"], cwd=snapshots)
        assert done.stdout == f"{name}: OK\n"
    names = sh.run(["tar", "-tJf", snapshots / "gentoo-latest.tar.xz"]).lines()
    assert {n.split("/")[0] for n in names} == {"gentoo-20250101"}
    assert "gentoo-20250101/metadata/timestamp.x" in names
    assert "gentoo-20250101/app-misc/hello/hello-1.0.ebuild" in names
    assert os.readlink(snapshots / "gentoo-latest.tar.xz") == "gentoo-20250101.tar.xz"


def test_distfiles_sit_where_portages_own_layout_code_puts_them(media: Media) -> None:
    from portage.package.ebuild.fetch import FilenameHashLayout, MirrorLayoutConfig

    distfiles = media.mirror / "distfiles"
    assert (distfiles / "layout.conf").read_text() == LAYOUT_CONF
    config = MirrorLayoutConfig()
    config.read_from_file(os.fspath(distfiles / "layout.conf"))
    assert config.serialize() == (("filename-hash", "BLAKE2B", "8"),)
    layout = FilenameHashLayout("BLAKE2B", "8")
    for name, data in media.repo.distfiles.items():
        assert (distfiles / layout.get_path(name)).read_bytes() == data
    placed = sorted(
        os.fspath(p.relative_to(distfiles)) for p in distfiles.rglob("*") if p.is_file()
    )
    assert placed == sorted(["layout.conf", *(layout.get_path(n) for n in media.repo.distfiles)])


def test_the_kernel_is_a_bzimage_that_file_and_its_header_agree_on(media: Media) -> None:
    kernel = media.kernel
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+-cloud-amd64", kernel.version)
    assert kernel.directory == media.mirror / "kernels/current" / kernel.version
    assert sorted(p.name for p in kernel.directory.iterdir()) == sorted(
        ["vmlinuz", "System.map", "config", "modules.tar.gz"]
    )
    described = sh.run(["file", "--brief", kernel.file("vmlinuz")]).stdout
    assert described.startswith(
        f"Linux kernel x86 boot executable bzImage, version {kernel.version} "
    )
    head = kernel.file("vmlinuz").read_bytes()[:0x210]
    assert (head[0x1FE:0x200], head[0x202:0x206]) == (b"\x55\xaa", b"HdrS")
    assert "CONFIG_X86_64=y" in kernel.file("config").read_text().splitlines()
    modules = sh.run(["tar", "-tzf", kernel.file("modules.tar.gz")]).lines()
    assert f"lib/modules/{kernel.version}/modules.dep" in modules
    assert all(m.startswith(f"lib/modules/{kernel.version}/") for m in modules)


# --- Portage inside the unpacked stage3, fetching from the lab mirror over http ------------


@pytest.fixture(scope="module")
def unpacked(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("unpacked-stage3")
    tarball = media.releases[Variant.openrc, NEW].tarball
    sh.run(
        [
            "tar", "--extract", "--xz", "--file", tarball, "--directory", root,
            "--numeric-owner", "--preserve-permissions",
            "--xattrs", "--xattrs-include=*.*", "--acls",
        ]
    )  # fmt: skip
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def mirror_http(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    state = tmp_path_factory.mktemp("mirror-httpd")
    server = build_or_skip(lambda: start_http_server(media.mirror, state_dir=state))
    with server:
        yield server


def served(server: HttpServer) -> list[str]:
    """Paths the server answered with 200, from its own log."""
    return re.findall(r'"GET (\S+) HTTP/1\.[01]" 200', server.daemon.log.read_text())


def test_the_unpacked_stage3_runs_emerge_info_in_a_chroot(unpacked: Path) -> None:
    with Chroot(unpacked) as ch:
        info = ch.run(["emerge", "--info"])
        init = ch.run(["/sbin/init"], check=False)
    assert re.fullmatch(r"Portage 3\.0\.\d+ \(.*, default/linux/amd64/23\.0, .*\)", info.lines()[0])
    assert (init.returncode, init.stderr) == (
        2,
        f"g2d lab init: not pid 1, not booting (would print: G2D-LAB-BOOT-OK openrc {NEW})",
    )


def test_emerge_fetches_a_distfile_from_the_hashed_layout(
    media: Media, unpacked: Path, mirror_http: HttpServer
) -> None:
    env = {"GENTOO_MIRRORS": mirror_http.url.rstrip("/"), "DISTDIR": "/var/tmp/fetched"}
    with Chroot(unpacked) as ch:
        ch.run(["emerge", "--fetchonly", "--quiet", "=app-misc/hello-1.0"], env=env)
    got = (unpacked / "var/tmp/fetched/hello-1.0.tar.gz").read_bytes()
    assert got == media.repo.distfiles["hello-1.0.tar.gz"]
    # portage read layout.conf, then asked for the hashed path (and never for a flat one)
    assert [p for p in served(mirror_http) if p.startswith("/distfiles/")] == [
        "/distfiles/layout.conf",
        "/distfiles/ce/hello-1.0.tar.gz",
    ]


def test_emerge_webrsync_installs_the_signed_snapshot(
    media: Media, unpacked: Path, mirror_http: HttpServer
) -> None:
    shutil.rmtree(unpacked / "var/db/repos/gentoo/app-misc")  # webrsync must bring it back
    keyring = "/var/tmp/webrsync-gnupg"
    env = {
        "GENTOO_MIRRORS": mirror_http.url.rstrip("/"),
        # gpg, not gemato: gemato insists on refreshing keys from the network first
        "FEATURES": "webrsync-gpg",
        "PORTAGE_GPG_DIR": keyring,
    }
    with Chroot(unpacked) as ch:
        ch.run(["mkdir", "-m", "0700", keyring])
        # the key the stage3 ships where sec-keys/openpgp-keys-gentoo-release puts it
        key = "/usr/share/openpgp-keys/gentoo-release.asc"
        ch.run(["gpg", "--homedir", keyring, "--batch", "--import", key])
        trust = f"{media.keys.release}:6:\n".encode()
        ch.run(["gpg", "--homedir", keyring, "--batch", "--import-ownertrust"], stdin=trust)
        day = f"{media.snapshot.day:%Y%m%d}"
        ch.run(["emerge-webrsync", f"--revert={day}", "--quiet"], env=env)
    name = f"gentoo-{day}.tar.xz"
    assert [p for p in served(mirror_http) if p.startswith("/snapshots/")] == [
        f"/snapshots/{name}.md5sum",
        f"/snapshots/{name}.gpgsig",
        f"/snapshots/{name}",
    ]
    ebuild = unpacked / "var/db/repos/gentoo/app-misc/hello/hello-1.0.ebuild"
    assert ebuild.read_bytes() == (media.repo.path / "app-misc/hello/hello-1.0.ebuild").read_bytes()
