"""deployments/prefect.yaml through `g2d serve`: the deployments register with the test
server, and `prefect deployment run snapshot/hourly` (the CLI) runs to completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from g2d.core.lineage import Origin
from g2d.flows.deployments import BadDeployments, deployments_file, read_deployments
from g2d.storage.lineage import create_op
from g2d.storage.lineage_site import open_site

PREFECT = Path(sys.executable).parent / "prefect"
# g2d serve, also before cli.py imports g2d.cli_serve
SERVE = [sys.executable, "-c", "import g2d.cli_serve, g2d.cli; g2d.cli.main()", "serve"]


def test_the_file_defines_the_deployments_and_templates_from_the_environment() -> None:
    entries = read_deployments(deployments_file(), env={"G2D_SNAPSHOT_TARGET": "zfs://tank/sys"})
    assert [e.full_name for e in entries] == [
        "snapshot/hourly",
        "lineage/local",
        "esync/nightly",
        "stage3/weekly",
        "deploy/local",
        "update/local",
        "install/saturn",
    ]
    hourly = entries[0]
    assert hourly.parameters == {"target": "zfs://tank/sys"}
    assert [(s.cron, s.timezone, s.active) for s in hourly.schedules] == [
        ("0 * * * *", "UTC", True)
    ]
    unset = read_deployments(deployments_file(), env={})[0]
    assert (unset.parameters, unset.unset) == ({}, ("G2D_SNAPSHOT_TARGET",))
    assert [s.active for s in unset.schedules] == [False]


def test_a_wrong_entry_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - {name: x, entrypoint: g2d/flows/snapshot.py:snapshot, cron: 1}\n"
    )
    with pytest.raises(BadDeployments) as info:
        read_deployments(bad)
    assert str(info.value) == "deployment 'x': unknown key(s) cron"


def _wait_for_deployment(name: str, serve: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert serve.poll() is None, f"g2d serve exited with {serve.returncode}"
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                time.sleep(0.5)
    raise AssertionError(f"{name} was not registered within {timeout:g} s")


def test_prefect_deployment_run_runs_the_served_snapshot_flow(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    root = tmp_path / "sys"
    root.mkdir()
    site = open_site(f"dir://{root}", state_dir=state_dir)
    site.writer().run("create", create_op(site.backend, None, Origin(), datetime.now(UTC)))
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the harness's server
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "G2D_STATE_DIR": str(state_dir),
        "G2D_SNAPSHOT_TARGET": f"dir://{root}",
    }
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(SERVE, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)  # fmt: skip
    try:
        _wait_for_deployment("snapshot/hourly", serve, 120)
        _wait_for_deployment("lineage/local", serve, 30)
        run = subprocess.run(
            [PREFECT, "deployment", "run", "snapshot/hourly", "--watch", "--watch-timeout", "240"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.killpg(serve.pid, signal.SIGTERM)  # the serve process and the runs it started
        serve.wait(timeout=60)
        log.close()
    assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "serve.log").read_text()
    assert "Flow run finished successfully" in run.stdout, run.stdout
    taken = [s for s in site.load().snapshots]
    assert [s.ref.volume for s in taken] == [f"{root}/g1"]
    assert not taken[0].sealed
