"""The lineage flow on a plain directory lineage: a dry run publishes the plan and changes
nothing; a real run changes the lineage and publishes the tree."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from g2d.core.lineage import Origin
from g2d.core.lineage_tree import render_tree
from g2d.storage.lineage import create_op
from g2d.storage.lineage_site import open_site
from g2d.tasks.artifacts import artifact_key, lineage_key


def artifacts_of(state: object) -> dict[str, str]:
    run_id = state.state_details.flow_run_id  # type: ignore[attr-defined]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {f"{a.type}:{a.key}": a.data for a in found}  # type: ignore[misc]


def test_dry_run_publishes_the_plan_then_the_run_seals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from g2d.flows.lineage import lineage

    monkeypatch.setenv("G2D_STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "sys"
    root.mkdir()
    site = open_site(f"dir://{root}")
    site.writer().run("create", create_op(site.backend, None, Origin(), datetime.now(UTC)))
    before = render_tree(site.load())

    dry = lineage("seal", f"dir://{root}/g1", dry_run=True, return_state=True)
    assert dry.is_completed(), dry.message
    plan = artifacts_of(dry)[f"markdown:{artifact_key('plan', 'local', str(root))}"]
    lines = plan.splitlines()
    assert lines[0] == f"## Plan: `g2d lineage seal dir://{root}/g1`"
    assert lines[3] == f"plan: seal dir://{root}/g1 [part 1 of 2]"
    snap = re.search(r"@(g1-[0-9]{8}T[0-9]{6}Z)", plan)[1]  # type: ignore[index]
    assert lines[-3:] == [
        f"  then: hold {root}/g1@{snap} with g2d-sealed; mark g1 sealed "
        "(planned once the steps above have run)",
        "dry run: nothing changed",
        "```",
    ]
    assert render_tree(site.load()) == before

    sealed = lineage("seal", f"dir://{root}/g1", return_state=True)
    assert sealed.is_completed(), sealed.message
    gen = site.load().generation("g1")
    assert gen.state is not None and gen.state.value == "sealed"
    tree = artifacts_of(sealed)[f"markdown:{lineage_key('local', str(root))}"]
    assert tree == f"## Lineage {root} on local\n\n```\n{render_tree(site.load())}```\n"
    assert f"    └── @{gen.sealed[0].name}  sealed {gen.sealed[0].name[3:]}  <- @safe" in (
        tree.splitlines()
    )
