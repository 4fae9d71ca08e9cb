"""The install flow against the test server: the plan is an artifact, the run pauses for a
typed approval (answered through the API, as the UI's Resume form does), a rejection
writes nothing, an approval installs and publishes the disk as written; and
``prefect deployment run install/saturn`` through ``g2d serve`` with approve=true.

The source is a small sealed plain generation; the disk a sparse file on a loop device;
the kernel the lab's (a copy, in a dom0 tree of its own). Nothing is booted here (the
e2e tier boots installs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL

from g2d.hosts.local import LocalHost
from g2d.lab.layout import LabLayout
from g2d.storage.base import BackendKind
from g2d.storage.lineage import load_lineage
from g2d.storage.sense import backend_class

LOCAL = LocalHost()
PREFECT = Path(sys.executable).parent / "prefect"
SERVE = [sys.executable, "-c", "import g2d.cli_serve, g2d.cli; g2d.cli.main()", "serve",
         "--only", "install/saturn"]  # fmt: skip


@pytest.fixture(scope="module")
def dom0(lab_world: LabLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dom0 tree whose kernels repository holds a copy of the lab kernel."""
    (kernel,) = (lab_world.kernels / "current").iterdir()
    root = tmp_path_factory.mktemp("dom0")
    shutil.copytree(kernel, root / "kernels" / "current" / kernel.name)
    return root


@pytest.fixture
def env(dom0: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"G2D_DOM0_ROOT": str(dom0), "G2D_STATE_DIR": str(tmp_path / "state")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def source(sealed_plain_g1) -> str:
    """A sealed plain g1 with a few files; its work= text (``dir://.../g1@safe``)."""
    root, _ = sealed_plain_g1({"etc/os-release": "NAME=Gentoo\n"})
    return f"dir://{root}/g1@safe"


@pytest.fixture
def disk(loop_disk) -> str:
    return loop_disk()  # type: ignore[no-any-return]


def _signatures(disk: str) -> list[object]:
    return json.loads(LOCAL.run(["wipefs", "--json", disk]).stdout or "{}").get("signatures", [])


def artifacts_of(flow_run_id: UUID) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {str(a.key): str(a.data) for a in found}


def _paused_run(name: str, timeout: float) -> UUID:
    """The id of the flow run ``name`` once it is paused."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                return runs[0].id
            time.sleep(0.2)
    raise AssertionError(f"{name} did not pause within {timeout:g} s")


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(state=call()), daemon=True)
    thread.start()
    return thread, out


def test_the_plan_is_published_and_the_install_waits_for_approval(
    env: dict[str, str], source: str, disk: str
) -> None:
    from g2d.flows.install import install

    boot = f"boot=ext4://{disk}:/g1"
    thread, out = _in_thread(lambda: install(source, boot, hostname="saturn", esp_mib=40,
                                             return_state=True))  # fmt: skip
    started = time.monotonic()
    run_id = _paused_run(f"install {source} onto {boot}", 120)
    paused_at = time.monotonic() - started
    key = f"install-dev-{Path(disk).name}"
    plan = artifacts_of(run_id)[f"{key}-plan"]
    volume = source.removeprefix("dir://").removesuffix("@safe")
    (snap,) = (s.name for s in load_lineage(backend_class(BackendKind.plain)(LOCAL),
                                            str(Path(volume).parent)).snapshots)  # fmt: skip
    assert plan.splitlines()[0] == f"## Plan: install `local:{volume}@{snap}` onto `{boot}`"
    assert "| g2d-g1 | default | g1 | root=UUID=" in plan
    assert f"{disk} holds" not in plan and "found on it: nothing" in plan
    assert _signatures(disk) == []  # untouched while paused
    resume_flow_run(run_id, run_input={"approve": True})
    resumed = time.monotonic()
    thread.join(300)
    state = out["state"]
    assert state.is_completed(), state.message
    print(f"paused after {paused_at:.1f} s; installed {time.monotonic() - resumed:.1f} s "
          "after the approval")  # fmt: skip
    result = state.result()
    layout = artifacts_of(run_id)[f"{key}-layout"]
    uuid = result["facts"]["root_uuid"]
    assert f"| {disk}p2 | " in layout and f" | ext4 | g2d-root | {uuid} |" in layout
    assert f"Root: `root=UUID={uuid} rootfstype=ext4 g2d.rootdir=/g1`; default entry " \
        "`g1`, fallback `-`" in layout  # fmt: skip
    assert "ESP entries: `g2d-g1.conf`" in layout
    assert json.loads(json.dumps(result))["esp_entries"] == ["g2d-g1.conf"]


def test_a_rejected_install_writes_nothing(env: dict[str, str], source: str, disk: str) -> None:
    from g2d.flows.install import install

    boot = f"boot=ext4://{disk}:/g1"
    thread, out = _in_thread(lambda: install(source, boot, esp_mib=40, return_state=True))
    run_id = _paused_run(f"install {source} onto {boot}", 120)
    resume_flow_run(run_id, run_input={"approve": False})
    thread.join(120)
    state = out["state"]
    assert state.is_cancelled()
    assert state.message == f"not approved: nothing was written to {boot}"
    assert _signatures(disk) == []
    assert not (Path(env["G2D_STATE_DIR"]) / "install").exists()  # no journal either
    assert set(artifacts_of(run_id)) == {f"install-dev-{Path(disk).name}-plan"}


def test_prefect_deployment_run_install_saturn(
    env: dict[str, str], source: str, disk: str, tmp_path: Path
) -> None:
    """Served by ``g2d serve``; ``work`` from the environment of the serve process (the
    yaml templates it), ``boot`` and ``approve`` as run parameters."""
    serve_env = {**os.environ, **env,
                 "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                 "PREFECT_HOME": str(tmp_path / "prefect-home"),
                 "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                 "G2D_INSTALL_WORK": source}  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(SERVE, env=serve_env, stdout=log, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        _wait_for_deployment("install/saturn", serve, 120, with_parameter="work")
        params = json.dumps({"boot": f"boot=ext4://{disk}:/g1", "approve": True})
        started = time.monotonic()
        run = subprocess.run(
            [PREFECT, "deployment", "run", "install/saturn", "--params", params,
             "--param", "esp_mib=40", "--watch", "--watch-timeout", "240"],
            env=serve_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        print(f"deployment run: {time.monotonic() - started:.1f} s")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
        log.close()
    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "serve.log").read_text()
    assert "Flow run finished successfully" in run.stdout, run.stdout
    found = LOCAL.run(["blkid", "-p", "-s", "TYPE", "-o", "value", f"{disk}p2"]).stdout
    assert found == "ext4\n"
    check = tmp_path / "check"
    check.mkdir()
    LOCAL.run(["mount", "-o", "ro", f"{disk}p2", str(check)])
    try:
        assert (check / "g1/etc/hostname").read_text() == "saturn\n"  # the yaml's hostname
    finally:
        LOCAL.run(["umount", str(check)])


def _wait_for_deployment(
    name: str, serve: subprocess.Popen[str], timeout: float, *, with_parameter: str
) -> None:
    """Until `serve` has registered `name` with `with_parameter` set: another test's serve
    (same session, same server) may have registered it earlier without that parameter."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert serve.poll() is None, f"g2d serve exited with {serve.returncode}"
            try:
                if with_parameter in client.read_deployment_by_name(name).parameters:
                    return
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    raise AssertionError(f"{name} was not registered within {timeout:g} s")
