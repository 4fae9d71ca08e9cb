"""Each lab starter brings up a real component, the component does its job, and its teardown
leaves nothing behind: no process, no listening port, no mount, no loop device, no pool."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from textwrap import dedent

import pytest

from g2d.core.errors import CommandFailed
from g2d.lab.checks import loop_devices_for, loop_devices_under, mount_info, mounts_under
from g2d.lab.daemons import HttpServer, RsyncDaemon, start_http_server, start_rsync_daemon
from g2d.lab.loopdev import FsType, LoopMount, mount_loop
from g2d.lab.process import descendants, find_program, pid_alive, port_open, run
from g2d.lab.sshd import SshServer, start_sshd
from g2d.lab.zfs_fuse import ZfsFuse, ZfsPool, create_pool, pool_names

Start = Callable[..., object]


def assert_gone(pids: Iterable[int] = (), ports: Iterable[int] = ()) -> None:
    assert [p for p in pids if pid_alive(p)] == []
    assert [p for p in ports if port_open(p)] == []


# --- the skip-or-fail rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_component_skips_here_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, start_component: Start, ci: str, outcome: type[Exception]
) -> None:
    monkeypatch.setenv("CI", ci)

    def start() -> None:
        find_program("g2d-no-such-daemon", component="frobd", package="frob-server")

    with pytest.raises(outcome) as caught:
        start_component("frobd", start)
    assert str(caught.value) == (
        "frobd cannot start: g2d-no-such-daemon not found (apt-get install frob-server)"
    )


# --- sshd --------------------------------------------------------------------------------


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # it exited while we looked
        return ""


def ssh(
    server: SshServer, command: str, *, known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [*server.ssh_argv(known_hosts=known_hosts), command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def test_sshd_runs_a_command_trusting_only_the_pinned_key(sshd: SshServer) -> None:
    r = ssh(sshd, 'echo "$(id -un) from ${SSH_CONNECTION%% *}"; exit 7')
    assert (r.returncode, r.stdout) == (7, f"{sshd.user} from 127.0.0.1\n")


def test_sshd_known_hosts_line_is_the_key_it_serves(sshd: SshServer) -> None:
    scanned = run(["ssh-keyscan", "-t", "ed25519", "-p", str(sshd.port), "127.0.0.1"]).stdout
    assert scanned.strip() == sshd.known_hosts_line
    assert sshd.known_hosts.read_text() == sshd.known_hosts_line + "\n"


def test_sshd_refuses_a_changed_host_key(sshd: SshServer, tmp_path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"])
    kind, blob, *_ = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    r = ssh(sshd, "echo reached", known_hosts=wrong)
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr
    assert "reached" not in r.stdout


def test_sshd_refuses_an_unknown_host(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = ssh(sshd, "echo reached", known_hosts=empty)
    assert r.returncode == 255
    assert "Host key verification failed." in r.stderr
    assert empty.read_text() == ""  # never auto-added


def test_sshd_stop_leaves_nothing_even_with_a_session_open(
    tmp_path: Path, start_component: Start
) -> None:
    server = start_component("sshd", lambda: start_sshd(tmp_path / "sshd"))
    assert isinstance(server, SshServer)
    with server:
        client = subprocess.Popen(
            [*server.ssh_argv(), "sleep 120"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        session: list[int] = []
        # sshd's per-connection children call setsid(): wait until the remote sleep exists
        while time.monotonic() < deadline:
            session = descendants(server.pid)
            if "sleep" in map(comm, session):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no remote sleep under sshd {server.pid}: {session}")
    assert client.wait(timeout=10) == 255  # the connection was cut
    assert_gone([server.pid, *session], [server.port])


# --- zfs-fuse ----------------------------------------------------------------------------


def test_zfs_pool_holds_datasets_and_snapshots(zfs_pool: ZfsPool) -> None:
    p = zfs_pool.name
    run(["zfs", "create", "-p", f"{p}/sys/g1"])
    assert zfs_pool.mountpoint is not None
    (zfs_pool.mountpoint / "sys/g1/hello").write_text("hello\n")
    run(["zfs", "snapshot", f"{p}/sys/g1@g1-s1"])
    run(["zfs", "set", "g2d:gen=g1", f"{p}/sys/g1@g1-s1"])
    tree = run(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", f"{p}/sys"]).stdout
    assert tree == dedent(f"""\
        {p}/sys
        {p}/sys/g1
        {p}/sys/g1@g1-s1
        """)
    prop = run(["zfs", "get", "-H", "-p", "-o", "value", "g2d:gen", f"{p}/sys/g1@g1-s1"])
    assert prop.stdout == "g1\n"
    assert mount_info(zfs_pool.mountpoint / "sys/g1")["source"] == f"{p}/sys/g1"


def test_zfs_pool_destroy_leaves_nothing(
    zfs_fuse: ZfsFuse, tmp_path: Path, start_component: Start
) -> None:
    pool = start_component(
        "zfs pool",
        lambda: create_pool(tmp_path / "vdevs", vdevs=2, mountpoint=tmp_path / "mnt"),
    )
    assert isinstance(pool, ZfsPool)
    with pool:
        run(["zfs", "create", f"{pool.name}/ds"])
        assert pool.name in pool_names()
        assert mounts_under(tmp_path / "mnt") == [
            os.fspath((tmp_path / "mnt").resolve()),
            os.fspath((tmp_path / "mnt/ds").resolve()),
        ]
    assert pool.name not in pool_names()
    assert [f for f in pool.files if f.exists()] == []
    assert mounts_under(tmp_path) == []
    assert zfs_fuse.pid == 0 or pid_alive(zfs_fuse.pid)  # the shared daemon keeps running


# --- file systems on loop devices ---------------------------------------------------------

STATFS_TYPE = {FsType.btrfs: "btrfs", FsType.ext4: "ext2/ext3", FsType.xfs: "xfs"}  # stat -f %T


@pytest.mark.parametrize("fstype", list(FsType), ids=str)
def test_loop_mount_is_the_real_file_system(fstype: FsType, request: pytest.FixtureRequest) -> None:
    mounted: LoopMount = request.getfixturevalue(f"{fstype}_mount")
    hello = mounted.mountpoint / "hello"
    hello.write_text("hello\n")
    info = mount_info(mounted.mountpoint)
    assert (info["source"], info["fstype"]) == (mounted.device, fstype.value)
    assert run(["stat", "-f", "-c", "%T", hello]).stdout.strip() == STATFS_TYPE[fstype]
    assert loop_devices_for(mounted.image) == [mounted.device]
    assert hello.read_text() == "hello\n"


@pytest.mark.parametrize("fstype", list(FsType), ids=str)
def test_loop_mount_reflinks_where_the_file_system_can(
    fstype: FsType, request: pytest.FixtureRequest
) -> None:
    mounted: LoopMount = request.getfixturevalue(f"{fstype}_mount")
    (mounted.mountpoint / "a").write_bytes(os.urandom(1 << 20))
    argv = ["cp", "--reflink=always", mounted.mountpoint / "a", mounted.mountpoint / "b"]
    if fstype is FsType.ext4:
        with pytest.raises(CommandFailed):
            run(argv)
    else:
        run(argv)
        assert (mounted.mountpoint / "b").read_bytes() == (mounted.mountpoint / "a").read_bytes()


@pytest.mark.parametrize("fstype", list(FsType), ids=str)
def test_loop_mount_close_leaves_nothing(
    fstype: FsType, tmp_path: Path, start_component: Start
) -> None:
    mounted = start_component(f"{fstype} on a loop device", lambda: mount_loop(tmp_path, fstype))
    assert isinstance(mounted, LoopMount)
    with mounted:
        (mounted.mountpoint / "data").write_bytes(b"x" * 4096)
    assert loop_devices_for(mounted.image) == []
    assert mounts_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_loop_mount_failure_unwinds_what_was_done(tmp_path: Path, start_component: Start) -> None:
    # mkfs.xfs refuses 64 MiB: the image exists and is attached by then, and must not stay
    with pytest.raises(CommandFailed, match=r"mkfs\.xfs"):
        start_component("xfs on a loop device", lambda: mount_loop(tmp_path, "xfs", size_mib=64))
    assert loop_devices_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


# --- http and rsync daemons -----------------------------------------------------------------


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_server_serves_files_and_byte_ranges(http_server: HttpServer) -> None:
    data = os.urandom(100_000)
    (http_server.root / "distfiles").mkdir()
    (http_server.root / "distfiles/foo-1.tar.xz").write_bytes(data)
    url = http_server.url + "distfiles/foo-1.tar.xz"

    status, headers, body = get(url)
    assert (status, headers["Accept-Ranges"], body) == (200, "bytes", data)

    status, headers, body = get(url, Range="bytes=1000-1999")
    assert (status, headers["Content-Range"], body) == (
        206,
        "bytes 1000-1999/100000",
        data[1000:2000],
    )

    status, _, body = get(url, Range="bytes=-10")
    assert (status, body) == (206, data[-10:])

    status, headers, _ = get(url, Range="bytes=100000-")
    assert (status, headers["Content-Range"]) == (416, "bytes */100000")

    assert get(http_server.url + "distfiles/missing")[0] == 404

    # a real client agrees
    curl = subprocess.run(
        ["curl", "--fail", "--silent", "--show-error", "--range", "5-9", url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert curl.stdout == data[5:10]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        os.fspath(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_rsync_daemon_lists_and_copies_its_modules(
    rsync_daemon: RsyncDaemon, tmp_path: Path
) -> None:
    repo = rsync_daemon.modules["gentoo-portage"]
    (repo / "profiles").mkdir()
    (repo / "profiles/repo_name").write_text("gentoo\n")
    (repo / "metadata").mkdir()
    (repo / "metadata/timestamp.chk").write_text("Mon, 01 Jan 2024 00:00:00 +0000\n")
    (repo / "app-misc/hello").mkdir(parents=True)
    (repo / "app-misc/hello/hello-1.ebuild").write_text('EAPI=8\nSLOT="0"\n')

    listing = run(["rsync", "--list-only", rsync_daemon.url()]).stdout
    assert sorted(line.split()[0] for line in listing.splitlines()) == [
        "distfiles",
        "gentoo-portage",
    ]

    copy = tmp_path / "copy"
    run(["rsync", "--archive", "--delete", rsync_daemon.url("gentoo-portage"), copy])
    assert _tree(copy) == _tree(repo)

    with pytest.raises(CommandFailed, match="read only"):
        run(["rsync", "--archive", f"{copy}/", rsync_daemon.url("distfiles")])


def test_http_and_rsync_stop_leaves_nothing(tmp_path: Path, start_component: Start) -> None:
    served = tmp_path / "served"
    served.mkdir()
    http = start_component(
        "http server", lambda: start_http_server(served, state_dir=tmp_path / "httpd")
    )
    rsyncd = start_component(
        "rsync daemon",
        lambda: start_rsync_daemon({"served": served}, state_dir=tmp_path / "rsyncd"),
    )
    assert isinstance(http, HttpServer) and isinstance(rsyncd, RsyncDaemon)
    assert port_open(http.port) and port_open(rsyncd.port)
    http.stop()
    rsyncd.stop()
    assert_gone([http.pid, rsyncd.pid], [http.port, rsyncd.port])
