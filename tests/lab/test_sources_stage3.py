"""fetch_stage3 against the lab mirror over http, file:// and ssh://, and the issue's bad
inputs: each a whole error message, and the previous current build left exactly as it was.

Bad mirrors are a tree of symlinks into the lab's (read-only) mirror with the one file under
test replaced, signed by the lab's own keys where the case needs a good signature.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sources_support import cutting_server, expired_key, release_keyring

from g2d.hosts.ssh import SshHost
from g2d.lab.daemons import HttpServer
from g2d.lab.keys import LabKeys
from g2d.lab.mirror_served import LabMirror
from g2d.lab.sshd import SshServer
from g2d.sources.errors import (
    BadSignature,
    DigestMismatch,
    ExpiredKey,
    HttpStatusError,
    MirrorBehind,
    NoSignature,
    Truncated,
    UnknownKey,
    is_retryable,
)
from g2d.sources.keyring import Keyring
from g2d.sources.stage3 import fetch_stage3
from g2d.sources.transports import Transports

OLD, NEW = "20250101T120000Z", "20250108T120000Z"
AB = "releases/amd64/autobuilds"


def tar(stamp: str, variant: str = "openrc") -> str:
    return f"stage3-amd64-{variant}-{stamp}.tar.xz"


@dataclass
class World:
    lab: LabMirror
    keys: LabKeys
    keyring: Keyring
    old_tree: Path  # a dom0 releases/ whose current openrc build is OLD (fetched once)

    @property
    def mirror(self) -> Path:
        return self.lab.layout.mirror

    def latest_text(self, stamp: str, path: str | None = None) -> str:
        line = (
            path or f"{stamp}/{tar(stamp)} {(self.mirror / AB / stamp / tar(stamp)).stat().st_size}"
        )
        return f"# Latest as of Wed, 08 Jan 2025 12:00:00 +0000\n# ts=1736337600\n{line}\n"

    def clearsign(self, text: str, tmp: Path, key: str | None = None) -> bytes:
        src, dst = tmp / "payload", tmp / "signed"
        src.write_text(text)
        self.keys.clearsign(src, dst, key=key)
        return dst.read_bytes()


def link_mirror(world: World, www: Path) -> None:
    """``www/releases/...`` as symlinks to the lab's files (replace one to tamper)."""
    for stamp in (OLD, NEW):
        (www / AB / stamp).mkdir(parents=True)
        for f in (world.mirror / AB / stamp).iterdir():
            (www / AB / stamp / f.name).symlink_to(f)
    for f in (world.mirror / AB).glob("latest-*.txt"):
        (www / AB / f.name).symlink_to(f)


def replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def copy_tree(src: Path, dst: Path) -> None:
    """Hard links (files are only ever replaced by rename, never written in place)."""
    for root, _, files in os.walk(src):
        here = dst / Path(root).relative_to(src)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.link(Path(root) / name, here / name)
    link = src / "amd64/autobuilds/current-stage3-amd64-openrc"
    (dst / "amd64/autobuilds" / link.name).symlink_to(os.readlink(link))


@pytest.fixture(scope="module")
def world(lab_mirror: LabMirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("stage3-world")
    with release_keyring(lab_mirror.layout, base) as (keys, keyring):
        w = World(lab_mirror, keys, keyring, base / "old-tree")
        www = base / "www-old"
        link_mirror(w, www)
        latest = www / AB / "latest-stage3-amd64-openrc.txt"
        replace(latest, w.clearsign(w.latest_text(OLD), base))
        fetch_stage3((www / "releases").as_uri(), w.old_tree, keyring=keyring)
        yield w


@pytest.fixture
def dom0(world: World, tmp_path: Path) -> Path:
    releases = tmp_path / "dom0-releases"
    copy_tree(world.old_tree, releases)
    return releases


def assert_old_current_untouched(releases: Path, world: World) -> None:
    autobuilds = releases / AB.removeprefix("releases/")
    assert os.readlink(autobuilds / "current-stage3-amd64-openrc") == OLD
    old = autobuilds / OLD / tar(OLD)
    assert old.stat().st_size == (world.mirror / AB / OLD / tar(OLD)).stat().st_size
    assert not (autobuilds / NEW / tar(NEW)).exists()


def test_http_fetch_then_already_current(world: World, tmp_path: Path) -> None:
    url = world.lab.http.url + "releases/"
    releases = tmp_path / "releases"
    first = fetch_stage3(url, releases, keyring=world.keyring)
    autobuilds = releases / "amd64/autobuilds"
    assert (first.fetched, first.stamp, first.flavour) == (True, NEW, "stage3-amd64-openrc")
    assert first.path == autobuilds / NEW / tar(NEW)
    assert first.size == (world.mirror / AB / NEW / tar(NEW)).stat().st_size
    assert first.latest_signed_by == world.keys.release
    assert sorted(p.name for p in (autobuilds / NEW).iterdir()) == [
        tar(NEW),
        f"{tar(NEW)}.DIGESTS",
        f"{tar(NEW)}.asc",
    ]
    assert os.readlink(autobuilds / "current-stage3-amd64-openrc") == NEW
    assert (autobuilds / "latest-stage3-amd64-openrc.txt").read_bytes() == (
        world.mirror / AB / "latest-stage3-amd64-openrc.txt"
    ).read_bytes()
    again = fetch_stage3(url, releases, keyring=world.keyring)
    assert (again.fetched, again.path, again.digests) == (False, first.path, first.digests)


def test_keep_prunes_only_older_builds_of_the_variant(world: World, dom0: Path) -> None:
    autobuilds = dom0 / "amd64/autobuilds"
    (autobuilds / OLD / "stage3-amd64-systemd-20250101T120000Z.tar.xz").write_bytes(b"other")
    result = fetch_stage3(world.lab.http.url + "releases/", dom0, keyring=world.keyring, keep=1)
    assert sorted(result.removed) == [
        autobuilds / OLD / f"{tar(OLD)}{suffix}" for suffix in ("", ".DIGESTS", ".asc")
    ]
    assert sorted(p.name for p in (autobuilds / OLD).iterdir()) == [
        "stage3-amd64-systemd-20250101T120000Z.tar.xz"
    ]
    assert os.readlink(autobuilds / "current-stage3-amd64-openrc") == NEW


def test_file_url(world: World, dom0: Path) -> None:
    result = fetch_stage3((world.mirror / "releases").as_uri(), dom0, keyring=world.keyring)
    assert (result.fetched, result.stamp, result.removed) == (True, NEW, ())  # keep=2


def test_ssh_url_systemd(world: World, sshd: SshServer, tmp_path: Path) -> None:
    host = SshHost(
        sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key, known_hosts=sshd.known_hosts
    )
    url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{world.mirror / 'releases'}"
    with host:
        result = fetch_stage3(
            url, tmp_path, variant="systemd", keyring=world.keyring, transports=Transports([host])
        )
    assert (result.fetched, result.flavour, result.path.name) == (
        True,
        "stage3-amd64-systemd",
        tar(NEW, "systemd"),
    )


# --- bad input: each refused with its message; OLD stays current ------------------------------


def bad_mirror(world: World, http_server: HttpServer, tamper: Callable[[Path], None]) -> str:
    link_mirror(world, http_server.root)
    tamper(http_server.root / AB)
    return http_server.url + "releases/"


def test_wrong_signature_on_digests(world: World, dom0: Path, http_server: HttpServer) -> None:
    def tamper(ab: Path) -> None:
        digests = ab / NEW / f"{tar(NEW)}.DIGESTS"
        text = digests.read_text()
        first_hex = text.index("# BLAKE2B HASH\n") + len("# BLAKE2B HASH\n")
        flipped = "0" if text[first_hex] != "0" else "1"
        replace(digests, (text[:first_hex] + flipped + text[first_hex + 1 :]).encode())

    url = bad_mirror(world, http_server, tamper)
    with pytest.raises(BadSignature) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/{NEW}/{tar(NEW)}.DIGESTS: BAD signature from key "
        f"{world.keys.release[-16:]} (g2d lab release engineering <releng@lab.g2d.invalid>): "
        "the data or the signature was altered"
    )
    assert not is_retryable(e.value)
    assert_old_current_untouched(dom0, world)


def test_asc_of_another_build(world: World, dom0: Path, http_server: HttpServer) -> None:
    def tamper(ab: Path) -> None:
        replace(ab / NEW / f"{tar(NEW)}.asc", (ab / OLD / f"{tar(OLD)}.asc").read_bytes())

    url = bad_mirror(world, http_server, tamper)
    with pytest.raises(BadSignature) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/{NEW}/{tar(NEW)}.asc: BAD signature from key "
        f"{world.keys.release[-16:]} (g2d lab release engineering <releng@lab.g2d.invalid>): "
        "the data or the signature was altered"
    )
    assert_old_current_untouched(dom0, world)
    assert not list((dom0 / "amd64/autobuilds" / NEW).iterdir())  # not even the .part


def test_unknown_key(world: World, dom0: Path, http_server: HttpServer, tmp_path: Path) -> None:
    signed = world.clearsign(world.latest_text(NEW), tmp_path, key=world.keys.binpkg)
    url = bad_mirror(
        world,
        http_server,
        lambda ab: replace(ab / "latest-stage3-amd64-openrc.txt", signed),
    )
    with pytest.raises(UnknownKey) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/latest-stage3-amd64-openrc.txt: signed by key "
        f"{world.keys.binpkg}, which is not in the keyring {world.keyring.home}"
    )
    assert e.value.key_id == world.keys.binpkg
    assert_old_current_untouched(dom0, world)


def test_expired_key(world: World, dom0: Path, http_server: HttpServer, tmp_path: Path) -> None:
    with expired_key(tmp_path / "expired-home") as key:
        signed = key.clearsign(world.latest_text(NEW))
        trusted = [world.keyring.home.parent / "release.asc", key.export(tmp_path / "e.asc")]
        with Keyring.from_key_files(tmp_path / "kr", trusted) as keyring:
            url = bad_mirror(
                world,
                http_server,
                lambda ab: replace(ab / "latest-stage3-amd64-openrc.txt", signed),
            )
            with pytest.raises(ExpiredKey) as e:
                fetch_stage3(url, dom0, keyring=keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/latest-stage3-amd64-openrc.txt: signed by key "
        f"{key.fingerprint[-16:]} ({key.uid}), which has expired"
    )
    assert not is_retryable(e.value)
    assert_old_current_untouched(dom0, world)


def test_digest_mismatch(world: World, dom0: Path, http_server: HttpServer, tmp_path: Path) -> None:
    def tamper(ab: Path) -> None:
        # a validly signed list whose SHA512 for the tarball is wrong
        digests = ab / NEW / f"{tar(NEW)}.DIGESTS"
        text = world.keyring.verify_clearsigned(digests.read_bytes(), "d").text
        lines = text.splitlines()
        at = lines.index("# SHA512 HASH") + 1
        lines[at] = "0" * 128 + "  " + tar(NEW)
        replace(digests, world.clearsign("\n".join(lines) + "\n", tmp_path))

    url = bad_mirror(world, http_server, tamper)
    with pytest.raises(DigestMismatch) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/{NEW}/{tar(NEW)}: SHA512 digest differs from the signed list "
        f"for {tar(NEW)}"
    )
    assert_old_current_untouched(dom0, world)
    assert not list((dom0 / "amd64/autobuilds" / NEW).iterdir())


def test_404(world: World, dom0: Path, http_server: HttpServer) -> None:
    url = bad_mirror(world, http_server, lambda ab: (ab / NEW / tar(NEW)).unlink())
    with pytest.raises(HttpStatusError) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == f"{url}amd64/autobuilds/{NEW}/{tar(NEW)}: HTTP 404 File not found"
    assert is_retryable(e.value)
    assert_old_current_untouched(dom0, world)


def test_dotdot_in_a_signed_latest(
    world: World, dom0: Path, http_server: HttpServer, tmp_path: Path
) -> None:
    signed = world.clearsign(world.latest_text(NEW, "../../../../etc/passwd 1000"), tmp_path)
    url = bad_mirror(
        world, http_server, lambda ab: replace(ab / "latest-stage3-amd64-openrc.txt", signed)
    )
    with pytest.raises(Exception) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/latest-stage3-amd64-openrc.txt line 3: path "
        "'../../../../etc/passwd' leaves the mirror (a '..' component)"
    )
    assert type(e.value).__name__ == "UnsafePath" and not is_retryable(e.value)
    assert_old_current_untouched(dom0, world)


def test_unsigned_digests(world: World, dom0: Path, http_server: HttpServer) -> None:
    def tamper(ab: Path) -> None:
        digests = ab / NEW / f"{tar(NEW)}.DIGESTS"
        replace(digests, world.keyring.verify_clearsigned(digests.read_bytes(), "d").text.encode())

    url = bad_mirror(world, http_server, tamper)
    with pytest.raises(NoSignature) as e:
        fetch_stage3(url, dom0, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/{NEW}/{tar(NEW)}.DIGESTS: is not clear-signed "
        "(no OpenPGP signed message)"
    )
    assert_old_current_untouched(dom0, world)


def test_mirror_behind(world: World, tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    fetch_stage3(world.lab.http.url + "releases/", releases, keyring=world.keyring)
    old_mirror = tmp_path / "www"
    link_mirror(world, old_mirror)
    replace(
        old_mirror / AB / "latest-stage3-amd64-openrc.txt",
        world.clearsign(world.latest_text(OLD), tmp_path),
    )
    url = (old_mirror / "releases").as_uri() + "/"
    with pytest.raises(MirrorBehind) as e:
        fetch_stage3(url, releases, keyring=world.keyring)
    assert str(e.value) == (
        f"{url}amd64/autobuilds/latest-stage3-amd64-openrc.txt: offers stage3-amd64-openrc "
        f"{OLD}, older than {NEW} here; not going back"
    )
    assert os.readlink(releases / "amd64/autobuilds/current-stage3-amd64-openrc") == NEW


def test_server_dies_mid_transfer_then_resumed(world: World, dom0: Path, tmp_path: Path) -> None:
    www = tmp_path / "www"
    link_mirror(world, www)
    rel = f"{AB}/{NEW}/{tar(NEW)}"
    with cutting_server(www) as server:
        server.cut(rel, after=3_000_000)
        with pytest.raises(Truncated) as e:
            fetch_stage3(server.url + "releases/", dom0, keyring=world.keyring)
        size = (world.mirror / rel).stat().st_size
        assert str(e.value) == (
            f"{server.url}{rel}: truncated: got 3000000 of {size} bytes; a retry resumes"
        )
        assert_old_current_untouched(dom0, world)
        result = fetch_stage3(server.url + "releases/", dom0, keyring=world.keyring)
        assert server.ranges == [None, "bytes=3000000-"]
    assert (result.fetched, result.resumed_from, result.stamp) == (True, 3_000_000, NEW)
    assert os.readlink(dom0 / "amd64/autobuilds/current-stage3-amd64-openrc") == NEW
