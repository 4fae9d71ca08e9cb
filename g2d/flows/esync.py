"""``esync``: bring the dom0 tree up to date from its mirrors, every part verified.

Each part (releases, repos, snapshots, distfiles, binpkgs, kernels, packages, patchfiles,
profiles, meta; by default every part with a mirror configured) is one task run, called in
the flow's own thread (rsync and gpg are subprocesses, see docs/prefect.md). A failed part
does not stop the others; the flow fails at the end naming each failed part and why.
Artifacts: ``esync-<host>`` progress while it runs, then the summary table under the same
key (per part: mirror used, bytes, files, duration, what was verified). ``dry_run``
publishes and returns what would be fetched from where, and changes nothing. Deployed as
``esync/nightly``.
"""

from __future__ import annotations

import socket
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.settings import load_settings
from g2d.sources.esync import plan_esync, run_esync, select_parts
from g2d.sources.esync_parts import EsyncSetup, Part, PartOutcome
from g2d.tasks.artifacts import Progress, artifact_key, publish_table
from g2d.tasks.esync import sync_part_task

COLUMNS = ("part", "result", "mirror", "bytes", "files", "seconds", "verification", "error")


def esync_key() -> str:
    return artifact_key("esync", socket.gethostname())


def _run_name() -> str:
    asked = flow_run.parameters.get("parts")
    dry = " (dry run)" if flow_run.parameters.get("dry_run") else ""
    return f"esync {','.join(asked) if asked else 'all'}{dry}"


@flow(name="esync", flow_run_name=_run_name)
def esync(parts: list[str] | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Sync ``parts`` of the dom0 tree (default: every part with a mirror configured)."""
    setup = EsyncSetup.from_settings(load_settings())
    chosen = select_parts(setup, parts)
    if dry_run:
        plan = plan_esync(setup, chosen)
        publish_table(esync_key(), [p.row() for p in plan], title="esync plan (dry run)",
                      description="what esync would fetch, and from where")  # fmt: skip
        return {"dry_run": True, "plan": [p.row() for p in plan]}
    progress = Progress.start(
        max(1, len(chosen)),
        key=artifact_key("esync-progress", socket.gethostname()),
        description="esync",
    )

    def sync(setup: EsyncSetup, part: Part) -> PartOutcome:
        try:
            return sync_part_task(setup, part)
        finally:
            progress.advance(description=f"esync: {part} done")

    report = run_esync(setup, chosen, sync=sync)
    publish_table(esync_key(), [o.row() for o in report.outcomes], title="esync",
                  columns=COLUMNS, description=f"esync of {', '.join(chosen)}")  # fmt: skip
    report.raise_if_failed()
    return {"dry_run": False, "parts": [o.row() for o in report.outcomes]}
