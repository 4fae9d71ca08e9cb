"""Build stamps: what a lab step's key is made of, and what a built step leaves behind.

A stamp (``.g2d-step-<name>.json``) records the step's input key, the size and mtime (or
link target) of every file it wrote, and a readable copy of what its builder returned; the
returned object itself is pickled beside it for the steps that need it in a later build.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import importlib.util
import json
import os
import pickle
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from g2d.core.errors import G2dUserError
from g2d.lab.layout import LabLayout

STAMP_VERSION = 1
# lab modules that run things but decide nothing about what a builder writes; an edit to
# them rebuilds no step
INFRASTRUCTURE = frozenset(
    {"g2d.lab.build", "g2d.lab.errors", "g2d.lab.layout", "g2d.lab.process", "g2d.lab.steps"}
)
Manifest = dict[str, list[Any]]  # relative path -> ["f", size, mtime_ns] or ["l", target]


class BuilderMissing(G2dUserError):
    """A step's builder module is not installed in this g2d."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=os.fspath).encode()


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise BuilderMissing(f"module {module} is missing")
    return Path(spec.origin)


def builder_sources(module: str, package: str = "g2d.lab") -> dict[str, str]:
    """sha256 of `module`'s source and of every `package` module it imports, transitively.

    So a change in a helper (the stage3's portage installer, say) rebuilds the steps whose
    builders use it, and a change anywhere else in g2d rebuilds nothing.
    """
    found: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        source = _module_file(name).read_bytes()
        found[name] = sha256(source)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            todo += [
                n
                for n in names
                if n.startswith(package + ".") and n not in INFRASTRUCTURE and _is_module(n)
            ]
    return dict(sorted(found.items()))


def _is_module(name: str) -> bool:
    # by file, not find_spec: that would import the parent (gemato, portage, ...) to look
    *parents, leaf = name.split(".")
    spec = importlib.util.find_spec(".".join(parents))
    where = spec.submodule_search_locations if spec else None
    return bool(where) and any(
        Path(d, f"{leaf}.py").is_file() or Path(d, leaf, "__init__.py").is_file() for d in where
    )


def scan(root: Path, relatives: Sequence[str]) -> Manifest:
    """Files and symlinks at or under each relative path: size and mtime, or link target."""
    found: Manifest = {}

    def record(path: Path) -> None:
        st = path.lstat()
        rel = os.fspath(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ["l", os.readlink(path)]
        elif path.is_file():
            found[rel] = ["f", st.st_size, st.st_mtime_ns]

    for relative in relatives:
        top = root / relative
        if top.is_symlink() or top.is_file():
            record(top)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in [
                *sorted(filenames),
                *(d for d in dirnames if Path(dirpath, d).is_symlink()),
            ]:
                record(Path(dirpath, name))
    return found


def manifest_problems(root: Path, manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(relative path, what is wrong) for each recorded file that is gone or changed."""
    top = os.fspath(root)
    for rel, want in manifest.items():
        path = os.path.join(top, rel)  # str, not Path: a stage3 root records ~6000 files
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            yield rel, "missing"
            continue
        kind = "l" if stat.S_ISLNK(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else "?"
        if kind != want[0]:
            yield rel, "replaced by another kind of file"
        elif kind == "l" and (target := os.readlink(path)) != want[1]:
            yield rel, f"points to {target!r}, not {want[1]!r}"
        elif kind == "f" and st.st_size != want[1]:
            yield rel, f"has {st.st_size} bytes, not {want[1]}"
        elif kind == "f" and st.st_mtime_ns != want[2]:
            yield rel, "was modified after it was built"


def read_stamp(layout: LabLayout, name: str) -> dict[str, Any] | None:
    try:
        stamp = json.loads(layout.stamp(name).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("version") == STAMP_VERSION else None


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=os.fspath) + "\n")
    os.replace(tmp, path)


def describe(value: Any) -> Any:
    """A builder's info as readable JSON, for the stamp and the digest (not to revive it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): describe(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        return sorted(describe(v) for v in value)
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes, sha256 {sha256(value)[:16]}>"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)  # datetimes, stamps: their text form


def renamed(value: Any, renames: Mapping[Path, Path]) -> Any:
    """`value` with every path under a temporary output moved to the final output."""
    if isinstance(value, Path):
        for tmp, final in renames.items():
            if value == tmp or tmp in value.parents:
                return final / value.relative_to(tmp)
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: renamed(getattr(value, f.name), renames)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple | list):
        return type(value)(renamed(v, renames) for v in value)
    if isinstance(value, dict):
        return {k: renamed(v, renames) for k, v in value.items()}
    return value


def save_info(layout: LabLayout, name: str, info: Any) -> None:
    path = layout.step_info(name)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pickle.dumps(info))
    os.replace(tmp, path)


def load_info(layout: LabLayout, name: str) -> Any:
    """The info object the step's builder returned; raises if it cannot be revived."""
    return pickle.loads(layout.step_info(name).read_bytes())
