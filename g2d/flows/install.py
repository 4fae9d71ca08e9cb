"""``install``: a sealed generation onto a new disk (or pool), after a person approved the plan.

Plan first (the disk inspected, the source resolved, the boot entries computed; nothing
written) and publish it as a markdown artifact; then, unless the run was started with
``approve=True``, pause for approval with a typed input (``InstallApproval``: the UI's
Resume form, or ``resume_flow_run(id, run_input={"approve": True})``). Rejected, or not
answered within ``approval_timeout`` seconds: the run ends Cancelled and nothing was
written. Approved: both sides of the install run (``g2d.install.request``), the ``g2d:*``
records go onto the installed volume and the source, and the disk as written (partitions,
file systems, ESP entries) is the second artifact. Deployed as ``install/saturn``.

A remote source (``zfs://user@host:PORT:/pool/set@safe``) is pulled over ssh with its host
key pinned from ``$G2D_SSH_KNOWN_HOSTS`` (client key ``$G2D_SSH_IDENTITY``). The kernel comes
from the dom0's kernels repository (``<dom0_root>/kernels/current/<version>``).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, State

import g2d.tasks  # noqa: F401  (g2d's own logs reach the run log)
from g2d.hosts.base import Host
from g2d.hosts.open import host_for
from g2d.install.request import (
    InstallOutcome,
    InstallRequest,
    PreparedInstall,
    apply_install,
    prepare_install,
)
from g2d.settings import load_settings
from g2d.tasks.artifacts import artifact_key, markdown_table
from g2d.tasks.retry import transient_retries

APPROVAL_POLL = 2  # seconds between looks at the paused run (Prefect's default is 10)


class InstallApproval(RunInput):
    """The answer to the paused install: ``approve`` it or not."""

    approve: bool = False


def install_key(prepared: PreparedInstall) -> str:
    boot = prepared.plan.boot
    return artifact_key("install", boot.device or str(boot.pool))


def plan_markdown(prepared: PreparedInstall) -> str:
    plan = prepared.plan
    rows: list[dict[str, object]] = [{"part": p.name, "steps": len(p.plan.steps),
                                      "done earlier": "yes" if p.name in plan.resumed else ""}
                                     for p in plan.parts]  # fmt: skip
    disk = ""
    if plan.disk is not None:
        disk = (f"Disk `{plan.disk.device}`: {plan.disk.size >> 20} MiB, the install needs "
                f"{-(-plan.needed >> 20)} MiB; found on it: "
                f"{', '.join(plan.disk.signatures) or 'nothing'}\n\n")  # fmt: skip
    data = [step for part in plan.parts if part.name == "data" for step in part.plan.steps]
    sent = "\n".join(f"- {step.why}" for step in data)
    return (
        f"## Plan: install `{plan.source}` onto `{plan.boot.argument}`\n\n{disk}"
        f"### What is sent\n\n{sent or '- nothing'}\n\n"
        f"### Boot entries (kernel {prepared.boot.version})\n\n"
        + markdown_table(prepared.entries(), ("entry", "role", "generation", "options"))
        + "\n### Parts\n\n"
        + markdown_table(rows)
        + f"\n### Every command\n\n```\n{prepared.render()}\n```\n"
    )


def layout_markdown(prepared: PreparedInstall, outcome: InstallOutcome) -> str:
    facts = outcome.facts
    boot = outcome.boot
    return (
        f"## Installed `{prepared.plan.source}` onto `{prepared.plan.boot.argument}`\n\n"
        + markdown_table(outcome.layout)
        + f"\nRoot: `{' '.join(facts.kernel_root_args())}`; default entry "
        f"`{boot.default}`, fallback `{boot.fallback or '-'}`; kernel {boot.kernel} "
        f"(initramfs {boot.initramfs})\n\n"
        f"ESP entries: {', '.join(f'`{e}`' for e in outcome.esp_files) or 'none'}\n"
        + "".join(f"\n- warning: {w}" for w in boot.warnings)
    )


@task(cache_policy=NO_CACHE, task_run_name="plan {request.work} onto {request.boot}",
      **transient_retries(retries=2, backoff=2.0))  # fmt: skip
def plan_task(request: InstallRequest, source_host: Host) -> PreparedInstall:
    settings = load_settings()
    return prepare_install(request, source_host=source_host,
                           kernels=settings.dom0_root / "kernels",
                           state_dir=settings.state_dir)  # fmt: skip


@task(cache_policy=NO_CACHE, task_run_name="install onto {prepared.request.boot}")
def apply_task(prepared: PreparedInstall) -> InstallOutcome:
    """No retries: the install's journal lets a new run finish what this one left."""
    return apply_install(prepared, yes=True)


@flow(name="install", flow_run_name="install {work} onto {boot}")
def install(
    work: str,
    boot: str,
    force: bool = False,
    hostname: str = "gentoo",
    lineage: bool = False,
    runtime: bool = False,
    approve: bool = False,
    kernel: str | None = None,
    esp_mib: int = 512,
    esp: str | None = None,
    approval_timeout: int = 3600,
) -> dict[str, Any] | State[Any]:
    """Install ``work`` (a sealed snapshot) onto ``boot``; pauses for approval unless
    ``approve``. ``lineage``: the whole lineage, clones as clones (zfs, btrfs);
    ``runtime``: a writable clone of the installed generation boots by default; ``esp``:
    into an existing pool, the machine's ESP that gets the entries."""
    log = get_run_logger()
    request = InstallRequest(work, boot, force=force, hostname=hostname, lineage=lineage,
                             runtime=runtime, kernel=kernel, esp_mib=esp_mib,
                             esp=esp)  # fmt: skip
    with ExitStack() as undo:
        source_host = host_for(request.target.host)
        if hasattr(source_host, "close"):
            undo.callback(source_host.close)
        prepared = plan_task(request, source_host)
        key = install_key(prepared)
        create_markdown_artifact(plan_markdown(prepared), key=f"{key}-plan",
                                 description=f"plan: install {work} onto {boot}")  # fmt: skip
        if not approve:
            question = InstallApproval.with_initial_data(
                description=f"Install **{prepared.plan.source}** onto **{boot}**? Everything "
                "on the disk is destroyed; the plan is the artifact "
                f"`{key}-plan`.", approve=False)  # fmt: skip
            try:
                answer = pause_flow_run(wait_for_input=question, timeout=approval_timeout,
                                        poll_interval=APPROVAL_POLL)  # fmt: skip
            except FlowPauseTimeout:
                answer = InstallApproval(approve=False)
            if not answer.approve:
                log.info("install onto %s was not approved; nothing was written", boot)
                return Cancelled(message=f"not approved: nothing was written to {boot}")
        outcome = apply_task(prepared)
        create_markdown_artifact(layout_markdown(prepared, outcome), key=f"{key}-layout",
                                 description=f"installed {work} onto {boot}")  # fmt: skip
        return outcome.to_json()
