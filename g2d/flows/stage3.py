"""``stage3``: the latest stage3 of one arch and variant into the dom0's ``releases/``.

The same fetch and mirror choice as esync's releases part (signed latest file, signed
``.DIGESTS``, ``.asc`` checked while the tarball arrives; ``keep`` builds of the variant
kept, ``current-stage3-<arch>-<variant>`` pointing at the newest), for a variant the
settings do not list. Artifact ``stage3-<arch>-<variant>``: what was fetched and verified.
Deployed as ``stage3/weekly``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.core.release_files import check_arch_variant
from g2d.settings import load_settings
from g2d.sources.esync_parts import EsyncSetup
from g2d.tasks.artifacts import artifact_key, publish_table
from g2d.tasks.esync import sync_stage3_task

COLUMNS = ("part", "mirror", "bytes", "files", "seconds", "verification")


@flow(name="stage3", flow_run_name="stage3 {arch} {variant}")
def stage3(arch: str = "amd64", variant: str = "openrc", keep: int | None = None) -> dict[str, Any]:
    """Fetch and verify the latest stage3 of ``arch``/``variant``; keep ``keep`` builds of
    it (default: the esync setting)."""
    check_arch_variant(arch, variant)
    setup = EsyncSetup.from_settings(load_settings())
    outcome = sync_stage3_task(setup, arch, variant, keep or setup.keep)
    publish_table(artifact_key("stage3", arch, variant), [outcome.row()], title="stage3",
                  columns=COLUMNS, description=f"stage3 {arch} {variant}")  # fmt: skip
    return outcome.row()
