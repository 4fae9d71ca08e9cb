"""Fixtures that start real lab components and stop them, for every tier.

A component that cannot exist on this machine skips the test and names the component; under
`CI=true` (where every component is installed) it fails the test instead. `start_or_skip` is
the one place that rule lives.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from g2d.core.lineage import Origin
from g2d.hosts.local import LocalHost
from g2d.lab.build import BuildReport, LabBusy, build_lab
from g2d.lab.daemons import HttpServer, RsyncDaemon, start_http_server, start_rsync_daemon
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.layout import LabLayout
from g2d.lab.loopdev import FsType, LoopMount, mount_loop
from g2d.lab.mirror_served import LabMirror
from g2d.lab.process import pid_alive, random_token
from g2d.lab.sshd import SshServer, start_sshd
from g2d.lab.zfs_fuse import ZfsFuse, ZfsPool, create_pool, ensure_zfs_fuse
from g2d.storage.base import BackendKind
from g2d.storage.lineage import create_op, load_lineage, seal_op
from g2d.storage.lineage_run import LineageWriter
from g2d.storage.sense import backend_class, pool_of

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


def start_or_skip(component: str, start: Callable[[], T]) -> T:
    """Run a starter; if its component cannot exist here, skip (or fail under CI=true)."""
    try:
        return start()
    except ComponentUnavailable as exc:
        why = exc.reason if exc.component == component else str(exc)
        reason = f"{component} cannot start: {why}" + (f" ({exc.hint})" if exc.hint else "")
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def restore_g2d_logger() -> Iterator[None]:
    """A CLI run (CliRunner) configures the g2d logger; leave it as it was for the tests after."""
    logger = logging.getLogger("g2d")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


@pytest.fixture(autouse=True)
def default_sigint(request: pytest.FixtureRequest) -> Iterator[None]:
    """Python's own SIGINT handler, SIGINT unblocked, around every test: the cancellation
    tests (test_runner, test_ssh_host) interrupt the main thread and need both. A pytest
    started in the background of a non-interactive shell (``make test &``) inherits SIGINT
    ignored, and Python then keeps SIG_IGN instead of its own handler: those tests failed so
    (seen before the first test of such a run). Whatever sets another handler or mask is
    named in a warning, and the default is put back."""

    def reset(when: str) -> None:
        handler = signal.getsignal(signal.SIGINT)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        if handler is not signal.default_int_handler or signal.SIGINT in blocked:
            warnings.warn(f"{when} {request.node.nodeid}: SIGINT handler {handler!r}, "
                          f"blocked {sorted(blocked)}; reset", stacklevel=1)  # fmt: skip
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

    reset("before")
    yield
    reset("after")


@pytest.fixture
def start_component() -> Callable[[str, Callable[[], Any]], Any]:
    """`start_or_skip` for tests that drive a component's teardown themselves."""
    return start_or_skip


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_or_skip("sshd", lambda: start_sshd(tmp_path_factory.mktemp("sshd")))
    with server:
        yield server
    assert not pid_alive(server.pid), f"sshd {server.pid} survived its stop"


@pytest.fixture(scope="session")
def zfs_fuse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZfsFuse]:
    daemon = start_or_skip("zfs-fuse", lambda: ensure_zfs_fuse(tmp_path_factory.mktemp("zfs-fuse")))
    yield daemon
    # stops only a daemon this session started, and only once no pool is left on it
    if daemon.stop():
        assert not pid_alive(daemon.pid), f"zfs-fuse {daemon.pid} survived its stop"


@pytest.fixture
def zfs_pool(zfs_fuse: ZfsFuse, tmp_path: Path) -> Iterator[ZfsPool]:
    """A fresh pool on one sparse file, its root dataset mounted at tmp_path/zfs-mnt."""
    pool = start_or_skip(
        "zfs pool",
        lambda: create_pool(tmp_path / "zfs-vdevs", mountpoint=tmp_path / "zfs-mnt"),
    )
    with pool:
        yield pool


def _loop_mount(fstype: FsType, tmp_path: Path) -> Iterator[LoopMount]:
    mounted = start_or_skip(
        f"{fstype} on a loop device", lambda: mount_loop(tmp_path / f"{fstype}-loop", fstype)
    )
    with mounted:
        yield mounted


@pytest.fixture
def btrfs_mount(tmp_path: Path) -> Iterator[LoopMount]:
    yield from _loop_mount(FsType.btrfs, tmp_path)


@pytest.fixture
def ext4_mount(tmp_path: Path) -> Iterator[LoopMount]:
    yield from _loop_mount(FsType.ext4, tmp_path)


@pytest.fixture
def xfs_mount(tmp_path: Path) -> Iterator[LoopMount]:
    yield from _loop_mount(FsType.xfs, tmp_path)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """An http server on 127.0.0.1 serving the (empty) directory `http_server.root`."""
    root = tmp_path / "www"
    root.mkdir()
    server = start_or_skip(
        "http server", lambda: start_http_server(root, state_dir=tmp_path / "httpd-state")
    )
    with server:
        yield server


@pytest.fixture
def rsync_daemon(tmp_path: Path) -> Iterator[RsyncDaemon]:
    """An rsync daemon on 127.0.0.1 with empty modules `gentoo-portage` and `distfiles`."""
    modules = {"gentoo-portage": tmp_path / "gentoo-portage", "distfiles": tmp_path / "distfiles"}
    for path in modules.values():
        path.mkdir()
    server = start_or_skip(
        "rsync daemon", lambda: start_rsync_daemon(modules, state_dir=tmp_path / "rsyncd-state")
    )
    with server:
        yield server


# --- the whole lab, built once and kept between runs ----------------------------------------


def _release_disk(device: str) -> None:
    """What a failed test left on a disk: its mounts, an imported pool on it; then detach."""
    sh = LocalHost()
    mounts = json.loads(sh.run(["findmnt", "--json", "--list", "-o", "SOURCE,TARGET"]).stdout)
    for fs in reversed(mounts["filesystems"]):
        if re.fullmatch(rf"{re.escape(device)}(p\d+)?", fs["source"] or ""):  # not loop10
            sh.run(["umount", "-l", fs["target"]], check=False)
    status = sh.run(["zpool", "status"], check=False)
    pool = None
    for line in status.lines() if status.ok else []:
        words = line.split()
        if line.strip().startswith("pool:"):
            pool = words[1]
        elif pool and words and words[0].startswith(Path(device).name + "p"):
            sh.run(["zpool", "export", "-f", pool], check=False)
    sh.run(["losetup", "--detach", device])


@pytest.fixture
def loop_disk(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``loop_disk(size=1 GiB)``: a loop device (partitions scanned) over a sparse image in
    tmp_path, as a disk to install onto; released at the end of the test."""
    with ExitStack() as undo:

        def make(size: int = 1 << 30) -> str:
            image = tmp_path / f"disk-{random_token()}.img"
            with open(image, "xb") as f:
                f.truncate(size)
            undo.callback(image.unlink, missing_ok=True)
            argv = ["losetup", "--show", "--find", "--partscan", str(image)]
            device = LocalHost().run(argv).stdout.strip()
            undo.callback(_release_disk, device)
            return device

        yield make


@pytest.fixture
def sealed_plain_g1(tmp_path: Path) -> Callable[[dict[str, str]], tuple[Path, str]]:
    """``sealed_plain_g1(files)``: a plain lineage at ``tmp_path/src/sys`` whose g1 holds
    ``files`` (path in g1 -> text), sealed; returns (lineage root, snapshot name)."""

    def make(files: dict[str, str]) -> tuple[Path, str]:
        root = tmp_path / "src" / "sys"
        root.mkdir(parents=True)
        backend = backend_class(BackendKind.plain)(LocalHost())
        writer = LineageWriter(backend, str(root), pool_of(backend, str(root)), tmp_path / "lin")
        now = datetime.now(UTC)
        writer.run("create", create_op(backend, None, Origin(), now))
        for rel, text in files.items():
            (root / "g1" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "g1" / rel).write_text(text)
        writer.run("seal g1", seal_op(backend, f"{root}/g1", now))
        sealed = load_lineage(backend, str(root)).generation("g1").newest_sealed
        assert sealed is not None
        return root, sealed.name

    return make


@pytest.fixture(scope="session")
def lab_world_build() -> tuple[LabLayout, BuildReport]:
    """The full lab (`g2d lab build`), in $G2D_TEST_LAB or ./state/test-lab, and the report of
    this session's build of it: every step built on a clean checkout (CI), every step cached
    when an earlier session built it."""
    root = Path(os.environ.get("G2D_TEST_LAB") or REPO / "state" / "test-lab")
    layout = LabLayout(root)
    deadline = time.monotonic() + 900
    while True:  # another session (or `g2d lab build`) may be building the same lab
        try:
            return layout, start_or_skip("the lab", lambda: build_lab(layout))
        except LabBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="session")
def lab_world(lab_world_build: tuple[LabLayout, BuildReport]) -> LabLayout:
    """The full lab, built once (about 3 minutes cold); the build's stamps make later
    sessions take a second. Tests read it and never change it: they copy what they would
    modify."""
    return lab_world_build[0]


@pytest.fixture(scope="session")
def lab_mirror(
    lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabMirror]:
    """http and rsync daemons serving `lab_world`'s mirror for the session (not `lab up`:
    its state file would make parallel sessions collide)."""
    state = tmp_path_factory.mktemp("lab-mirror")
    http = start_or_skip(
        "http server", lambda: start_http_server(lab_world.mirror, state_dir=state / "http")
    )
    with http:
        modules = {"gentoo-portage": lab_world.gentoo_repo, "gentoo": lab_world.mirror}
        rsync = start_or_skip(
            "rsync daemon", lambda: start_rsync_daemon(modules, state_dir=state / "rsync")
        )
        with rsync:
            yield LabMirror(lab_world, http, rsync)
