"""`g2d lab up` / `g2d lab down`: the lab's services on 127.0.0.1, known by pid.

`up` starts an http server for the mirror tree, an rsync daemon with Gentoo's module names,
an OpenSSH server standing for a remote host, and a Prefect server (SQLite), each on a free
port, and records ports, pids and URLs in the lab's ``state.json``. The services outlive the
process that started them; `down`, from any process, stops exactly the pids in the state
file, and only while each pid still belongs to the process that `up` started.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g2d.core.errors import G2dUserError
from g2d.lab.daemons import start_http_server, start_rsync_daemon
from g2d.lab.errors import ComponentUnavailable
from g2d.lab.layout import LabLayout
from g2d.lab.process import HOST, Daemon, free_port, pid_alive, spawn, stop_tree
from g2d.lab.sshd import start_sshd

PREFECT_TIMEOUT = 180.0  # a fresh SQLite database: ~13 s idle, 35-60 s on a loaded 2-core box
_PORT_ATTEMPTS = 3
# no proxy, whatever the environment says: the lab talks to 127.0.0.1 only
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Service(enum.StrEnum):
    http = enum.auto()
    rsync = enum.auto()
    sshd = enum.auto()
    prefect = enum.auto()


ALL_SERVICES: tuple[Service, ...] = tuple(Service)
RSYNC_MODULES = ("gentoo-portage", "gentoo")  # the names Gentoo's rsync mirrors export


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot): tells it apart from a later holder of
    the same pid. None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


@dataclass(frozen=True)
class Running:
    """One service as `up` recorded it."""

    name: Service
    pid: int
    started: int  # start_time(pid) when `up` saw it
    port: int
    url: str
    log: Path

    def alive(self) -> bool:
        return pid_alive(self.pid) and start_time(self.pid) == self.started

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "name": str(self.name), "log": os.fspath(self.log)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Running:
        return cls(
            name=Service(data["name"]),
            pid=int(data["pid"]),
            started=int(data["started"]),
            port=int(data["port"]),
            url=str(data["url"]),
            log=Path(data["log"]),
        )


@dataclass(frozen=True)
class SshAccess:
    """How to log in to the lab's sshd: its pinned host key and the client key."""

    user: str
    client_key: Path
    known_hosts: Path
    host_public_key: str

    def to_json(self) -> dict[str, str]:
        return {k: os.fspath(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class LabState:
    root: Path
    services: tuple[Running, ...]
    ssh: SshAccess | None = None

    def get(self, name: Service) -> Running | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def prefect_api_url(self) -> str | None:
        prefect = self.get(Service.prefect)
        return prefect.url + "api" if prefect else None

    def mirrors(self) -> dict[str, list[str]]:
        """g2d's `mirrors` setting pointing at this lab (see g2d.settings.Resource)."""
        http, rsync = self.get(Service.http), self.get(Service.rsync)
        found: dict[str, list[str]] = {}
        for part in ("releases", "snapshots", "distfiles", "binpkgs", "kernels"):
            found[part] = [f"{http.url}{part}/"] if http else []
        found["repos"] = [f"{rsync.url}gentoo-portage/"] if rsync else []
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "root": os.fspath(self.root),
            "services": {str(s.name): s.to_json() for s in self.services},
            "ssh": self.ssh.to_json() if self.ssh else None,
            "prefect_api_url": self.prefect_api_url,
            "mirrors": self.mirrors(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabState:
        ssh = data.get("ssh")
        return cls(
            root=Path(data["root"]),
            services=tuple(Running.from_json(s) for s in data["services"].values()),
            ssh=SshAccess(
                user=ssh["user"],
                client_key=Path(ssh["client_key"]),
                known_hosts=Path(ssh["known_hosts"]),
                host_public_key=ssh["host_public_key"],
            )
            if ssh
            else None,
        )


class LabNotBuilt(G2dUserError):
    """`lab up` needs the served tree, which `lab build` makes."""


class LabAlreadyUp(G2dUserError):
    """The state file names services that are still running."""


def read_state(layout: LabLayout) -> LabState | None:
    try:
        return LabState.from_json(json.loads(layout.state_file.read_text()))
    except FileNotFoundError:
        return None


def _write_state(layout: LabLayout, state: LabState) -> None:
    tmp = layout.state_file.with_name(f".{layout.state_file.name}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, layout.state_file)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def prefect_healthy(port: int) -> bool:
    try:
        return http_get(f"http://{HOST}:{port}/api/health") == (200, b"true")
    except OSError:
        return False


def _prefect_env(home: Path, port: int) -> dict[str, str]:
    # the caller's PREFECT_* (a test harness, a profile) must not steer the lab's server
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {
        **env,
        "PREFECT_HOME": os.fspath(home),
        "PREFECT_API_URL": f"http://{HOST}:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
    }


def start_prefect(directory: Path, *, timeout: float = PREFECT_TIMEOUT) -> tuple[Daemon, int]:
    """`prefect server start` on 127.0.0.1 with SQLite under `directory`; wait for health."""
    exe = shutil.which("prefect", path=os.path.dirname(sys.executable)) or shutil.which("prefect")
    if exe is None:
        raise ComponentUnavailable("prefect server", "prefect not found", hint="make setup")
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    log = directory / "prefect.log"
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        log.unlink(missing_ok=True)
        argv = [exe, "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
        daemon = spawn("prefect server", argv, log=log, env=_prefect_env(home, port))
        deadline = time.monotonic() + timeout
        while daemon.alive() and time.monotonic() < deadline and not prefect_healthy(port):
            time.sleep(0.25)
        if daemon.alive() and prefect_healthy(port):
            return daemon, port
        tail = daemon.log_tail()
        daemon.stop()
        if "address already in use" in tail.lower():
            continue
        why = f"exited with {daemon.proc.returncode}" if daemon.proc.returncode else "no health"
        raise ComponentUnavailable("prefect server", f"{why} after {timeout:g} s:\n{tail}")
    raise ComponentUnavailable("prefect server", f"no free port after {_PORT_ATTEMPTS} attempts")


def _record(name: Service, daemon: Daemon, port: int, url: str) -> Running:
    started = start_time(daemon.pid)
    if started is None:
        raise ComponentUnavailable(str(name), f"pid {daemon.pid} vanished after it started")
    return Running(name, daemon.pid, started, port, url, daemon.log)


def _start(name: Service, layout: LabLayout, undo: ExitStack) -> tuple[Running, SshAccess | None]:
    where = layout.service_dir(name)
    if name is Service.http:
        http = start_http_server(layout.mirror, state_dir=where)
        undo.callback(http.stop)
        return _record(name, http.daemon, http.port, http.url), None
    if name is Service.rsync:
        modules = dict(zip(RSYNC_MODULES, (layout.gentoo_repo, layout.mirror), strict=True))
        rsync = start_rsync_daemon(modules, state_dir=where)
        undo.callback(rsync.stop)
        return _record(name, rsync.daemon, rsync.port, rsync.url()), None
    if name is Service.sshd:
        shutil.rmtree(where, ignore_errors=True)  # fresh keys each time; ssh-keygen won't overwrite
        sshd = start_sshd(where)
        undo.callback(sshd.stop)
        access = SshAccess(sshd.user, sshd.client_key, sshd.known_hosts, sshd.host_public_key)
        url = f"ssh://{sshd.user}@{HOST}:{sshd.port}"
        return _record(name, sshd.daemon, sshd.port, url), access
    daemon, port = start_prefect(where)
    undo.callback(daemon.stop)
    return _record(name, daemon, port, f"http://{HOST}:{port}/"), None


def lab_up(
    layout: LabLayout,
    *,
    services: Collection[Service] = ALL_SERVICES,
    progress: Callable[[str], None] | None = None,
) -> LabState:
    """Start the lab's services; on any failure stop those already started."""
    if not layout.gentoo_repo.is_dir():
        raise LabNotBuilt(
            f"the lab in {os.fspath(layout.root)} is not built "
            f"({layout.relative(layout.gentoo_repo)} is missing)",
            hint="run g2d lab build",
        )
    old = read_state(layout)
    if old is not None:
        alive = [f"{s.name} (pid {s.pid})" for s in old.services if s.alive()]
        if alive:
            raise LabAlreadyUp(
                f"the lab is already up: {', '.join(alive)}", hint="run g2d lab down first"
            )
        layout.state_file.unlink()  # a stale state from a lab that died on its own
    running: list[Running] = []
    ssh: SshAccess | None = None
    with ExitStack() as undo:
        undo.callback(layout.state_file.unlink, missing_ok=True)
        for name in (s for s in ALL_SERVICES if s in services):
            if progress:
                progress(f"starting {name}")
            record, access = _start(name, layout, undo)
            running.append(record)
            ssh = access or ssh
            # written after each start, so a `down` finds what an interrupted `up` left
            _write_state(layout, LabState(layout.root, tuple(running), ssh))
        undo.pop_all()
    return LabState(layout.root, tuple(running), ssh)


@dataclass(frozen=True)
class Stopped:
    name: Service
    pid: int
    outcome: str  # "stopped", "was not running", or why it was left alone


def lab_down(layout: LabLayout) -> list[Stopped]:
    """Stop what the state file names, newest first, and remove the state file."""
    state = read_state(layout)
    if state is None:
        return []
    done: list[Stopped] = []
    for service in reversed(state.services):
        if service.alive():
            stop_tree(service.pid, grace=10.0)
            outcome = "stopped"
        elif pid_alive(service.pid):
            outcome = "left alone: its pid now belongs to another process"
        else:
            outcome = "was not running"
        done.append(Stopped(service.name, service.pid, outcome))
    layout.state_file.unlink(missing_ok=True)
    return done
