"""`g2d lab build`: run the lab's build steps in order, each only when it must.

A step is skipped when its stamp (``.g2d-step-<name>.json`` in the lab) holds the step's
current input key and every file it recorded is still there, unchanged in size and mtime.
The key hashes the builder module's source, the step's adapter and parameters, and the
output digests of the steps it depends on; so a change reaches exactly the step it touches
and the steps downstream of it. Outputs are built in a temporary sibling and renamed into
place, so an interrupted build never leaves a half-written tree behind a valid stamp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import importlib.util
import inspect
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g2d.core.errors import G2dError, G2dUserError
from g2d.lab.layout import LabLayout
from g2d.lab.process import run
from g2d.lab.stamps import (
    STAMP_VERSION,
    BuilderMissing,
    builder_sources,
    describe,
    json_bytes,
    load_info,
    manifest_problems,
    read_stamp,
    renamed,
    save_info,
    scan,
    sha256,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepContext:
    """What a step's adapter gets: where to write, its parameters, its inputs' infos."""

    layout: LabLayout
    params: Mapping[str, Any]
    inputs: Mapping[str, Any]  # dependency name -> the info its builder returned
    _paths: Mapping[str, Path] = field(default_factory=dict, repr=False)

    def out(self, relative: str) -> Path:
        """Where to write the output declared as `relative` (a temporary twin if atomic)."""
        return self._paths[relative]


@dataclass(frozen=True)
class Step:
    """One builder in the table: what it reads, what it writes, how to call it."""

    name: str
    module: str  # the builder module; its source is part of the key
    run: Callable[[StepContext], Any]  # calls the builder; returns its info (picklable)
    outputs: tuple[str, ...]  # paths relative to the lab root that this step owns
    deps: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    atomic: bool = True  # build outputs in temporary siblings, rename on success
    watch: tuple[str, ...] = ()  # what the stamp records, if not all of `outputs`

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError(f"step {self.name!r} declares no outputs")
        for rel in (*self.outputs, *self.watch):
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"step {self.name!r}: {rel!r} is not inside the lab")

    @property
    def recorded(self) -> tuple[str, ...]:
        return self.watch or self.outputs

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


class StepStatus(enum.StrEnum):
    built = enum.auto()
    cached = enum.auto()


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    seconds: float
    reason: str  # why it was built, or why it could be skipped

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": str(self.status)}


@dataclass(frozen=True)
class BuildReport:
    steps: tuple[StepResult, ...]
    seconds: float

    def names(self, status: StepStatus) -> list[str]:
        return [s.name for s in self.steps if s.status is status]

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "steps": [s.to_json() for s in self.steps]}

    def format_table(self) -> str:
        width = max([len("STEP"), *(len(s.name) for s in self.steps)])
        lines = [f"{'STEP':<{width}}  STATUS  SECONDS  WHY"]
        for s in self.steps:
            lines.append(f"{s.name:<{width}}  {s.status:<6}  {s.seconds:7.1f}  {s.reason}")
        built = len(self.names(StepStatus.built))
        lines.append(f"{len(self.steps)} steps, {built} built, in {self.seconds:.1f} s")
        return "\n".join(lines) + "\n"


class LabBusy(G2dUserError):
    """Another `g2d lab build` holds the lab's build lock."""


# ------------------------------------------------------------------------------ the key


def step_key(step: Step, dep_digests: Mapping[str, str]) -> str:
    """The hash of everything that decides what `step` writes."""
    try:
        sources = builder_sources(step.module)
    except BuilderMissing as e:
        raise BuilderMissing(f"lab step {step.name!r}: {e}") from None
    adapter = inspect.getsource(step.run).encode()
    return sha256(
        json_bytes(
            {
                "version": STAMP_VERSION,
                "step": step.name,
                "builder": sources,
                "adapter": sha256(adapter),
                "params": step.params,
                "deps": dict(dep_digests),
            }
        )
    )


# ------------------------------------------------------------------------------- running


def why_build(step: Step, layout: LabLayout, key: str, force: bool) -> str | None:
    """Why `step` must run now, or None when its stamp and outputs are current."""
    if force:
        return "forced"
    stamp = read_stamp(layout, step.name)
    if stamp is None:
        return "never built"
    if stamp.get("key") != key:
        return "inputs changed"
    for rel, problem in manifest_problems(layout.root, stamp.get("outputs", {})):
        return f"{rel} {problem}"
    try:
        load_info(layout, step.name)
    except Exception:  # a class renamed or moved since: the cheap fix is to build again
        return "its recorded result cannot be read back"
    return None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.g2d-partial")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def run_step(step: Step, layout: LabLayout, key: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Build `step` now; write its stamp and its info, and return the stamp."""
    layout.stamp(step.name).unlink(missing_ok=True)  # a half-built output is never current
    finals = {rel: layout.root / rel for rel in step.outputs}
    paths = {rel: _temporary(p) if step.atomic else p for rel, p in finals.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        if step.atomic:
            _remove(path)  # left over from an interrupted build
    ctx = StepContext(layout, step.params, inputs, paths)
    started = time.monotonic()
    try:
        info = step.run(ctx)
        for rel, final in finals.items():
            if step.atomic:
                if not paths[rel].exists():
                    raise G2dError(f"lab step {step.name!r} did not write {rel}")
                _remove(final)
                os.replace(paths[rel], final)
    finally:
        for rel in step.outputs:
            if step.atomic:
                _remove(paths[rel])
    seconds = time.monotonic() - started
    if step.atomic:
        info = renamed(info, {paths[r]: finals[r] for r in step.outputs})
    save_info(layout, step.name, info)
    info_json = describe(info)
    outputs = scan(layout.root, step.recorded)
    stamp = {
        "version": STAMP_VERSION,
        "step": step.name,
        "key": key,
        "digest": sha256(json_bytes({"info": info_json, "outputs": outputs})),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 3),
        "info": info_json,
        "outputs": outputs,
    }
    write_json(layout.stamp(step.name), stamp)
    return stamp


def closure(steps: Sequence[Step], wanted: Collection[str] | None) -> list[Step]:
    """The steps in table order, limited to `wanted` and everything they depend on."""
    by_name = {s.name: s for s in steps}
    for s in steps:
        for dep in s.deps:
            if dep not in by_name or steps.index(by_name[dep]) > steps.index(s):
                raise ValueError(f"step {s.name!r} depends on {dep!r}, which is not before it")
    if wanted is None:
        return list(steps)
    unknown = sorted(set(wanted) - set(by_name))
    if unknown:
        raise G2dUserError(
            f"no lab step named {', '.join(unknown)}", hint=f"steps: {', '.join(by_name)}"
        )
    keep: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(by_name[name].deps)
    return [s for s in steps if s.name in keep]


@contextlib.contextmanager
def build_lock(layout: LabLayout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".g2d-build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabBusy(
                f"another g2d lab build is running in {os.fspath(layout.root)}",
                hint="wait for it to finish",
            ) from None
        yield


def stop_gpg_agent(gnupghome: Path) -> None:
    """python-gnupg starts an agent per GNUPGHOME; leave nothing running."""
    if gnupghome.is_dir():
        with contextlib.suppress(G2dError):
            run(["gpgconf", "--homedir", gnupghome, "--kill", "gpg-agent"], timeout=30)


def build_lab(
    layout: LabLayout,
    *,
    force: bool = False,
    steps: Sequence[Step] | None = None,
    only: Collection[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build the lab (or the steps in `only`, with what they need); skip what is current."""
    from g2d.lab.steps import LAB_STEPS  # the table imports every builder's adapter

    table = closure(steps if steps is not None else LAB_STEPS, only)
    missing = [s for s in table if not s.available()]
    if missing:
        names = ", ".join(f"{s.name} ({s.module})" for s in missing)
        raise BuilderMissing(f"lab steps without their builder: {names}")
    say = progress or (lambda line: log.info("%s", line))
    results: list[StepResult] = []
    digests: dict[str, str] = {}
    infos: dict[str, Any] = {}
    started = time.monotonic()
    with build_lock(layout):
        layout.create()
        try:
            for step in table:
                key = step_key(step, {d: digests[d] for d in step.deps})
                inputs = {d: infos[d] for d in step.deps}
                reason = why_build(step, layout, key, force)
                t0 = time.monotonic()
                if reason is None:
                    stamp = read_stamp(layout, step.name)
                    assert stamp is not None  # why_build found it current
                    status, reason = StepStatus.cached, "inputs and outputs unchanged"
                else:
                    say(f"{step.name}: building ({reason})")
                    try:
                        stamp = run_step(step, layout, key, inputs)
                    except BaseException:
                        say(f"{step.name}: failed after {time.monotonic() - t0:.1f} s")
                        raise
                    status = StepStatus.built
                seconds = time.monotonic() - t0
                if status is StepStatus.built:
                    say(f"{step.name}: built in {seconds:.1f} s")
                digests[step.name] = stamp["digest"]
                infos[step.name] = load_info(layout, step.name)
                results.append(StepResult(step.name, status, round(seconds, 3), reason))
        finally:
            stop_gpg_agent(layout.gnupg)
    return BuildReport(tuple(results), round(time.monotonic() - started, 3))
