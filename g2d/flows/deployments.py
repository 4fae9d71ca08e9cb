"""g2d's deployments: read from ``deployments/prefect.yaml`` and served by ``g2d serve``.

The yaml is the one table of deployments (Prefect's prefect.yaml format, the subset in
``_KEYS``); this module turns each entry into a ``RunnerDeployment`` of the flow its
entrypoint names and serves them all from one process (``prefect.serve``): each flow run
starts as a child process of ``g2d serve``, on schedule or on ``prefect deployment run``.
The entrypoint is recorded as a module path (``g2d.flows.snapshot.snapshot``), so runs
import the installed package whatever the working directory.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, RRule, Schedule
from prefect.types.entrypoint import EntrypointType

from g2d.core.errors import G2dUserError

DEPLOYMENTS_ENV = "G2D_DEPLOYMENTS"
CHECKOUT_FILE = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"
_TOP_KEYS = {"name", "prefect-version", "definitions", "deployments", "build", "push", "pull"}
_KEYS = {"name", "entrypoint", "description", "tags", "parameters", "schedules",
         "concurrency_limit", "version"}  # fmt: skip
_SCHEDULE_KEYS = {"cron", "interval", "rrule", "timezone", "active", "parameters", "slug"}
_ENTRYPOINT = re.compile(r"(g2d/flows/[a-z_][a-z0-9_]*)\.py:([A-Za-z_][A-Za-z0-9_]*)")
_ENV = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class BadDeployments(G2dUserError):
    """The deployments file is missing, or an entry in it is wrong."""


def deployments_file(env: Mapping[str, str] | None = None) -> Path:
    """$G2D_DEPLOYMENTS, else the checkout's deployments/prefect.yaml."""
    named = (os.environ if env is None else env).get(DEPLOYMENTS_ENV)
    return Path(named) if named else CHECKOUT_FILE


@dataclass(frozen=True)
class DeploymentEntry:
    """One entry of the yaml, with ``{{ $NAME }}`` values taken from the environment."""

    name: str
    entrypoint: str
    flow: Flow[..., Any]
    description: str | None
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    schedules: tuple[Schedule, ...]
    concurrency_limit: int | None
    version: str | None
    unset: tuple[str, ...]  # environment variables the entry names that are not set

    @property
    def full_name(self) -> str:
        """``<flow name>/<deployment name>``, as ``prefect deployment run`` takes it."""
        return f"{self.flow.name}/{self.name}"

    def to_runner(self) -> RunnerDeployment:
        return self.flow.to_deployment(
            self.name, schedules=list(self.schedules), parameters=self.parameters,
            description=self.description, tags=list(self.tags), version=self.version,
            concurrency_limit=self.concurrency_limit, entrypoint_type=EntrypointType.MODULE_PATH,
        )  # fmt: skip


def _refuse(where: str, what: str) -> BadDeployments:
    return BadDeployments(f"{where}: {what}", hint="see the comment at the top of the file")


def _fill(value: Any, env: Mapping[str, str], unset: list[str]) -> Any:
    """``value`` with "{{ $NAME }}" strings replaced; None where NAME is unset."""
    if isinstance(value, str):
        found = _ENV.fullmatch(value.strip())
        if found is None:
            return value
        if found[1] not in env:
            unset.append(found[1])
            return None
        return env[found[1]]
    if isinstance(value, dict):
        filled = {k: _fill(v, env, unset) for k, v in value.items()}
        return {k: v for k, v in filled.items() if v is not None or value[k] is None}
    if isinstance(value, list):
        return [_fill(v, env, unset) for v in value]
    return value


def load_flow(entrypoint: str, where: str) -> Flow[..., Any]:
    found = _ENTRYPOINT.fullmatch(entrypoint)
    if found is None:
        raise _refuse(where, f"entrypoint {entrypoint!r} is not g2d/flows/<file>.py:<flow>")
    module = importlib.import_module(found[1].replace("/", "."))
    flow = getattr(module, found[2], None)
    if not isinstance(flow, Flow):
        raise _refuse(where, f"{entrypoint!r} names no flow")
    return flow


def _schedule(raw: Any, where: str, active: bool, env: Mapping[str, str],
              unset: list[str]) -> Schedule:  # fmt: skip
    if not isinstance(raw, dict) or set(raw) - _SCHEDULE_KEYS:
        raise _refuse(where, f"a schedule takes {', '.join(sorted(_SCHEDULE_KEYS))}: {raw!r}")
    kinds = [k for k in ("cron", "interval", "rrule") if k in raw]
    if len(kinds) != 1:
        raise _refuse(where, f"a schedule needs exactly one of cron, interval, rrule: {raw!r}")
    common = {"timezone": raw.get("timezone"), "active": active and raw.get("active", True),
              "parameters": _fill(raw.get("parameters") or {}, env, unset),
              "slug": raw.get("slug")}  # fmt: skip
    if "cron" in raw:
        return Cron(str(raw["cron"]), **common)
    if "interval" in raw:
        return Interval(timedelta(seconds=float(raw["interval"])), **common)
    return RRule(str(raw["rrule"]), **common)


def _entry(raw: Any, index: int, env: Mapping[str, str]) -> DeploymentEntry:
    where = f"deployment {index + 1}"
    if not isinstance(raw, dict) or "name" not in raw or "entrypoint" not in raw:
        raise _refuse(where, "an entry needs at least name and entrypoint")
    where = f"deployment {raw['name']!r}"
    if set(raw) - _KEYS:
        raise _refuse(where, f"unknown key(s) {', '.join(sorted(set(raw) - _KEYS))}")
    flow = load_flow(str(raw["entrypoint"]), where)
    unset: list[str] = []
    parameters = _fill(raw.get("parameters") or {}, env, unset)
    missing = list(unset)  # a schedule without its parameters would only fail each time
    schedules = tuple(_schedule(s, where, not missing, env, unset)
                      for s in raw.get("schedules") or [])  # fmt: skip
    limit = raw.get("concurrency_limit")
    return DeploymentEntry(
        str(raw["name"]), str(raw["entrypoint"]), flow, raw.get("description"),
        tuple(raw.get("tags") or ()), parameters, schedules,
        int(limit) if limit is not None else None,
        str(raw["version"]) if raw.get("version") is not None else None,
        tuple(dict.fromkeys(unset)),
    )  # fmt: skip


def read_deployments(path: Path, env: Mapping[str, str] | None = None) -> list[DeploymentEntry]:
    """Every entry of ``path``, checked: keys, entrypoints, schedules."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BadDeployments(f"{path}: no such file",
                             hint=f"pass --file, or set {DEPLOYMENTS_ENV}") from None  # fmt: skip
    except yaml.YAMLError as e:
        raise BadDeployments(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict) or set(data) - _TOP_KEYS:
        raise _refuse(str(path), f"top-level keys are {', '.join(sorted(_TOP_KEYS))}")
    env = os.environ if env is None else env
    entries = [_entry(raw, i, env) for i, raw in enumerate(data.get("deployments") or [])]
    seen: set[str] = set()
    for entry in entries:
        if entry.full_name in seen:
            raise _refuse(str(path), f"{entry.full_name} is defined twice")
        seen.add(entry.full_name)
    return entries


def select(entries: Sequence[DeploymentEntry], only: Sequence[str]) -> list[DeploymentEntry]:
    """The entries named in ``only`` (``flow/name``), all when it is empty."""
    known = {e.full_name: e for e in entries}
    wrong = [name for name in only if name not in known]
    if wrong:
        raise BadDeployments(f"no deployment {', '.join(wrong)}",
                             hint=f"known: {', '.join(known)}")  # fmt: skip
    return [known[name] for name in only] if only else list(entries)


def serve_deployments(
    entries: Sequence[DeploymentEntry], *, limit: int | None = None,
    echo: Callable[[str], None] = print,
) -> None:  # fmt: skip
    """Register ``entries`` and run their flow runs until SIGTERM or Ctrl-C; schedules are
    paused when it stops, so nothing piles up while no one serves them."""
    for entry in entries:
        if entry.unset:
            echo(f"{entry.full_name}: schedules paused, {', '.join(entry.unset)} not set")
    serve(*(e.to_runner() for e in entries), limit=limit, print_starting_message=False,
          pause_on_shutdown=True)  # fmt: skip
