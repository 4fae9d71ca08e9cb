"""Chroot against a real root (busybox-static) and real namespaces: what runs inside, what is
mounted where, and that nothing outlives it, even when its owner is SIGKILLed.

Every check of "nothing left" reads the process table and the mount tables in /proc directly,
never through the code under test.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout
from g2d.hosts.base import Host
from g2d.hosts.chroot import HOLDER, Bind, Chroot, ChrootError
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline
from g2d.hosts.ssh import SshHost
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import find_program, pid_alive, run
from g2d.lab.sshd import SshServer

T = TypeVar("T")
Start = Callable[[str, Callable[[], T]], T]

NASTY = "a b;c|d&e$(f)`g`'h\"i\\j*k?~l #m"
local = LocalHost()


# --- what /proc says, read independently of g2d.hosts.chroot -------------------------------


def ns_members(ns: str) -> list[int]:
    """Live processes whose mount namespace has inode ``ns``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/mnt") == f"mnt:[{ns}]":
                found.append(int(entry.name))
        except OSError:
            continue
    return [p for p in found if pid_alive(p)]


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def processes_with(token: str) -> list[int]:
    pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]
    return [p for p in pids if token in cmdline(p) and pid_alive(p)]


def holders() -> list[int]:
    pids = [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]
    return [p for p in pids if cmdline(p)[-3:] == HOLDER[-3:] and pid_alive(p)]


def mounts_under(root: Path, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points at or below ``root`` in one mount table (field 5 of mountinfo)."""
    base = os.fspath(root)
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:  # the process exited while we looked
        return []
    points = [line.split()[4].replace("\\040", " ") for line in lines]
    return [p for p in points if p == base or p.startswith(base + "/")]


def mounts_under_anywhere(root: Path) -> list[str]:
    """Mount points below ``root`` in the mount table of every process on this machine."""
    tables = [f"/proc/{e.name}/mountinfo" for e in os.scandir("/proc") if e.name.isdigit()]
    return [p for t in tables for p in mounts_under(root, t)]


def wait_until(done: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def unique_secs() -> str:
    """A sleep argument nobody else uses, so the process table can be searched for it."""
    return f"{1000 + uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 1000:03d}"


# --- a real root --------------------------------------------------------------------------


def make_busybox_root(root: Path) -> Path:
    busybox = find_program("busybox", component="busybox root", package="busybox-static")
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run([busybox, "--list"]).stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    try:  # a dynamically linked busybox cannot run in a root without its libraries
        run(["chroot", root, "/bin/busybox", "true"])
    except CommandFailed as e:
        hint = "apt-get install busybox-static"
        raise ComponentUnavailable(
            "busybox root", f"{busybox} does not run alone", hint=hint
        ) from e
    return root


@pytest.fixture
def root(tmp_path: Path, start_component: Start[Path]) -> Path:
    return start_component("busybox root", lambda: make_busybox_root(tmp_path / "root"))


@pytest.fixture
def ssh_parent(sshd: SshServer) -> Iterator[SshHost]:
    host = SshHost(
        sshd.host,
        host_keys=[sshd.host_public_key],
        user=sshd.user,
        port=sshd.port,
        key=sshd.client_key,
    )
    with host:
        yield host


@pytest.fixture(params=["local", "ssh"])
def parent(request: pytest.FixtureRequest) -> Host:
    if request.param == "local":
        return local
    return request.getfixturevalue("ssh_parent")


# --- inside ---------------------------------------------------------------------------------


def test_commands_run_inside_the_root_with_proc_sys_dev_run(root: Path) -> None:
    with Chroot(root, resolv_conf=False) as ch:
        assert ch.name == f"chroot:{root}@local"
        assert ch.run(["ls", "/"]).lines() == ["bin", "dev", "proc", "run", "sys", "tmp"]
        assert ch.run(["stat", "-f", "-c", "%T", "/proc", "/sys", "/run"]).lines() == [
            "proc",
            "sysfs",
            "tmpfs",
        ]
        assert "self" in ch.run(["ls", "/proc"]).lines()
        assert ch.run(["stat", "-c", "%F", "/dev/null"]).stdout == "character special file\n"
        assert ch.run(["sh", "-c", "echo x > /dev/null && echo ok"]).stdout == "ok\n"
        # its own PID namespace: pid 1 is the holder, and /proc lists only what runs inside
        assert ch.run(["cat", "/proc/1/cmdline"]).out == b"cat\0/proc/self/stat\0-\0"
        assert int(ch.run(["readlink", "/proc/self"]).stdout) < 100
        with pytest.raises(CommandFailed) as info:
            ch.run(["touch", "/sys/g2d"])
        assert "Read-only file system" in info.value.tail


def test_mounts_are_private_and_gone_after_exit(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with Chroot(root, binds=[Bind(src, "/mnt/data")]) as ch:
        ns, pid = ch.mount_namespace, ch.pid
        inside = ch.run(["cat", "/proc/self/mountinfo"]).stdout
        points = {line.split()[4] for line in inside.splitlines()}
        assert {"/proc", "/sys", "/dev", "/run", "/mnt/data", "/etc/resolv.conf"} <= points
        assert pid in ns_members(ns)
        assert mounts_under(root) == []  # this process's (the host's) table never shows them
        assert mounts_under(root, "/proc/1/mountinfo") == []
    assert ns_members(ns) == []
    assert not pid_alive(pid)
    assert mounts_under_anywhere(root) == []


def test_an_unmount_on_the_host_reaches_inside(root: Path, tmp_path: Path) -> None:
    # a private namespace would keep its own copy of this mount (and so its loop device busy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    host = LocalHost()
    # under a shared mount, as g2d.lab.loopdev mounts (here / is private: no events from it)
    host.run(["mount", "--bind", str(elsewhere), str(elsewhere)])
    try:
        host.run(["mount", "--make-shared", str(elsewhere)])
        host.run(["mount", "-t", "tmpfs", "g2d-test", str(elsewhere)])
        with Chroot(root) as ch:
            table = Path(f"/proc/{ch.pid}/mountinfo")
            assert "g2d-test" in table.read_text()
            host.run(["umount", str(elsewhere)])  # the tmpfs, not the bind under it
            assert "g2d-test" not in table.read_text()
    finally:
        while str(elsewhere) in mounts_under(elsewhere):
            host.run(["umount", str(elsewhere)])


def test_readonly_bind_refuses_writes_and_readwrite_bind_takes_them(
    root: Path, tmp_path: Path
) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "hello").write_text("from the host\n")
    binds = [Bind(ro, "/var/db/repos/gentoo", readonly=True), Bind(rw, "/var/cache/binpkgs")]
    with Chroot(root, binds=binds) as ch:
        assert ch.run(["cat", "/var/db/repos/gentoo/hello"]).stdout == "from the host\n"
        with pytest.raises(CommandFailed) as info:
            ch.run(["touch", "/var/db/repos/gentoo/new"])
        assert info.value.tail == "touch: /var/db/repos/gentoo/new: Read-only file system"
        ch.run(["sh", "-c", "echo built > /var/cache/binpkgs/pkg"])
        (ro / "later").write_text("still writable outside\n")
        assert ch.run(["cat", "/var/db/repos/gentoo/later"]).stdout == "still writable outside\n"
    assert sorted(p.name for p in ro.iterdir()) == ["hello", "later"]
    assert (rw / "pkg").read_text() == "built\n"
    assert list((root / "var/db/repos/gentoo").iterdir()) == []  # only a mount point was made


def test_resolv_conf_is_the_parents_and_read_only(root: Path) -> None:
    host = Path("/etc/resolv.conf")
    if not host.exists():
        pytest.skip("this machine has no /etc/resolv.conf to bind")
    with Chroot(root) as ch:
        assert ch.run(["cat", "/etc/resolv.conf"]).out == host.read_bytes()
        assert ch.run(["sh", "-c", "echo x >> /etc/resolv.conf"], check=False).returncode != 0
    with Chroot(root, resolv_conf=False) as ch:
        assert ch.run(["cat", "/etc/resolv.conf"]).out == b""  # the empty mount point


def test_env_and_cwd_and_a_clean_environment(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("G2D_MUST_NOT_LEAK", "1")
    (root / "tmp" / "work dir").mkdir()
    with Chroot(root) as ch:
        r = ch.run(["sh", "-c", 'echo "$G2D_X"; pwd'], env={"G2D_X": NASTY}, cwd="/tmp/work dir")
        assert r.lines() == [NASTY, "/tmp/work dir"]
        env = dict(line.split("=", 1) for line in ch.run(["env"]).lines())
        assert "G2D_MUST_NOT_LEAK" not in env
        assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        assert ch.run(["pwd"]).stdout == "/\n"
        with pytest.raises(ValueError):
            ch.run(["true"], env={"A=B": "x"})


def test_errors_name_the_chroot_and_the_command(root: Path) -> None:
    with Chroot(root) as ch:
        with pytest.raises(CommandFailed) as info:
            ch.run(["sh", "-c", "echo why >&2; exit 3"])
        e = info.value
        assert (e.host, e.argv, e.code, e.tail) == (ch.name, ("sh", "-c", e.argv[2]), 3, "why")
        assert str(e) == f"{ch.name}: \"sh -c 'echo why >&2; exit 3'\" exited with 3\nwhy"
        assert ch.run(["sh", "-c", "exit 4"], check=False).returncode == 4
        with pytest.raises(CommandNotFound) as missing:
            ch.run(["g2d-no-such-program"])
        assert str(missing.value) == f"{ch.name}: g2d-no-such-program not found"
        with pytest.raises(CommandFailed) as nowhere:
            ch.run(["true"], cwd="/no/such/dir")
        assert nowhere.value.tail == "working directory /no/such/dir missing"


def test_argv_and_bytes_survive_run_stdin_and_pipelines(root: Path) -> None:
    blob = os.urandom(1 << 20)
    with Chroot(root) as ch:
        assert ch.run(["printf", "%s", NASTY]).stdout == NASTY
        assert ch.run(["cat"], stdin=blob).out == blob
        into = run_pipeline([Stage.of(local, ["printf", "%s", NASTY]), Stage.of(ch, ["cat"])])
        assert into.stdout == NASTY
        out_of = run_pipeline([Stage.of(ch, ["printf", "%s", NASTY]), Stage.of(local, ["cat"])])
        assert out_of.stdout == NASTY


def test_filesystem_is_the_root(root: Path) -> None:
    with Chroot(root) as ch:
        fs = ch.filesystem()
        fs.pipe_file("/tmp/from-fsspec", NASTY.encode())
        assert ch.run(["cat", "/tmp/from-fsspec"]).stdout == NASTY
        assert fs.isdir("/bin")
    assert (root / "tmp" / "from-fsspec").read_text() == NASTY


# --- nothing outlives it ----------------------------------------------------------------------


def test_timeout_kills_the_group_inside_and_the_chroot_lives_on(root: Path) -> None:
    secs = unique_secs()
    with Chroot(root) as ch:
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as info:
            ch.run(["sh", "-c", f"sleep {secs} & sleep {secs}; wait"], timeout=1)
        assert time.monotonic() - started < 4
        assert str(info.value).startswith(f'{ch.name}: "sh -c ')
        assert processes_with(secs) == []
        # only the holder (unshare and its cat) is left in the namespace
        left = sorted(cmdline(p)[0] for p in ns_members(ch.mount_namespace))
        assert left == ["cat", "unshare"]
        assert ch.run(["echo", "alive"]).stdout == "alive\n"


def test_a_process_that_leaves_the_group_dies_at_exit(root: Path) -> None:
    secs = unique_secs()
    with Chroot(root) as ch:
        ns = ch.mount_namespace
        # setsid: out of the runner's group, orphaned, still running when the run returns
        ch.run(["sh", "-c", f"setsid sleep {secs} > /dev/null 2>&1 < /dev/null &"])
        assert wait_until(lambda: processes_with(secs) != [])
    assert processes_with(secs) == []
    assert ns_members(ns) == []


def test_a_dead_holder_is_reported_and_took_everything_with_it(root: Path) -> None:
    secs = unique_secs()
    with Chroot(root) as ch:
        ch.run(["sh", "-c", f"setsid sleep {secs} > /dev/null 2>&1 < /dev/null &"])
        assert wait_until(lambda: processes_with(secs) != [])
        os.kill(ch.pid, signal.SIGKILL)  # pid 1 of the namespace: the kernel kills the rest
        assert wait_until(lambda: processes_with(secs) == [])
        with pytest.raises(ChrootError) as info:
            ch.run(["true"])
        assert str(info.value) == f"chroot {root}: its namespace holder exited"
        ns = ch.mount_namespace
    assert ns_members(ns) == []


OWNER = """
import sys
from g2d.hosts.chroot import Bind, Chroot
from g2d.hosts.local import LocalHost
from g2d.hosts.ssh import SshHost

root, src, secs, kind = sys.argv[1:5]
if kind == "ssh":
    address, port, user, key, host_key = sys.argv[5:]
    parent = SshHost(address, host_keys=[host_key], user=user, port=int(port), key=key)
else:
    parent = LocalHost()
with Chroot(root, binds=[Bind(src, "/mnt/data")], parent=parent) as ch:
    print(ch.pid, ch.mount_namespace, flush=True)
    ch.run(["sh", "-c", "echo started > /mnt/data/mark; exec sleep " + secs])
"""


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return b""
    return proc.stdout.readline()


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_no_mount_and_no_process_survive_a_sigkilled_owner(
    root: Path, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    secs = unique_secs()
    extra: list[str] = []
    if kind == "ssh":
        sshd: SshServer = request.getfixturevalue("sshd")
        extra = [sshd.host, str(sshd.port), sshd.user, str(sshd.client_key), sshd.host_public_key]
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(root), str(src), secs, kind, *extra],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    ns = ""
    try:
        line = read_line(owner, 30)
        assert line, f"the owner printed nothing (exit {owner.poll()})"
        holder, ns = int(line.split()[0]), line.split()[1].decode()
        assert wait_until(lambda: (src / "mark").exists() and processes_with(secs) != [])
        assert mounts_under(root) == []
        owner.kill()  # SIGKILL: no __exit__, no finally, no atexit
        owner.wait()
        assert wait_until(lambda: ns_members(ns) == [] and processes_with(secs) == [])
        assert not pid_alive(holder)
        assert mounts_under_anywhere(root) == []
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout:
            owner.stdout.close()
        for pid in ns_members(ns) if ns else []:  # only if the test failed: leave nothing
            os.kill(pid, signal.SIGKILL)


# --- a remote parent ------------------------------------------------------------------------


def test_through_any_parent_host(root: Path, tmp_path: Path, parent: Host) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with Chroot(root, binds=[Bind(src, "/mnt/ro", readonly=True)], parent=parent) as ch:
        assert ch.name == f"chroot:{root}@{parent.name}"
        assert ch.run(["printf", "%s", NASTY]).stdout == NASTY
        assert ch.run(["pwd"], cwd="/mnt").stdout == "/mnt\n"
        assert ch.run(["touch", "/mnt/ro/x"], check=False).returncode == 1
        piped = run_pipeline([Stage.of(ch, ["printf", "%s", NASTY]), Stage.of(ch, ["cat"])])
        assert piped.stdout == NASTY
        with pytest.raises(CommandTimeout):
            ch.run(["sleep", "30"], timeout=1)
        ns = ch.mount_namespace
        assert mounts_under(root) == []
    assert ns_members(ns) == []
    assert mounts_under_anywhere(root) == []


# --- refused ----------------------------------------------------------------------------------


def test_bind_destinations_that_leave_the_root_are_refused(root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for dst, reason in [
        ("/../etc", "bind destination '/../etc' may not contain '..'"),
        ("/mnt/../../etc", "bind destination '/mnt/../../etc' may not contain '..'"),
        ("mnt/data", "bind destination 'mnt/data' must be absolute (inside the root)"),
        ("/", "a bind destination may not be the root itself"),
    ]:
        with pytest.raises(ChrootError) as info:
            Chroot(root, binds=[Bind(src, dst)])
        assert str(info.value) == f"chroot {root}: {reason}"

    (root / "mnt").mkdir()
    (root / "mnt" / "up").symlink_to("../../..")
    before = holders()
    with pytest.raises(ChrootError) as info, Chroot(root, binds=[Bind(src, "/mnt/up/etc")]):
        pass
    assert str(info.value) == f"chroot {root}: /mnt/up/etc leads out of the root through a symlink"
    assert holders() == before  # the half-built namespace went with the error
    assert mounts_under_anywhere(root) == []


def test_an_absolute_symlink_resolves_inside_the_root(root: Path, tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    (src / "hello").write_text("hi\n")
    (root / "mnt").mkdir()
    (root / "mnt" / "abs").symlink_to(outside)  # as the chroot sees it: <root><outside>
    with Chroot(root, binds=[Bind(src, "/mnt/abs/data")]) as ch:
        assert ch.run(["cat", "/mnt/abs/data/hello"]).stdout == "hi\n"
    assert list(outside.iterdir()) == []  # nothing made or mounted outside the root
    assert (root / outside.relative_to("/") / "data").is_dir()


def test_bad_roots_and_sources_are_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ChrootError) as info:
        Chroot("relative/root")
    assert str(info.value) == "chroot relative/root: the root must be an absolute path"
    with pytest.raises(ChrootError) as info, Chroot(tmp_path / "missing"):
        pass
    assert str(info.value) == f"chroot {tmp_path}/missing: not a directory on local"
    with pytest.raises(ChrootError) as info, Chroot("/"):
        pass
    assert str(info.value) == "chroot /: refusing to mount over the parent's own root"
    before = holders()
    with pytest.raises(ChrootError) as info, Chroot(root, binds=[Bind(tmp_path / "no", "/x")]):
        pass
    assert str(info.value) == f"chroot {root}: bind source {tmp_path}/no does not exist"
    assert holders() == before
    (root / "file").write_text("")
    with pytest.raises(ChrootError) as info, Chroot(root, binds=[Bind(tmp_path, "/file")]):
        pass
    assert str(info.value) == f"chroot {root}: mount point /file is 'f', need a directory"


def test_commands_need_an_entered_chroot(root: Path) -> None:
    ch = Chroot(root)
    with pytest.raises(RuntimeError):
        ch.run(["true"])
    with ch:
        pass
    with pytest.raises(RuntimeError):
        ch.command(["true"])
