"""Run commands inside a system root, in a mount namespace that cannot outlive g2d.

On entry a *holder* starts on the parent host:
``unshare --mount --pid --fork --kill-child --propagation slave -- cat /proc/self/stat -``.
It is pid 1 of a new PID namespace inside a new mount namespace (a slave of the parent's).
It prints its pid (``/proc`` is still the parent's, so the global one), then waits for EOF
on a pipe that only g2d holds. When g2d exits or is killed (or, for a remote parent, its
ssh connection closes), ``cat`` sees EOF and exits; the kernel then SIGKILLs every process
of the PID namespace, the mount namespace loses its last member, and every mount in it is
gone. Mounts never propagate out, so the parent's own mount table never shows them.

Mounts and commands enter through ``nsenter --target PID --mount --pid`` run by the parent
host, so a remote parent works the same as this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING

from g2d.core.errors import CommandFailed, CommandNotFound, CommandTimeout, G2dUserError
from g2d.hosts.base import Argv, Host, env_prefix
from g2d.hosts.local import LocalHost
from g2d.hosts.runner import (
    DEFAULT_KEEP,
    KILL_GRACE,
    WAKE_EVERY,
    Completed,
    Logger,
    StdinSpec,
    StdoutSpec,
    child_env,
    kill_group,
)

if TYPE_CHECKING:
    import fsspec

HOLDER = [
    "unshare",
    # slave: mounts made inside never reach the parent, and the parent's unmounts reach
    # inside (a private copy would keep, say, a loop device's file system mounted here)
    "--mount", "--propagation", "slave",
    "--pid", "--fork",                       # its death kills everything entered with --pid
    "--kill-child",                          # unshare killed: the namespace's pid 1 dies too
    "--",
    "cat", "/proc/self/stat", "-",           # report our pid, then wait for EOF on stdin
]  # fmt: skip

# A fresh environment inside the root: g2d's own (a venv's PATH, PYTHONPATH) must not leak in.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",  # as the runner sets it, so messages parse the same everywhere
}
MAX_LINKS = 40  # symlinks followed while resolving one mount point, as the kernel allows


class ChrootError(G2dUserError):
    """A chroot g2d will not set up or cannot keep: names the root and what is wrong."""

    def __init__(self, root: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(root, reason, hint=hint)
        self.root = root
        self.reason = reason

    def __str__(self) -> str:
        return f"chroot {self.root}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Bind:
    """A path of the parent host (``src``) mounted at ``dst`` inside the root.

    Not recursive: mounts below ``src`` are not carried, so ``readonly`` covers all of it.
    """

    src: str
    dst: str
    readonly: bool = False

    def __init__(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], readonly: bool = False
    ) -> None:
        object.__setattr__(self, "src", os.fspath(src))
        object.__setattr__(self, "dst", os.fspath(dst))
        object.__setattr__(self, "readonly", readonly)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One path as ``find -printf '%y %Y %l'`` sees it."""

    kind: str  # d, f, l, ... (a link is not followed)
    followed: str  # the kind once links are followed; N for a dangling link
    target: str  # a link's text, else ""


class Chroot(Host):
    """Commands inside ``root`` with /proc, /sys, /dev, /run, binds and resolv.conf mounted.

    ``with Chroot(root, binds=[Bind(src, "/var/db/repos/gentoo", readonly=True)]) as ch:``
    ``    ch.run(["emerge", "--info"])``

    The mounts exist only in a private namespace that lives as long as g2d (see the module
    docstring). Processes inside see their own PID namespace: ``/proc`` lists only them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        binds: Iterable[Bind] = (),
        *,
        parent: Host | None = None,
        resolv_conf: bool = True,
        start_timeout: float = 60.0,
        grace: float = KILL_GRACE,
    ) -> None:
        self.parent = parent or LocalHost()
        given = os.fspath(root)
        if not given.startswith("/"):
            raise ChrootError(given, "the root must be an absolute path")
        self.root = os.path.normpath(given)
        self.binds = tuple(binds)
        for b in self.binds:
            if not b.src.startswith("/"):
                raise ChrootError(self.root, f"bind source {b.src!r} must be an absolute path")
            _check_destination(self.root, b.dst)
        self.resolv_conf = resolv_conf
        self.start_timeout = start_timeout
        self.grace = grace
        self.name = f"chroot:{self.root}@{self.parent.name}"
        self._holder: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._mntns: str | None = None  # inode of the namespace, as ps prints it

    # -- lifetime ------------------------------------------------------------------------

    def __enter__(self) -> Chroot:
        if self._holder is not None:
            raise RuntimeError(f"{self.name} is already entered")
        canonical = self.parent.run(["realpath", "-e", "--", f"{self.root}/."], check=False)
        if not canonical.ok:
            raise ChrootError(self.root, f"not a directory on {self.parent.name}")
        self.root = canonical.stdout.rstrip("\n")
        if self.root == "/":
            raise ChrootError(self.root, "refusing to mount over the parent's own root")
        try:
            self._start_holder()
            self._mount_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """The holder's pid on the parent host: pid 1 of the namespace."""
        if self._pid is None:
            raise RuntimeError(f"{self.name} is not entered; use it as a context manager")
        return self._pid

    @property
    def mount_namespace(self) -> str:
        """The mount namespace's inode number on the parent (``ps -o mntns``)."""
        if self._mntns is None:
            raise RuntimeError(f"{self.name} is not entered; use it as a context manager")
        return self._mntns

    def _start_holder(self) -> None:
        argv = self.parent.command(HOLDER)
        try:
            holder = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(None),
                start_new_session=True,  # Ctrl-C on g2d's terminal must not reach it first
            )
        except FileNotFoundError as e:
            raise CommandNotFound(self.parent.name, argv[0]) from e
        self._holder = holder
        line = _first_line(holder, time.monotonic() + self.start_timeout)
        if line is None:
            raise CommandTimeout(self.parent.name, HOLDER, self.start_timeout, "")
        try:
            self._pid = int(line.split(b" ", 1)[0])
        except ValueError:
            holder.stdin.close()  # type: ignore[union-attr]
            code = holder.wait()
            assert holder.stderr is not None
            tail = holder.stderr.read().decode("utf-8", "replace").strip()
            raise CommandFailed(self.parent.name, HOLDER, code, tail) from None
        ns = self.parent.run(["readlink", f"/proc/{self._pid}/ns/mnt", "/proc/self/ns/mnt"])
        ours, theirs = ns.lines()
        if ours == theirs:
            # mounting now would change the parent's own mount table
            raise ChrootError(self.root, f"no new mount namespace on {self.parent.name}")
        self._mntns = ours.removeprefix("mnt:[").removesuffix("]")

    def close(self) -> None:
        """End the namespace: EOF to the holder, then wait until no process is left in it."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        before: list[int] = []
        try:
            if self._mntns and holder.poll() is None:
                before = self._members()  # while it lives, its inode names only it
        finally:
            for stream in (holder.stdin, holder.stdout, holder.stderr):
                if stream is not None:
                    stream.close()  # EOF: the holder exits, the kernel kills its namespace
            try:
                holder.wait(self.grace)
            except subprocess.TimeoutExpired:
                kill_group(holder, self.grace)
            self._pid = None
        if before:
            self._await_gone(before)
        self._mntns = None

    def _members(self) -> list[int]:
        """Pids on the parent whose mount namespace is ours."""
        out = self.parent.run(["ps", "-e", "-o", "pid=,mntns="]).stdout
        return [int(pid) for pid, ns in _pairs(out) if ns == self._mntns]

    def _await_gone(self, before: list[int]) -> None:
        # Only pids seen while the namespace was alive: once it is freed, its inode number
        # may be reused by a new namespace whose processes are none of ours.
        deadline = time.monotonic() + self.grace
        left = [p for p in self._members() if p in before]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in self._members() if p in before]
        if left:  # outside the PID namespace, so the kernel did not kill them
            self.parent.run(["kill", "-KILL", "--", *map(str, left)], check=False)
            deadline = time.monotonic() + self.grace
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = [p for p in self._members() if p in left]
        if left:
            raise ChrootError(
                self.root,
                f"processes {left} still hold its mount namespace after SIGKILL",
                hint="look for processes in uninterruptible sleep (state D)",
            )

    def _settle(self) -> None:
        """Give a holder whose namespace just died the moment it needs to exit."""
        if self._holder is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._holder.wait(self.grace)

    def _alive(self) -> int:
        if self._holder is None or self._pid is None:
            raise RuntimeError(f"{self.name} is not entered; use it as a context manager")
        if self._holder.poll() is not None:
            raise ChrootError(
                self.root,
                "its namespace holder exited",
                hint="everything inside was killed with it; enter the chroot again",
            )
        return self._pid

    # -- mounts --------------------------------------------------------------------------

    def _ns(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace but outside the root (the parent's tools)."""
        return ["nsenter", f"--target={self._alive()}", "--mount", "--pid", "--", *argv]

    def _mount_all(self) -> None:
        # order matters: /run must be a tmpfs before resolv.conf links into it are resolved
        self._mount("/proc", True, ["-t", "proc", "-o", "nosuid,nodev,noexec", "proc"])
        self._mount("/sys", True, ["-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs"])
        self._mount("/dev", True, ["--rbind", "/dev"])  # disks, loop devices, pts, shm
        self._mount("/run", True, ["-t", "tmpfs", "-o", "nosuid,nodev,mode=0755", "tmpfs"])
        for b in self.binds:
            self._bind(b.src, b.dst, readonly=b.readonly, required=True)
        if self.resolv_conf:
            self._bind("/etc/resolv.conf", "/etc/resolv.conf", readonly=True, required=False)

    def _mount(self, dst: str, directory: bool, how: list[str]) -> str:
        path = self._mount_point(dst, directory)
        self.parent.run(self._ns(["mount", *how, path]))
        return path

    def _bind(self, src: str, dst: str, *, readonly: bool, required: bool) -> None:
        source = self._lookup([src]).get(src)
        kind = source.followed if source else "N"
        if kind == "N":
            if not required:
                return
            raise ChrootError(self.root, f"bind source {src} does not exist")
        path = self._mount(dst, kind == "d", ["--bind", src])
        if readonly:
            self.parent.run(self._ns(["mount", "-o", "remount,bind,ro", path]))

    def _mount_point(self, dst: str, directory: bool) -> str:
        """The path, on the parent, of ``dst`` resolved inside the root; created if missing."""
        path, entry = self._resolve(dst)
        want = "a directory" if directory else "not a directory"
        if entry is None:
            parent = os.path.dirname(path)
            self.parent.run(self._ns(["mkdir", "-p", "--", path if directory else parent]))
            if not directory:
                self.parent.run(self._ns(["touch", "--", path]))
        elif (entry.kind == "d") != directory:
            raise ChrootError(self.root, f"mount point {dst} is {entry.kind!r}, need {want}")
        return path

    def _resolve(self, dst: str) -> tuple[str, _Entry | None]:
        """Resolve ``dst`` as a process chrooted into the root would, in our namespace.

        Absolute links start again at the root; a relative link that climbs above the root
        is refused. Returns the path on the parent and its entry (None: missing).
        """
        _check_destination(self.root, dst)
        root = PurePosixPath(self.root)
        pending = list(PurePosixPath(dst).parts[1:])
        done: list[str] = []  # existing directories below the root, no link among them
        links = 0
        while True:
            upto = pending.index("..") if ".." in pending else len(pending)
            probes = [str(root.joinpath(*done, *pending[: i + 1])) for i in range(upto)]
            found = self._lookup(probes) if probes else {}
            for i, probe in enumerate(probes):
                entry = found.get(probe)
                if entry is None:
                    rest = pending[i:]
                    if ".." in rest:
                        raise ChrootError(self.root, f"{dst} goes through {probe}, missing")
                    return str(root.joinpath(*done, *rest)), None
                if entry.kind == "l":
                    links += 1
                    if links > MAX_LINKS:
                        raise ChrootError(self.root, f"{dst}: too many levels of symlinks")
                    target = PurePosixPath(entry.target)
                    if target.is_absolute():
                        done = []  # inside the root, "/" is the root
                    pending = [*target.parts[1 if target.is_absolute() else 0 :], *pending[i + 1 :]]
                    break
                if i == len(pending) - 1:
                    return probe, entry
                if entry.kind != "d":
                    raise ChrootError(self.root, f"{dst}: {probe} is not a directory")
                done.append(pending[i])
            else:
                pending = pending[upto:]
                if not pending:
                    break
                if not done:
                    raise ChrootError(self.root, f"{dst} leads out of the root through a symlink")
                done.pop()  # "..": done holds no link, so this is its real parent
                pending = pending[1:]
        if not done:
            raise ChrootError(self.root, f"{dst} resolves to the root itself")
        return str(root.joinpath(*done)), _Entry("d", "d", "")

    def _lookup(self, paths: list[str]) -> dict[str, _Entry]:
        """What each path is, in our namespace; missing paths are left out."""
        argv = ["find", "-P", *paths, "-maxdepth", "0", "-printf", r"%p\0%y\0%Y\0%l\0"]
        out = self.parent.run(self._ns(argv), check=False).out
        fields = out.decode("utf-8", "surrogateescape").split("\0")
        return {
            fields[i]: _Entry(fields[i + 1], fields[i + 2], fields[i + 3])
            for i in range(0, len(fields) - 3, 4)
        }

    # -- the Host interface --------------------------------------------------------------

    def _inner(
        self, argv: list[str], env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None
    ) -> list[str]:
        if not argv:
            raise ValueError("empty argv")
        # env -i on the parent, then unshare chroots and changes directory inside the root,
        # so nothing in the root is needed but the command itself (busybox has no env -C)
        words = env_prefix({**BASE_ENV, **(env or {})}, None)[1:]  # "--", NAME=VALUE...
        return self._ns(
            [
                "env", "-i", *words,
                "unshare", f"--root={self.root}",
                *([f"--wd={os.fspath(cwd)}"] if cwd is not None else []),
                "--", *argv,
            ]
        )  # fmt: skip

    def run(
        self,
        argv: Argv,
        *,
        stdin: StdinSpec = None,
        stdout: StdoutSpec = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        check: bool = True,
        capture: bool = True,
        keep: int = DEFAULT_KEEP,
        logger: Logger | None = None,
    ) -> Completed:
        args = [os.fspath(a) for a in argv]
        try:
            done = self.parent.run(
                self._inner(args, env, cwd),
                stdin=stdin,
                stdout=stdout,
                timeout=timeout,
                check=False,
                capture=capture,
                keep=keep,
                logger=logger,
            )
        except CommandTimeout as e:  # the parent killed the group; name what the caller ran
            raise CommandTimeout(self.name, args, e.timeout, e.tail) from e
        result = dataclasses.replace(done, host=self.name, argv=tuple(args))
        if result.returncode == 0:
            return result
        tail = result.stderr
        if tail.startswith("nsenter: "):  # it never got in; a holder just killed is the usual why
            self._settle()
            self._alive()
        if result.returncode == 127 and f"unshare: failed to execute {args[0]}:" in tail:
            raise CommandNotFound(self.name, args[0])
        if cwd is not None and result.returncode == 1 and "unshare: cannot chdir to" in tail:
            raise CommandFailed(self.name, args, 127, f"working directory {cwd} missing")
        if check:
            raise CommandFailed(self.name, args, result.returncode, tail)
        return result

    def command(
        self,
        argv: Argv,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        return self.parent.command(self._inner([os.fspath(a) for a in argv], env, cwd))

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The root's files through the parent's filesystem; the namespace's mounts (binds,
        /proc) are not seen there, only what lies in the root itself."""
        from fsspec.implementations.dirfs import DirFileSystem

        return DirFileSystem(path=self.root, fs=self.parent.filesystem())

    def __repr__(self) -> str:
        return f"Chroot({self.root!r}, parent={self.parent!r})"


def _check_destination(root: str, dst: str) -> None:
    path = PurePosixPath(dst)
    if not path.is_absolute():
        raise ChrootError(root, f"bind destination {dst!r} must be absolute (inside the root)")
    if ".." in path.parts:
        raise ChrootError(root, f"bind destination {dst!r} may not contain '..'")
    if path == PurePosixPath("/"):
        raise ChrootError(root, "a bind destination may not be the root itself")


def _first_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    """The holder's first line; b"" if it exited first, None if the deadline passed."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not sel.select(min(left, WAKE_EVERY)):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def _pairs(text: str) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            pid, ns = line.split()
            rows.append((pid, ns))
    return rows
