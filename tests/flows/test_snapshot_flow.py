"""The snapshot flow on a real zfs-fuse pool and a real btrfs file system, read back from
the Prefect API: the run's state, the lineage artifact, and what retention did to the pool."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from g2d.core.lineage import Origin
from g2d.core.lineage_tree import render_tree
from g2d.hosts.local import LocalHost
from g2d.storage.lineage import branch_op, create_op, seal_op
from g2d.storage.lineage_requests import snapshot_op
from g2d.storage.lineage_site import LineageSite, open_site
from g2d.tasks.artifacts import artifact_key, lineage_key

SCHEME = {"zfs": "zfs://", "btrfs": "btrfs://"}


def artifacts_of(flow_run_id: uuid.UUID) -> dict[str, str]:
    """type:key -> data of the artifacts a flow run made."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {f"{a.type}:{a.key}": a.data for a in found}  # type: ignore[misc]


@dataclass
class Lab:
    uri: str  # the lineage root as a target
    root: str
    state_dir: Path

    def site(self) -> LineageSite:
        return open_site(self.uri, state_dir=self.state_dir)

    def snapshots(self) -> list[str]:
        return [str(s.ref) for s in self.site().load().snapshots]


def build_lineage(lab: Lab) -> dict[str, str]:
    """g1 sealed three times, g2 branched from g1's first seal, g2 sealed, one unsealed
    snapshot of g2. Returns the snapshot names by role."""
    site = lab.site()
    writer = site.writer()
    backend = site.backend
    writer.run("create", create_op(backend, None, Origin(stage3="s3"), datetime.now(UTC)))
    g1 = f"{lab.root}/g1"
    for _ in range(3):
        writer.run(f"seal {g1}", seal_op(backend, g1, datetime.now(UTC)))
    seals = [s.name for s in writer.load().generation("g1").sealed]
    writer.run("branch", branch_op(backend, f"{g1}@{seals[0]}", None, Origin(), datetime.now(UTC)))
    g2 = f"{lab.root}/g2"
    writer.run(f"seal {g2}", seal_op(backend, g2, datetime.now(UTC)))
    writer.run("snap", snapshot_op(backend, g2, datetime.now(UTC)))
    gen2 = writer.load().generation("g2")
    unsealed = [s.name for s in gen2.snapshots if not s.sealed]
    return {"g1-first": seals[0], "g1-middle": seals[1], "g1-last": seals[2],
            "g2-seal": gen2.sealed[0].name, "g2-old": unsealed[0]}  # fmt: skip


@pytest.fixture(params=["zfs", "btrfs"])
def lab(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Lab]:  # fmt: skip
    state_dir = tmp_path / "state"
    monkeypatch.setenv("G2D_STATE_DIR", str(state_dir))  # the flow's open_site reads it
    if request.param == "zfs":
        pool = request.getfixturevalue("zfs_pool")
        root = f"{pool.name}/sys"
        LocalHost().run(["zfs", "create", root])
    else:
        root = f"{request.getfixturevalue('btrfs_mount').mountpoint}/sys"
        Path(root).mkdir()
    yield Lab(SCHEME[request.param] + root, root, state_dir)


def _without_sizes(text: str) -> str:
    """Sizes differ between backends and runs; the structure must not."""
    return re.sub(r"  (?:[0-9]+ B|[0-9]+\.[0-9] [KMGTP]iB|\?)(?=  |$)", "", text, flags=re.M)


def test_snapshot_flow_snapshots_prunes_and_publishes_the_tree(lab: Lab) -> None:
    from g2d.flows.snapshot import snapshot

    names = build_lineage(lab)
    state = snapshot(lab.uri, keep_sealed=1, keep_unsealed=1, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    g1, g2 = f"{lab.root}/g1", f"{lab.root}/g2"
    new1, new2 = (r.rpartition("@")[2] for r in result["taken"])
    assert result["taken"] == [f"{g1}@{new1}", f"{g2}@{new2}"]
    # retention: g1's middle seal and g2's older unsealed snapshot went; g1's first seal
    # stays (g2 was branched from it), so do the newest sealed and unsealed of each
    assert result["destroyed"] == [f"{g1}@{names['g1-middle']}", f"{g2}@{names['g2-old']}"]
    assert sorted(lab.snapshots()) == sorted([
        f"{g1}@{names['g1-first']}", f"{g1}@{names['g1-last']}", f"{g1}@{new1}",
        f"{g2}@{names['g2-seal']}", f"{g2}@{new2}",
    ])  # fmt: skip

    artifacts = artifacts_of(state.state_details.flow_run_id)
    assert artifacts[f"progress:{artifact_key('snapshot', 'local', lab.root)}"] == 100
    markdown = artifacts[f"markdown:{lineage_key('local', lab.root)}"]
    tree = render_tree(lab.site().load())
    assert markdown.startswith(f"## Lineage {lab.root} on local\n\n```\n{tree}```\n")

    def stamp(name: str) -> str:
        return name.split("-")[1]

    first, last, g2seal = names["g1-first"], names["g1-last"], names["g2-seal"]
    assert _without_sizes(tree) == dedent(f"""\
        {lab.root}
        └── g1  sealed  stage3=s3
            ├── @{first}  sealed {stamp(first)}
            │   └── g2  sealed  stage3=s3
            │       ├── @{g2seal}  sealed {stamp(g2seal)}  <- @safe
            │       └── @{new2}
            ├── @{last}  sealed {stamp(last)}  <- @safe
            └── @{new1}
    """)
    assert (
        f"| {g1}@{names['g1-middle']} | destroy | sealed, older than the newest 1 of "
        "generation g1 |" in markdown.splitlines()
    )
    assert f"| {g1}@{first} | keep | origin of {g2} |" in markdown.splitlines()
