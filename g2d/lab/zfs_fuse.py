"""ZFS for the lab: the zfs-fuse daemon and throw-away pools on sparse files.

zfs-fuse is a userspace ZFS (pool version 23) behind one machine-wide daemon; the `zpool`
and `zfs` commands talk to it over /var/run/zfs/zfs_socket. `ensure_zfs_fuse` starts that
daemon if none answers and stops it later only if it started it and no pool is left.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from g2d.core.errors import CommandFailed, G2dError
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.process import Daemon, find_program, pid_alive, random_token, run, spawn

MIN_VDEV_MIB = 64  # zfs-fuse: "one or more devices is less than the minimum size (64M)"
_NOT_RUNNING = "make sure that the zfs-fuse daemon is running"
_POOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]*")
_STOP_GRACE = 15.0  # zfs-fuse takes a few seconds to unmount and exit on TERM
_BUSY_RETRY = 30.0


def _zpool() -> str:
    return find_program("zpool", component="zfs-fuse", package="zfs-fuse")


def _answers(zpool: str) -> bool:
    try:
        run([zpool, "list", "-H", "-o", "name"], timeout=30)
    except CommandFailed:
        return False
    return True


def daemon_pids() -> list[int]:
    """Pids of every zfs-fuse process on the machine (ours or not)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(entry.path, "comm").read_text().strip()
            except OSError:
                continue
            if comm == "zfs-fuse" and pid_alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def pool_names() -> list[str]:
    """Names of the imported pools (`zpool list` works on zfs-fuse; `-p` does not)."""
    out = run([_zpool(), "list", "-H", "-o", "name"], timeout=30).stdout
    return [line for line in out.splitlines() if line and line != "no pools available"]


@dataclass
class ZfsFuse:
    """The running daemon; `started_here` says whether `stop()` may stop it."""

    pid: int
    started_here: bool
    daemon: Daemon | None = field(default=None, repr=False)
    pid_file: Path | None = None

    def stop(self) -> bool:
        """Stop the daemon if we started it and it serves no pool; True if it was stopped."""
        if self.daemon is None or not self.daemon.alive():
            return False
        if pool_names():  # someone else's pools: leave the shared daemon running
            return False
        self.daemon.stop(grace=_STOP_GRACE)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return True


def ensure_zfs_fuse(state_dir: Path, *, timeout: float = 20.0) -> ZfsFuse:
    """Return the zfs-fuse daemon, starting it (pid file and log in `state_dir`) if needed."""
    zfs_fuse = find_program("zfs-fuse", component="zfs-fuse", package="zfs-fuse")
    zpool = _zpool()
    if _answers(zpool):
        return ZfsFuse(pid=min(daemon_pids(), default=0), started_here=False)
    if not Path("/dev/fuse").exists():
        raise ComponentUnavailable(
            "zfs-fuse",
            "/dev/fuse is missing",
            hint="the kernel needs FUSE; a container needs --device /dev/fuse",
        )
    if os.geteuid() != 0:
        raise ComponentUnavailable("zfs-fuse", "the daemon must run as root")
    if stale := daemon_pids():
        raise ComponentUnavailable(
            "zfs-fuse",
            f"process {stale[0]} runs but does not answer on /var/run/zfs/zfs_socket",
            hint=f"stop it (kill {stale[0]}) and try again",
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        zfs_fuse,
        "--no-daemon",          # stay our child, so the pid we hold is the daemon's
        "--no-kstat-mount",     # otherwise it mounts a FUSE file system at /zfs-kstat
    ]  # fmt: skip
    with ExitStack() as undo:
        daemon = spawn("zfs-fuse", argv, log=state_dir / "zfs-fuse.log")
        undo.callback(daemon.stop, _STOP_GRACE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(zpool):
                pid_file = state_dir / "zfs-fuse.pid"
                pid_file.write_text(f"{daemon.pid}\n")
                undo.pop_all()
                return ZfsFuse(daemon.pid, True, daemon, pid_file)
            if not daemon.alive():
                if _answers(zpool):  # another starter won the race for the lock
                    return ZfsFuse(pid=min(daemon_pids(), default=0), started_here=False)
                raise ComponentUnavailable(
                    "zfs-fuse", f"exited with {daemon.proc.returncode}:\n{daemon.log_tail()}"
                )
            time.sleep(0.1)
        raise ComponentUnavailable(
            "zfs-fuse", f"no answer after {timeout:g} s:\n{daemon.log_tail()}"
        )


@dataclass
class ZfsPool:
    name: str
    files: tuple[Path, ...]
    mountpoint: Path | None
    _undo: ExitStack = field(default_factory=ExitStack, repr=False)

    def destroy(self) -> None:
        """Destroy the pool, then delete its files."""
        self._undo.close()

    def __enter__(self) -> ZfsPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


def _destroy_pool(zpool: str, name: str, *, busy_for: float = _BUSY_RETRY) -> None:
    # zfs-fuse lets go of a dataset late after it was mounted or written: "pool is busy"
    # can last from a moment to minutes under load. Unmount everything first, retry the
    # destroy, and if it stays busy export the pool by force (measured to work at once),
    # so the daemon never keeps a pool whose files are about to be deleted.
    zfs = str(Path(zpool).with_name("zfs"))
    listed = run([zfs, "list", "-H", "-o", "name", "-r", name], timeout=120, check=False)
    for dataset in reversed(listed.lines()):  # children before parents
        run([zfs, "unmount", "-f", dataset], timeout=120, check=False)
    deadline = time.monotonic() + busy_for
    while True:
        try:
            run([zpool, "destroy", "-f", name], timeout=120)
            break
        except CommandFailed as exc:
            if "pool is busy" not in exc.tail:
                raise
            if time.monotonic() > deadline:
                _force_export(zpool, name)
                break
            time.sleep(0.2)
    if name in pool_names():
        raise G2dError(f"zpool {name} is still imported after 'zpool destroy'")


def _force_export(zpool: str, name: str, *, attempts: int = 20) -> None:
    # even a forced export can meet "pool is busy" on a loaded machine: a few more tries
    for attempt in range(attempts):
        done = run([zpool, "export", "-f", name], timeout=120, check=False)
        if done.ok or name not in pool_names():
            return
        if attempt == attempts - 1:
            raise CommandFailed("local", [zpool, "export", "-f", name], done.returncode,
                                done.stderr)  # fmt: skip
        time.sleep(1.0)


def create_pool(
    directory: Path,
    *,
    vdevs: int = 1,
    size_mib: int = 256,
    mountpoint: Path | None = None,
    prefix: str = "g2dlab",
) -> ZfsPool:
    """A new pool `<prefix>-<token>` striped over `vdevs` sparse files in `directory`.

    The pool's root dataset is mounted at `mountpoint` (through FUSE), or not at all.
    """
    if size_mib < MIN_VDEV_MIB:
        raise ValueError(f"zfs-fuse refuses vdevs under {MIN_VDEV_MIB} MiB, got {size_mib}")
    if vdevs < 1:
        raise ValueError(f"a pool needs at least one vdev, got {vdevs}")
    name = f"{prefix}-{random_token()}"
    if not _POOL_NAME.fullmatch(name):
        raise ValueError(f"pool name {name!r} is not [A-Za-z][A-Za-z0-9_.:-]*")
    zpool = _zpool()
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as undo:
        files: list[Path] = []
        for i in range(vdevs):
            path = directory / f"{name}-vdev{i}.img"
            with open(path, "xb") as f:
                f.truncate(size_mib << 20)  # sparse: costs no space until written
            undo.callback(path.unlink, missing_ok=True)
            files.append(path)
        argv = [
            zpool, "create",
            "-o", "cachefile=none",     # not in zpool.cache: a crash leaves no pool to re-import
            "-m", os.fspath(mountpoint) if mountpoint else "none",
            name,
            *files,
        ]  # fmt: skip
        try:
            run(argv, timeout=120)
        except CommandFailed as exc:
            if _NOT_RUNNING in exc.tail:
                raise ComponentUnavailable(
                    "zfs-fuse", "the daemon is not running", hint="call ensure_zfs_fuse() first"
                ) from exc
            raise
        undo.callback(_destroy_pool, zpool, name)
        pool = ZfsPool(name, tuple(files), mountpoint)
        pool._undo = undo.pop_all()
        return pool
