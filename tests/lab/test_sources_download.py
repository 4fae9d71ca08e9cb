"""g2d.sources.download against real servers on 127.0.0.1: the lab mirror (http), file://,
sshd (ssh:// over sshfs with the pinned key), a server that dies mid-transfer, and the lab's
http handler speaking HTTP/1.1 (keep-alive, which the lab server itself does not offer)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from sources_support import cutting_server, release_keyring

from g2d.core.digests import FileDigests, parse_digests
from g2d.core.distfiles_layout import GENTOO
from g2d.hosts.ssh import SshHost
from g2d.lab.distfiles import publish_distfiles
from g2d.lab.httpd import RangeRequestHandler
from g2d.lab.mirror_served import LabMirror
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
from g2d.sources.fanout import Fanout
from g2d.sources.group_commit import GroupCommit
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


@dataclass
class KeepAliveServer:
    """The lab's range handler speaking HTTP/1.1 (keep-alive, as real mirrors do); counts
    the TCP connections it accepted and can drop its idle ones."""

    port: int = 0
    connections: int = 0
    open: set[socket.socket] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def drop_idle(self) -> None:
        """Close every connection now, as a server whose keep-alive timeout ran out."""
        with self.lock:
            for s in self.open:
                s.shutdown(socket.SHUT_RDWR)


@contextmanager
def keepalive_server(root: Path) -> Iterator[KeepAliveServer]:
    state = KeepAliveServer()

    class Handler(RangeRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with state.lock:
                state.connections += 1
                state.open.add(self.connection)

        def finish(self) -> None:
            with state.lock:
                state.open.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=os.fspath(root)))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.drop_idle()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_distfiles_reuse_kept_alive_connections(tmp_path: Path) -> None:
    files = {f"pkg{i}-1.0.tar.gz": bytes([i]) * (1000 + i) for i in range(12)}
    publish_distfiles(tmp_path / "www" / "distfiles", files)
    with keepalive_server(tmp_path / "www") as server:
        got = fetch_distfiles(server.url + "distfiles/", tmp_path / "got", files, workers=2)
        # layout.conf and 12 files over at most one connection per worker
        assert (sorted(got.fetched), got.failed) == (sorted(files), {})
        assert 1 <= server.connections <= 2
    for name, data in files.items():
        assert (tmp_path / "got" / GENTOO.path(name)).read_bytes() == data


def test_a_kept_connection_the_server_closed_is_replaced(
    lab_mirror: LabMirror, listed: FileDigests, tmp_path: Path
) -> None:
    layout_conf = lab_mirror.layout.distfiles / "layout.conf"
    transports = Transports()
    with keepalive_server(lab_mirror.layout.mirror) as server:
        url = server.url + "distfiles/layout.conf"
        assert transports.read_all(url, 1 << 16) == layout_conf.read_bytes()
        server.drop_idle()  # the idle connection g2d kept is now closed by the server
        got = download(server.url + REL, tmp_path / NAME, transports=transports, expect=listed)
        assert got.digests == listed
        assert server.connections == 2
    transports.close()


def test_group_commit_renames_only_after_the_sync(tmp_path: Path) -> None:
    parts = [tmp_path / f".f{i}.part" for i in range(3)]
    for p in parts:
        p.write_bytes(b"verified bytes")
    with GroupCommit(interval=3600) as group:  # no sync before the end
        for i, p in enumerate(parts):
            group.add(p, tmp_path / f"f{i}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".f0.part", ".f1.part", ".f2.part"]
        assert group.syncs == 0
    # leaving the block: the three synced as one group, then renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0", "f1", "f2"]
    assert group.syncs == 1
    assert (tmp_path / "f2").read_bytes() == b"verified bytes"


def test_fanout_hands_a_sink_error_to_the_feeder() -> None:
    seen: list[bytes] = []

    def disk_full(chunk: bytes) -> None:
        if len(seen) == 2:
            raise OSError(28, "No space left on device")
        seen.append(chunk)

    fed = 0
    with pytest.raises(OSError) as e, Fanout([disk_full, lambda chunk: None]) as fanout:
        for fed in range(1, 1000):
            fanout.feed(bytes([fed % 256]) * 4096)
    assert str(e.value) == "[Errno 28] No space left on device"
    assert seen == [b"\x01" * 4096, b"\x02" * 4096]
    assert fed < 1000
