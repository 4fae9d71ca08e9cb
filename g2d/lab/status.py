"""`g2d lab status`: are the lab's services up, and is what it built intact?

Findings are typed: what was checked (a build step, a file, a signature, a checksum list, a
binhost index, a service), the subject (a path relative to the lab, or a name), a level and
a sentence saying what is wrong and how to fix it. Only an ``error`` makes the lab unsound;
a lab that is not up, or built by older builders, is reported but is not broken.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g2d.lab import verify
from g2d.lab.build import Step, step_key
from g2d.lab.layout import LabLayout
from g2d.lab.process import HOST
from g2d.lab.services import LabState, Running, Service, http_get, prefect_healthy, read_state
from g2d.lab.stamps import BuilderMissing, manifest_problems, read_stamp

REBUILD = "g2d lab build"
_BANNERS = {Service.rsync: b"@RSYNCD:", Service.sshd: b"SSH-2.0-"}


class Level(enum.StrEnum):
    ok = enum.auto()
    info = enum.auto()  # worth knowing, nothing wrong (the lab is not up)
    warning = enum.auto()  # sound, but not what `lab build` would make now
    error = enum.auto()  # damaged or down while it should be up


class Check(enum.StrEnum):
    build = enum.auto()
    file = enum.auto()
    signature = enum.auto()
    digest = enum.auto()
    index = enum.auto()
    service = enum.auto()


@dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    subject: str
    level: Level
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "check": str(self.check), "level": str(self.level)}


def lab_status(layout: LabLayout, *, steps: Sequence[Step] | None = None) -> list[Finding]:
    """Every check of the lab: build steps, files, signatures, digests, indexes, services."""
    from g2d.lab.steps import LAB_STEPS

    table = list(steps if steps is not None else LAB_STEPS)
    if not any(read_stamp(layout, s.name) for s in table):
        findings = [
            Finding(Check.build, "lab", Level.error, f"not built: no step has run in "
                    f"{os.fspath(layout.root)}", fix=REBUILD)
        ]  # fmt: skip
    else:
        findings = [*check_steps(layout, table), *check_contents(layout, table)]
    return findings + check_services(layout)


def is_sound(findings: Sequence[Finding]) -> bool:
    return not any(f.level is Level.error for f in findings)


# --------------------------------------------------------------------------- build steps


def check_steps(layout: LabLayout, table: Sequence[Step]) -> Iterator[Finding]:
    digests: dict[str, str] = {}
    for step in table:
        stamp = read_stamp(layout, step.name)
        if stamp is None:
            yield Finding(Check.build, step.name, Level.error, "never built", fix=REBUILD)
            continue
        digests[step.name] = stamp["digest"]
        broken = list(manifest_problems(layout.root, stamp["outputs"]))
        for rel, problem in broken:
            detail = f"{problem} (written by step {step.name})"
            yield Finding(Check.file, rel, Level.error, detail, fix=REBUILD)
        try:
            key = step_key(step, {d: digests.get(d, "") for d in step.deps})
        except BuilderMissing as e:
            yield Finding(Check.build, step.name, Level.warning, str(e))
            continue
        if key != stamp["key"]:
            detail = "out of date: its builder, parameters or inputs changed since it was built"
            yield Finding(Check.build, step.name, Level.warning, detail, fix=REBUILD)
        elif not broken:
            files = len(stamp["outputs"])
            detail = f"built {stamp['built_at']} in {stamp['seconds']:.1f} s; {files} files intact"
            yield Finding(Check.build, step.name, Level.ok, detail)


# ------------------------------------------------------------------------------ contents


def _lab_keys(layout: LabLayout) -> tuple[str, ...]:
    stamp = read_stamp(layout, "keys")
    info = stamp.get("info") if stamp else None
    return tuple(v for k, v in info.items() if k != "gnupghome") if isinstance(info, dict) else ()


def _files(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            yield Path(dirpath, name)


class _Repair:
    """Which command repairs a file: a plain build when the step that wrote it will run
    again (one of its files changed on disk), else only a forced one."""

    def __init__(self, layout: LabLayout, table: Sequence[Step]) -> None:
        self.layout = layout
        self.owner: dict[str, str] = {}
        self.changed: set[str] = set()
        for step in table:
            stamp = read_stamp(layout, step.name)
            if stamp is not None:
                self.owner.update(dict.fromkeys(stamp["outputs"], step.name))
                if next(manifest_problems(layout.root, stamp["outputs"]), None):
                    self.changed.add(step.name)

    def fix(self, path: Path) -> str:
        step = self.owner.get(self.layout.relative(path))
        return REBUILD if step is None or step in self.changed else f"{REBUILD} --force"


@dataclass
class _Tally:
    good: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.good += ok
        self.total += 1


def check_contents(layout: LabLayout, table: Sequence[Step]) -> Iterator[Finding]:
    """Signatures, checksum lists, binhost indexes and GPKGs under mirror/ and site/."""
    repair = _Repair(layout, table)
    files = [p for top in (layout.mirror, layout.site) if top.is_dir() for p in _files(top)]
    tallies = {Check.signature: _Tally(), Check.digest: _Tally(), Check.index: _Tally()}
    for path in files:
        if path.is_symlink() and not path.exists():
            detail = f"dangling symlink to {os.readlink(path)}"
            yield Finding(Check.file, layout.relative(path), Level.error, detail, fix=REBUILD)
    regular = [p for p in files if not p.is_symlink()]
    payloads: dict[Path, str] = {}
    yield from _signatures(layout, regular, repair, payloads, tallies[Check.signature])
    yield from _checksums(layout, regular, repair, payloads, tallies[Check.digest])
    yield from _binhosts(layout, regular, repair, tallies[Check.index])
    what = {Check.signature: "signatures good", Check.digest: "checksum lists match",
            Check.index: "binhost indexes and binpkgs sound"}  # fmt: skip
    for check, tally in tallies.items():
        level = Level.ok if tally.good == tally.total else Level.info  # the bad: errors above
        yield Finding(check, "mirror", level, f"{tally.good} of {tally.total} {what[check]}")


def _signatures(
    layout: LabLayout, files: Sequence[Path], repair: _Repair, payloads: dict[Path, str],
    tally: _Tally,
) -> Iterator[Finding]:  # fmt: skip
    keys = _lab_keys(layout)
    for path in files:
        kind = verify.signature_kind(path)
        if kind is None:
            continue
        rel = layout.relative(path)
        data = path.with_suffix("") if kind == "detached" else None
        if data is not None and not data.is_file():
            detail = f"signs {data.name}, which is missing"
            yield Finding(Check.signature, rel, Level.error, detail, fix=REBUILD)
            continue
        sig = verify.verify(layout.gnupg, path, data, keys=keys)
        tally.add(sig.good)
        if sig.good:
            payloads[path] = sig.payload.decode(errors="replace")
        else:
            fixes = {repair.fix(p) for p in (path, data) if p is not None}
            fix = REBUILD if REBUILD in fixes else fixes.pop()
            yield Finding(Check.signature, rel, Level.error, sig.problem, fix=fix)


def _checksums(
    layout: LabLayout, files: Sequence[Path], repair: _Repair, payloads: dict[Path, str],
    tally: _Tally,
) -> Iterator[Finding]:  # fmt: skip
    for path in files:
        if not path.name.endswith(tuple(verify.CHECKSUM_SUFFIXES)):
            continue
        if path in payloads:
            text = payloads[path]
        elif verify.signature_kind(path) is None:
            text = path.read_text(errors="replace")
        else:
            continue  # its bad signature is reported; its payload cannot be trusted
        problems = verify.check_checksums(path, text)
        tally.add(not problems)
        for name, problem in problems:
            fix = repair.fix(path.parent / name)
            yield Finding(Check.digest, layout.relative(path), Level.error, problem, fix=fix)


def _binhosts(
    layout: LabLayout, files: Sequence[Path], repair: _Repair, tally: _Tally
) -> Iterator[Finding]:
    keys = _lab_keys(layout)
    for path in files:
        if path.name == "Packages":
            problems = verify.check_packages(path)
        elif path.name.endswith(".gpkg.tar"):
            problems = verify.check_gpkg(path, layout.gnupg, keys)
        else:
            continue
        tally.add(not problems)
        for problem in problems:
            rel = layout.relative(path)
            yield Finding(Check.index, rel, Level.error, problem, fix=repair.fix(path))


# ------------------------------------------------------------------------------ services


def _banner(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as s:
            s.settimeout(2.0)
            return s.recv(len(prefix)) == prefix
    except OSError:
        return False


def answers(service: Running) -> bool:
    if service.name is Service.http:
        try:
            return http_get(service.url)[0] == 200
        except OSError:
            return False
    if service.name is Service.prefect:
        return prefect_healthy(service.port)
    return _banner(service.port, _BANNERS[service.name])


def check_services(layout: LabLayout) -> list[Finding]:
    state: LabState | None = read_state(layout)
    if state is None:
        return [Finding(Check.service, "lab", Level.info, "not up", fix="g2d lab up")]
    found = []
    for s in state.services:
        if not s.alive():
            detail = f"pid {s.pid} is not running (log: {os.fspath(s.log)})"
            found.append(Finding(Check.service, s.name, Level.error, detail,
                                 fix="g2d lab down, then g2d lab up"))  # fmt: skip
        elif not answers(s):
            detail = f"pid {s.pid} runs, but {s.url} does not answer (log: {os.fspath(s.log)})"
            found.append(Finding(Check.service, s.name, Level.error, detail,
                                 fix="g2d lab down, then g2d lab up"))  # fmt: skip
        else:
            found.append(Finding(Check.service, s.name, Level.ok, f"pid {s.pid}, {s.url}"))
    return found


# ------------------------------------------------------------------------------- output


def format_table(findings: Sequence[Finding]) -> str:
    """Aligned columns; a finding that is not ok is followed by its fix."""
    head = ("CHECK", "SUBJECT", "LEVEL")
    rows = [(str(f.check), f.subject, str(f.level)) for f in findings]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    indent = " " * (sum(widths) + 2 * len(widths))
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + "  DETAIL"]
    for f, row in zip(findings, rows, strict=True):
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "  " + f.detail
        )
        if f.fix and f.level is not Level.ok:
            out.append(f"{indent}fix: {f.fix}")
    errors = sum(f.level is Level.error for f in findings)
    out.append("lab is sound" if not errors else f"lab has {errors} problem{'s' * (errors > 1)}")
    return "\n".join(out) + "\n"


def format_json(findings: Sequence[Finding]) -> str:
    data = {"ok": is_sound(findings), "findings": [f.to_json() for f in findings]}
    return json.dumps(data, indent=2) + "\n"
