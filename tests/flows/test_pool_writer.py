"""One writer per pool: the global concurrency limit, created on first use and held with
strict=True; a second writer waits for it, or fails after its wait and changes nothing.
The lineage is a plain directory lineage on tmp_path (ext4), the cheapest real backend."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import StateType
from prefect.concurrency.sync import concurrency

from g2d.core.lineage import Origin
from g2d.storage.lineage import create_op
from g2d.storage.lineage_site import LineageSite, open_site
from g2d.tasks.pool import PoolBusy, pool_limit_name, pool_writer


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LineageSite:
    monkeypatch.setenv("G2D_STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "sys"
    root.mkdir()
    site = open_site(f"dir://{root}")
    site.writer().run("create", create_op(site.backend, None, Origin(), datetime.now(UTC)))
    return site


def snapshots(site: LineageSite) -> list[str]:
    return [str(s.ref) for s in site.load().snapshots]


def test_limit_names_escape_what_prefect_refuses() -> None:
    assert pool_limit_name("local", "tank") == "pool:local:tank"
    assert pool_limit_name("root@saturn:22", "/srv/ro~ts") == "pool:root@saturn:22:~2Fsrv~2Fro~7Ets"


def test_the_limit_is_created_with_limit_one_and_a_writer_holds_its_slot() -> None:
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    name = f"pool:local:{pool}"
    with get_client(sync_client=True) as client:
        with pool_writer("local", pool, wait=30):
            held = client.read_global_concurrency_limit_by_name(name)
        after = client.read_global_concurrency_limit_by_name(name)
    assert (held.limit, held.active, held.active_slots) == (1, True, 1)
    assert after.active_slots == 0


def test_a_second_writer_fails_after_its_wait_and_changes_nothing(site: LineageSite) -> None:
    from g2d.flows.snapshot import snapshot

    name = pool_limit_name("local", site.pool)
    with pool_writer("local", site.pool, wait=30):  # the first writer
        state = snapshot(f"dir://{site.root}", wait=1.0, return_state=True)
    assert state.is_failed()
    with pytest.raises(PoolBusy) as info:
        state.result()
    assert str(info.value) == (
        f"pool {site.pool} on local is busy: another flow run holds {name} (still after 1 s)"
    )
    assert snapshots(site) == []


def test_a_second_writer_waits_for_the_first(site: LineageSite) -> None:
    from g2d.flows.snapshot import snapshot

    run_name = f"waiter-{uuid.uuid4().hex[:8]}"
    states = []
    with concurrency(pool_limit_name("local", site.pool), strict=True):  # the first writer
        waiter = threading.Thread(target=lambda: states.append(
            snapshot.with_options(flow_run_name=run_name)(
                f"dir://{site.root}", wait=300.0, return_state=True)))  # fmt: skip
        waiter.start()
        _wait_for_waiting_task(run_name)
        assert snapshots(site) == []  # it is inside its task, and waits for the slot
    waiter.join(timeout=300)
    assert states[0].is_completed(), states[0].message
    assert len(snapshots(site)) == 1


def _wait_for_waiting_task(flow_run_name: str) -> None:
    """Until the flow run's first task (the snapshot, holding nothing yet) is running."""
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
            )
            if runs:
                tasks = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
                )
                if any(t.state and t.state.type is StateType.RUNNING for t in tasks):
                    return
            time.sleep(0.2)
    raise AssertionError(f"flow run {flow_run_name} never started its task")
