"""g2d.sources.download against real servers on 127.0.0.1: the lab mirror (http), file://,
sshd (ssh:// over sshfs with the pinned key), and a server that dies mid-transfer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LabMirror
from sources_support import cutting_server, release_keyring

from g2d.core.digests import FileDigests, parse_digests
from g2d.core.distfiles_layout import GENTOO
from g2d.hosts.ssh import SshHost
from g2d.lab.process import free_port
from g2d.lab.sshd import SshServer
from g2d.sources.distfiles import fetch_distfiles
from g2d.sources.download import download, part_path
from g2d.sources.errors import (
    DigestMismatch,
    HttpStatusError,
    NoTransport,
    TransferError,
    Truncated,
    is_retryable,
)
from g2d.sources.keyring import Keyring
from g2d.sources.snapshots import fetch_snapshot
from g2d.sources.transports import Transports

STAMP = "20250108T120000Z"
NAME = f"stage3-amd64-openrc-{STAMP}.tar.xz"
REL = f"releases/amd64/autobuilds/{STAMP}/{NAME}"


@pytest.fixture(scope="module")
def keyring(lab_mirror: LabMirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyring]:
    with release_keyring(lab_mirror.layout, tmp_path_factory.mktemp("keyring")) as (_, kr):
        yield kr


@pytest.fixture(scope="module")
def listed(lab_mirror: LabMirror, keyring: Keyring) -> FileDigests:
    """The tarball's digests from its signed .DIGESTS, with its size."""
    tarball = lab_mirror.layout.mirror / REL
    raw = tarball.with_name(NAME + ".DIGESTS").read_bytes()
    found = parse_digests(keyring.verify_clearsigned(raw, "DIGESTS").text).for_file(NAME)
    return FileDigests(NAME, found.hashes, tarball.stat().st_size)


def test_http_download_hashes_in_one_pass(
    lab_mirror: LabMirror, listed: FileDigests, tmp_path: Path
) -> None:
    seen: list[int] = []
    got = download(
        lab_mirror.http.url + REL,
        tmp_path / NAME,
        transports=Transports(),
        expect=listed,
        progress=lambda done, total: seen.append(done),
    )
    assert got.digests == listed
    assert (tmp_path / NAME).read_bytes() == (lab_mirror.layout.mirror / REL).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]  # no .part left
    assert seen[-1] == listed.size and got.resumed_from == 0


def test_file_url(lab_mirror: LabMirror, listed: FileDigests, tmp_path: Path) -> None:
    url = (lab_mirror.layout.mirror / REL).as_uri()
    got = download(url, tmp_path / NAME, transports=Transports(), expect=listed)
    assert got.digests == listed


def test_ssh_url_with_pinned_key(
    lab_mirror: LabMirror, listed: FileDigests, sshd: SshServer, tmp_path: Path
) -> None:
    host = SshHost(
        sshd.host, port=sshd.port, user=sshd.user, key=sshd.client_key, known_hosts=sshd.known_hosts
    )
    with host:
        url = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{lab_mirror.layout.mirror / REL}"
        got = download(url, tmp_path / NAME, transports=Transports([host]), expect=listed)
    assert got.digests == listed


def test_ssh_url_without_a_pinned_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoTransport) as e:
        download("ssh://root@127.0.0.1:2222/x", tmp_path / "x", transports=Transports())
    assert str(e.value) == "ssh://root@127.0.0.1:2222/x: no pinned ssh host for root@127.0.0.1:2222"
    assert not is_retryable(e.value)


def test_404_is_a_retryable_transfer_error(lab_mirror: LabMirror, tmp_path: Path) -> None:
    url = lab_mirror.http.url + "releases/nothing-here.tar.xz"
    with pytest.raises(HttpStatusError) as e:
        download(url, tmp_path / "x", transports=Transports())
    assert str(e.value) == f"{url}: HTTP 404 File not found"
    assert is_retryable(e.value)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(TransferError) as e:
        download(url, tmp_path / "x", transports=Transports())
    assert str(e.value) == f"{url}: cannot connect: Connection refused"
    assert is_retryable(e.value)


def test_digest_mismatch_keeps_the_good_file_and_drops_the_bytes(
    lab_mirror: LabMirror, listed: FileDigests, tmp_path: Path
) -> None:
    dest = tmp_path / NAME
    dest.write_bytes(b"the good copy")
    wrong = dict(listed.hashes)
    wrong[next(iter(wrong))] = "0" * 128
    url = lab_mirror.http.url + REL
    with pytest.raises(DigestMismatch) as e:
        download(url, dest, transports=Transports(), expect=FileDigests(NAME, wrong, listed.size))
    algo = next(iter(wrong))
    assert str(e.value) == f"{url}: {algo} digest differs from the signed list for {NAME}"
    assert not is_retryable(e.value)
    assert dest.read_bytes() == b"the good copy"
    assert not part_path(dest).exists()


def test_larger_than_listed_is_refused(lab_mirror: LabMirror, tmp_path: Path) -> None:
    url = lab_mirror.http.url + REL
    expect = FileDigests(NAME, {}, 1000)
    with pytest.raises(DigestMismatch) as e:
        download(url, tmp_path / NAME, transports=Transports(), expect=expect)
    assert str(e.value) == f"{url}: is larger than the 1000 bytes the signed list gives"
    assert list(tmp_path.iterdir()) == []


def test_truncated_keeps_the_part_and_the_next_attempt_resumes(
    lab_mirror: LabMirror, listed: FileDigests, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    (www / REL).parent.mkdir(parents=True)
    (www / REL).symlink_to(lab_mirror.layout.mirror / REL)
    dest = tmp_path / NAME
    with cutting_server(www) as server:
        server.cut(REL, after=5_000_000)
        with pytest.raises(Truncated) as e:
            download(server.url + REL, dest, transports=Transports(), expect=listed)
        assert str(e.value) == (
            f"{server.url + REL}: truncated: got 5000000 of {listed.size} bytes; a retry resumes"
        )
        assert is_retryable(e.value)
        assert not dest.exists() and part_path(dest).stat().st_size == 5_000_000
        got = download(server.url + REL, dest, transports=Transports(), expect=listed)
        assert server.ranges == [None, "bytes=5000000-"]
    assert got.resumed_from == 5_000_000
    assert got.digests == listed and not part_path(dest).exists()


def test_server_dies_mid_transfer_and_a_retry_resumes_with_the_signature_checked(
    lab_mirror: LabMirror, listed: FileDigests, keyring: Keyring, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    (www / REL).parent.mkdir(parents=True)
    (www / REL).symlink_to(lab_mirror.layout.mirror / REL)
    signature = (lab_mirror.layout.mirror / REL).with_name(NAME + ".asc").read_bytes()
    with cutting_server(www) as server:
        server.cut(REL, after=12_345_678, times=2)
        got = download(
            server.url + REL,
            tmp_path / NAME,
            transports=Transports(),
            expect=listed,
            verifier=lambda: keyring.detached_stream(signature, NAME + ".asc"),
            attempts=3,
            retry_delay=0.01,
        )
        # the second attempt asked for the rest and was cut again; the third finished it
        assert server.ranges == [None, "bytes=12345678-", "bytes=24691356-"]
    assert got.resumed_from == 24_691_356
    assert got.digests == listed
    assert got.signature is not None and got.signature.fingerprint in keyring.fingerprints


def test_snapshot_newest_with_gpgsig(
    lab_mirror: LabMirror, keyring: Keyring, tmp_path: Path
) -> None:
    snapshots = lab_mirror.layout.snapshots
    newest = max(p.name for p in snapshots.glob("gentoo-2*.tar.xz"))
    got = fetch_snapshot(lab_mirror.http.url + "snapshots/", tmp_path, keyring=keyring)
    assert (got.name, got.fetched, got.signed_by) == (newest, True, sorted(keyring.fingerprints)[0])
    assert got.path.read_bytes() == (snapshots / newest).read_bytes()
    assert os.readlink(tmp_path / "gentoo-latest.tar.xz") == newest
    again = fetch_snapshot(lab_mirror.http.url + "snapshots/", tmp_path, keyring=keyring)
    assert (again.fetched, again.path) == (False, got.path)


def test_distfiles_glep75_then_present(lab_mirror: LabMirror, tmp_path: Path) -> None:
    mirror = lab_mirror.layout.distfiles
    names = sorted(p.name for p in mirror.glob("*/*"))
    specs = [FileDigests(n, {}, (mirror / GENTOO.path(n)).stat().st_size) for n in names]
    url = lab_mirror.http.url + "distfiles/"
    first = fetch_distfiles(url, tmp_path, [*specs, "missing-1.0.tar.gz"], workers=4)
    assert sorted(first.fetched) == names and first.present == ()
    assert {n: str(e) for n, e in first.failed.items()} == {
        "missing-1.0.tar.gz": f"{url}{GENTOO.path('missing-1.0.tar.gz')}: HTTP 404 File not found"
    }
    for n in names:
        assert (tmp_path / GENTOO.path(n)).read_bytes() == (mirror / GENTOO.path(n)).read_bytes()
    assert (tmp_path / "layout.conf").read_text() == (mirror / "layout.conf").read_text()
    second = fetch_distfiles(url, tmp_path, specs)
    assert (second.fetched, sorted(second.present)) == ((), names)
