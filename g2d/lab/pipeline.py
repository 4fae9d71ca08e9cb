"""``g2d lab demo``: the whole pipeline on the lab, every step a flow run on the lab's Prefect.

With the lab up (started here when it is not): esync every part into the demo's own dom0,
stage3 openrc, the deploy inputs esync does not bring (``demo_site``), a fresh btrfs lineage
home on a loop device, deploy ``g1`` (sealed), branch ``g2`` from ``g1@safe``, flip a USE
flag of the site and update ``g2`` (sealed), install ``g2`` with its lineage (``g1`` the
fallback entry) onto a sparse disk image, boot that image in qemu to the stage3's marker,
and print the lineage tree and the flow runs to look at in the Prefect UI.

Settings for the whole run: ``G2D_CONFIG`` = the lab's g2d.toml (its mirrors and release
key), ``G2D_DOM0_ROOT`` and ``G2D_STATE_DIR`` under the demo directory, ``PREFECT_API_URL``
= the lab's server. Every step prints one line with its time; the full log (Prefect's and
g2d's) goes to ``<demo>/demo.log``. Whatever happens, nothing stays mounted or looped: the
lineage home and the disk's loop device go on every path. The lab stays up for the UI.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g2d.core.errors import G2dUserError
from g2d.lab.demo_disks import release_under
from g2d.lab.layout import LabLayout
from g2d.lab.process import run
from g2d.lab.services import LabState, Service, lab_up, prefect_healthy, read_state

HOME_MIB = 2048  # the btrfs lineage home (sparse): g1, and g2 sharing its extents
DISK_MIB = 4096  # the install's disk image (sparse)
BOOT_TIMEOUT = 300.0  # TCG on a busy 2-core box; a UEFI boot takes 11-35 s here
STEPS = 11
Echo = Callable[[str], None]


class DemoFailed(G2dUserError):
    """A step of the demo failed; names the step, and the flow run to read."""


@dataclass(frozen=True)
class DemoPaths:
    """The demo's own data, under one directory (default: beside the lab, ``../demo``)."""

    root: Path

    @classmethod
    def beside(cls, layout: LabLayout) -> DemoPaths:
        return cls(layout.root.parent / "demo")

    dom0 = property(lambda self: self.root / "dom0")
    state = property(lambda self: self.root / "state")
    home = property(lambda self: self.root / "home")
    disk = property(lambda self: self.root / "disk.img")
    qemu = property(lambda self: self.root / "qemu")
    log = property(lambda self: self.root / "demo.log")


@dataclass
class DemoReport:
    timings: list[tuple[str, float]] = field(default_factory=list)
    flow_runs: list[tuple[str, str]] = field(default_factory=list)  # (step, flow run id)
    ui: str = ""
    lab_started: bool = False
    tree: str = ""
    marker: str = ""
    seconds: float = 0.0


@dataclass
class Steps:
    echo: Echo
    report: DemoReport
    index: int = 0

    def run(self, title: str, work: Callable[[], tuple[Any, str]]) -> Any:
        """One step: its line (what it did, how long), or FAILED and the error goes up."""
        self.index += 1
        head = f"[{self.index}/{STEPS}] {title}"
        started = time.monotonic()
        try:
            value, summary = work()
        except BaseException:
            self.echo(f"{head}: FAILED after {time.monotonic() - started:.1f} s")
            raise
        seconds = time.monotonic() - started
        self.report.timings.append((title, seconds))
        first, _, more = summary.partition("\n")  # the time ends the step's own line
        self.echo(f"{head}: {first} ({seconds:.1f} s)" + (f"\n{more}" if more else ""))
        return value

    def flow(self, title: str, fn: Any, **params: Any) -> Any:
        """Run flow ``fn``; its result, or DemoFailed naming the run in the UI."""
        state = fn(**params, return_state=True)
        run_id = str(state.state_details.flow_run_id)
        self.report.flow_runs.append((title, run_id))
        if state.is_completed():
            return state.result()
        try:
            state.result()
            why = state.message or str(state.type)
        except BaseException as e:  # the flow's own error, as it raised it
            why = str(e)
        raise DemoFailed(
            f"{title}: flow run {fn.name} ended {state.type.value}: {why}",
            hint=f"its logs and artifacts: {self.report.ui}runs/flow-run/{run_id}",
        )


def ensure_lab(layout: LabLayout, echo: Echo) -> tuple[LabState, bool]:
    """The running lab, started here when it is not up; (state, started here)."""
    state = read_state(layout)
    prefect = state.get(Service.prefect) if state else None
    if (
        state
        and prefect
        and all(s.alive() for s in state.services)
        and prefect_healthy(prefect.port)
    ):
        return state, False
    return lab_up(layout, progress=echo), True


@contextmanager
def demo_environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ (g2d's settings read it at each load) and in Prefect's
    settings (read when Prefect is imported, which may have happened already)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: values["PREFECT_API_URL"]}):
            yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@contextmanager
def logs_to_file(path: Path) -> Iterator[None]:
    """Prefect's and g2d's INFO lines into ``path``; the terminal keeps warnings and errors
    (the step lines say what happens; the run logs are in the UI)."""
    import g2d.tasks  # noqa: F401  (Prefect's logging set up, g2d's logs sent to the runs)

    root, g2d_log = logging.getLogger(), logging.getLogger("g2d")
    handlers = [*root.handlers, *g2d_log.handlers]
    streams = [h for h in handlers if isinstance(h, logging.StreamHandler)]
    consoles = [h for h in streams if not isinstance(h, logging.FileHandler)]
    saved = [(h, h.level) for h in consoles]
    level = g2d_log.level
    to_file = logging.FileHandler(path, mode="w")  # this run's log
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        for h in consoles:
            h.setLevel(max(h.level, logging.WARNING))
        g2d_log.setLevel(min(level or logging.INFO, logging.INFO))
        root.addHandler(to_file)
        yield
    finally:
        root.removeHandler(to_file)
        to_file.close()
        g2d_log.setLevel(level)
        for h, lv in saved:
            h.setLevel(lv)


def run_demo(layout: LabLayout, paths: DemoPaths, *, echo: Echo = print,
             boot_timeout: float = BOOT_TIMEOUT) -> DemoReport:  # fmt: skip
    """The whole pipeline; raises DemoFailed (or the step's own error) at the first failure,
    after releasing every mount and loop device of the demo."""
    report = DemoReport()
    steps = Steps(echo, report)
    started = time.monotonic()
    for part in (paths.root, paths.dom0, paths.state):
        part.mkdir(parents=True, exist_ok=True)
    state, report.lab_started = steps.run("lab", lambda: _lab(layout, echo))
    prefect = state.get(Service.prefect)
    report.ui = prefect.url if prefect else ""
    from g2d.lab.esync_config import write_lab_config

    with ExitStack() as undo:
        undo.callback(release_under, paths.root)  # last: whatever a failed step left
        # python-gnupg starts an agent for the lab's keyring (g2d.toml, the binpkg key)
        undo.callback(run, ["gpgconf", "--homedir", layout.gnupg, "--kill", "gpg-agent"],
                      check=False)  # fmt: skip
        env = {
            "G2D_CONFIG": os.fspath(write_lab_config(layout, state)),
            "G2D_DOM0_ROOT": os.fspath(paths.dom0),
            "G2D_STATE_DIR": os.fspath(paths.state),
            "G2D_LAB_DIR": os.fspath(layout.root),
            "PREFECT_API_URL": state.prefect_api_url or "",
        }
        undo.enter_context(demo_environment(env))
        undo.enter_context(logs_to_file(paths.log))
        from g2d.lab import demo_steps as do

        do.pipeline(steps, layout, state, paths, undo, boot_timeout)
    report.seconds = time.monotonic() - started
    return report


def _lab(layout: LabLayout, echo: Echo) -> tuple[tuple[LabState, bool], str]:
    state, started = ensure_lab(layout, echo)
    prefect = state.get(Service.prefect)
    where = f"Prefect {prefect.url}" if prefect else "no Prefect server"
    return (state, started), f"{'started' if started else 'up already'}: " \
        f"{', '.join(str(s.name) for s in state.services)}; {where}"  # fmt: skip


def fresh(*leftovers: Path) -> None:
    """Delete what an earlier run left (the caller released its mounts first)."""
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
