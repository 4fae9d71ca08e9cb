"""`g2d lab up/down/status` with the real daemons: http, rsync, sshd and a Prefect server.

The lab served here is a real one, cut down to its first two steps (keys and the ebuild
repository), which take a fraction of a second to build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from g2d.lab.build import build_lab
from g2d.lab.layout import LabLayout
from g2d.lab.process import descendants, find_program, pid_alive, port_open, spawn, stop_tree
from g2d.lab.services import (
    LabAlreadyUp,
    LabNotBuilt,
    Running,
    Service,
    Stopped,
    http_get,
    lab_down,
    lab_up,
    read_state,
    start_time,
)
from g2d.lab.status import Check, Finding, Level, lab_status
from g2d.lab.steps import LAB_STEPS

G2D = Path(sys.executable).parent / "g2d"
FIRST_STEPS = [s for s in LAB_STEPS if s.name in ("keys", "repo")]
NO_PREFECT = (Service.http, Service.rsync, Service.sshd)

Start = Callable[[str, Callable[[], Any]], Any]


@pytest.fixture
def layout(tmp_path: Path, start_component: Start) -> Iterator[LabLayout]:
    for program, package in (("rsync", "rsync"), ("sshd", "openssh-server")):
        start_component(
            program, lambda p=program, k=package: find_program(p, component=p, package=k)
        )
    lab = LabLayout(tmp_path / "lab")
    build_lab(lab, steps=FIRST_STEPS)
    yield lab
    lab_down(lab)  # whatever a failed test left running


def cli(*args: str, lab: LabLayout) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("G2D_")}
    env["G2D_LAB_DIR"] = os.fspath(lab.root)
    return subprocess.run([G2D, *args], env=env, capture_output=True, text=True, timeout=300)


def service_findings(lab: LabLayout) -> list[Finding]:
    return [f for f in lab_status(lab, steps=FIRST_STEPS) if f.check is Check.service]


def everything_of(services: tuple[Running, ...]) -> list[int]:
    return sorted({p for s in services for p in (s.pid, *descendants(s.pid))})


@pytest.mark.slow
def test_up_serves_the_lab_and_down_from_another_process_stops_all(layout: LabLayout) -> None:
    up = cli("lab", "up", lab=layout)
    assert up.returncode == 0, up.stderr
    state = read_state(layout)
    assert state is not None
    assert [s.name for s in state.services] == list(Service)
    http, rsync, sshd, prefect = state.services
    assert up.stdout == (
        f"http     {http.url:<32} pid {http.pid}\n"
        f"rsync    {rsync.url:<32} pid {rsync.pid}\n"
        f"sshd     {sshd.url:<32} pid {sshd.pid}\n"
        f"prefect  {prefect.url:<32} pid {prefect.pid}\n"
        f"Prefect UI: {prefect.url}\n"
        f"export PREFECT_API_URL={prefect.url}api\n"
        f"state: {layout.state_file}\n"
        f"export G2D_CONFIG={layout.root / 'g2d.toml'}\n"
    )
    config = (layout.root / "g2d.toml").read_text()
    assert f'releases = ["{http.url}releases/"]' in config.splitlines()
    assert f'repos = ["{rsync.url}gentoo-portage/"]' in config.splitlines()
    assert all(s.url.startswith(("http://127.0.0.1:", "rsync://127.0.0.1:")) for s in (http, rsync))

    # each service serves the lab, as a client would use it
    assert http_get(f"{http.url}repos/gentoo/profiles/repo_name") == (200, b"gentoo\n")
    listing = subprocess.run(["rsync", rsync.url], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["gentoo-portage", "gentoo"]
    got = layout.root / "repo_name"
    subprocess.run(["rsync", f"{rsync.url}gentoo-portage/profiles/repo_name", got], check=True)
    assert got.read_text() == "gentoo\n"
    assert state.ssh is not None
    ssh = [
        "ssh", "-F", "none", "-p", str(sshd.port), "-i", state.ssh.client_key,
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={state.ssh.known_hosts}",
        f"{state.ssh.user}@127.0.0.1", "echo", "remote host answers",
    ]  # fmt: skip
    assert subprocess.run(ssh, capture_output=True, text=True).stdout == "remote host answers\n"
    assert http_get(f"{prefect.url}api/health") == (200, b"true")
    status, page = http_get(prefect.url)
    assert status == 200 and page.startswith(b"<!DOCTYPE html>")

    assert service_findings(layout) == [
        Finding(Check.service, s.name, Level.ok, f"pid {s.pid}, {s.url}") for s in state.services
    ]
    pids = everything_of(state.services)
    assert all(pid_alive(p) for p in pids)

    down = cli("lab", "down", lab=layout)
    assert (down.returncode, down.stderr) == (0, "")
    assert down.stdout == "".join(
        f"{s.name:<8} pid {s.pid}: stopped\n" for s in reversed(state.services)
    )
    assert [p for p in pids if pid_alive(p)] == []
    assert not any(port_open(s.port) for s in state.services)
    assert not layout.state_file.exists()
    again = cli("lab", "down", lab=layout)
    assert (again.returncode, again.stdout) == (0, "the lab is not up\n")


def test_up_twice_is_refused_and_names_what_runs(layout: LabLayout) -> None:
    state = lab_up(layout, services=NO_PREFECT)
    http, rsync, sshd = state.services
    with pytest.raises(LabAlreadyUp) as refused:
        lab_up(layout, services=NO_PREFECT)
    assert str(refused.value) == (
        f"the lab is already up: http (pid {http.pid}), rsync (pid {rsync.pid}), "
        f"sshd (pid {sshd.pid})"
    )
    assert refused.value.hint == "run g2d lab down first"
    assert read_state(layout) == state  # the refusal changed nothing
    assert [s.outcome for s in lab_down(layout)] == ["stopped"] * 3


def test_status_finds_a_dead_service_and_down_stops_the_rest(layout: LabLayout) -> None:
    state = lab_up(layout, services=NO_PREFECT)
    http, rsync, sshd = state.services
    stop_tree(rsync.pid)  # the daemon dies behind the lab's back
    assert service_findings(layout) == [
        Finding(Check.service, "http", Level.ok, f"pid {http.pid}, {http.url}"),
        Finding(
            Check.service,
            "rsync",
            Level.error,
            f"pid {rsync.pid} is not running (log: {layout.run}/rsync/rsyncd.log)",
            fix="g2d lab down, then g2d lab up",
        ),
        Finding(Check.service, "sshd", Level.ok, f"pid {sshd.pid}, {sshd.url}"),
    ]
    result = cli("lab", "status", "--json", lab=layout)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {
        "check": "service",
        "subject": "rsync",
        "level": "error",
        "detail": f"pid {rsync.pid} is not running (log: {layout.run}/rsync/rsyncd.log)",
        "fix": "g2d lab down, then g2d lab up",
    } in report["findings"]
    assert lab_down(layout) == [
        Stopped(Service.sshd, sshd.pid, "stopped"),
        Stopped(Service.rsync, rsync.pid, "was not running"),
        Stopped(Service.http, http.pid, "stopped"),
    ]
    assert not any(pid_alive(s.pid) for s in state.services)


def test_down_leaves_alone_a_process_that_reused_a_recorded_pid(layout: LabLayout) -> None:
    stranger = spawn("stranger", ["sleep", "300"], log=layout.root / "stranger.log")
    try:
        started = start_time(stranger.pid)
        assert started is not None
        record = Running(Service.http, stranger.pid, started - 1, 1, "http://127.0.0.1:1/", Path())
        layout.state_file.write_text(
            json.dumps({"root": os.fspath(layout.root), "services": {"http": record.to_json()}})
        )
        assert lab_down(layout) == [
            Stopped(
                Service.http, stranger.pid, "left alone: its pid now belongs to another process"
            )
        ]
        assert stranger.alive()
        assert not layout.state_file.exists()
    finally:
        stranger.stop()


def test_up_refuses_a_lab_that_is_not_built(tmp_path: Path) -> None:
    lab = LabLayout(tmp_path / "empty")
    with pytest.raises(LabNotBuilt) as refused:
        lab_up(lab)
    assert str(refused.value) == (
        f"the lab in {lab.root} is not built (mirror/repos/gentoo is missing)"
    )
    assert refused.value.hint == "run g2d lab build"
    result = cli("lab", "up", lab=lab)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"error: {refused.value}\n(run g2d lab build)\n"


def test_status_of_a_lab_that_is_not_up_is_not_an_error(layout: LabLayout) -> None:
    findings = lab_status(layout, steps=FIRST_STEPS)
    assert findings[-1] == Finding(Check.service, "lab", Level.info, "not up", fix="g2d lab up")
    assert all(f.level is not Level.error for f in findings)
