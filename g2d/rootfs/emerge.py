"""Run the target's own ``emerge`` inside its root, binary packages first, and say what it did.

``emerge`` here is the target's Portage, run in a ``Chroot`` with the dom0's repositories,
binhost and distfiles mirror bound read-only (``portage_sources``). Options, as a Gentoo
admin runs a large install:

- ``--update --deep --newuse``: what is installed at the wanted version and USE is skipped,
  so running the same request again resumes after what was merged (``--resume`` would
  replay a merge list kept in the target's mtimedb, which a fresh run cannot trust);
- ``--usepkg --binpkg-respect-use=y``: a binpkg whose USE matches is taken, anything else is
  built; ``--buildpkg=n``, since the binhost is read-only here;
- ``FEATURES=binpkg-request-signature``: every binpkg must carry a good signature from a key
  in ``/etc/portage/gnupg`` (``binpkg_keys``), or it is refused;
- ``--keep-going``: one failed package does not stop the others (only what depends on it);
  the failures are listed together at the end.

What was merged is read from the lines emerge appended to the target's ``emerge.log``
(``emerge_log``); the build log of every package that failed is copied to ``logs``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from g2d.core.errors import CommandTimeout, G2dUserError
from g2d.hosts.base import Host
from g2d.hosts.chroot import Bind, Chroot
from g2d.hosts.local import LocalHost
from g2d.rootfs.emerge_log import Merge, MergeKind, RunLog, parse_emerge_log
from g2d.rootfs.portage_sources import PortageSources

log = logging.getLogger("g2d.rootfs.emerge")

EMERGE_LOG = "/var/log/emerge.log"
TRANSCRIPT = "emerge.out"  # emerge's whole stdout, in ``logs``
# what a root login on a console would have; NOCOLOR also covers the ebuild phases' output
BASE_ENV = {"TERM": "dumb", "USER": "root", "LANG": "C.UTF-8", "NOCOLOR": "true"}
EMERGE_OPTIONS = [
    "--update", "--deep", "--newuse",
    "--usepkg=y", "--binpkg-respect-use=y", "--buildpkg=n",
    "--keep-going=y",
    "--verbose", "--color=n", "--nospinner", "--quiet-build=y", "--ask=n",
]  # fmt: skip
_LOG_FILE = re.compile(r"\((?P<cpv>[^:\s]+)[^)]*\), Log file:\s*\n\s*\*\s+'(?P<path>[^']+)'")


@dataclass(frozen=True)
class Merged:
    """A package emerge merged into the root in this run."""

    cpv: str
    kind: MergeKind
    build_id: int | None
    seconds: int


@dataclass(frozen=True)
class Failure:
    """A package emerge started and did not merge; ``log`` is its build log, copied out."""

    cpv: str
    kind: MergeKind | None
    log: Path | None


@dataclass(frozen=True)
class EmergeResult:
    """What one emerge run did to a root: for the flow's artifact and g2d:* metadata."""

    root: str
    targets: tuple[str, ...]
    merged: tuple[Merged, ...]
    failed: tuple[Failure, ...]
    planned: int  # packages in emerge's merge list (0: nothing to do)
    returncode: int | None  # None: killed (timeout or cancellation)
    seconds: float
    transcript: Path  # emerge's stdout, in ``logs``

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.failed

    @property
    def not_merged(self) -> int:
        """Planned packages that were neither merged nor failed (dropped after a failure)."""
        return max(0, self.planned - len(self.merged) - len(self.failed))

    def count(self, kind: MergeKind) -> int:
        return sum(1 for m in self.merged if m.kind is kind)

    def metadata(self, prefix: str = "g2d:emerge") -> dict[str, str]:
        """Flat string values, as ZFS user properties (and btrfs/plain metadata) hold them."""
        return {
            f"{prefix}-merged": str(len(self.merged)),
            f"{prefix}-binary": str(self.count(MergeKind.binary)),
            f"{prefix}-built": str(self.count(MergeKind.built)),
            f"{prefix}-failed": " ".join(f.cpv for f in self.failed),
            f"{prefix}-seconds": f"{self.seconds:.0f}",
        }

    def markdown(self) -> str:
        """A table of the run, for a Prefect markdown artifact."""
        rows = [f"| {m.cpv} | {m.kind} | {m.build_id or ''} | {m.seconds} | merged |"
                for m in self.merged]  # fmt: skip
        rows += [f"| {f.cpv} | {f.kind or ''} |  |  | **failed** |" for f in self.failed]
        head = (
            f"emerge in `{self.root}`: {len(self.merged)} merged "
            f"({self.count(MergeKind.binary)} binary, {self.count(MergeKind.built)} built), "
            f"{len(self.failed)} failed, {self.seconds:.0f} s\n\n"
        )
        table = "| package | how | build id | seconds | result |\n|---|---|---|---|---|\n"
        return head + table + "".join(r + "\n" for r in rows)


class EmergeFailed(G2dUserError):
    """emerge did not merge everything asked: lists the failed packages and their logs."""

    def __init__(self, message: str, result: EmergeResult, *, hint: str | None = None) -> None:
        super().__init__(message, result, hint=hint)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """Atoms or sets, one word each; a word that emerge would read as an option is refused."""
    found = tuple(targets)
    if not found:
        raise G2dUserError("nothing to emerge", hint="name the world set or packages")
    bad = [t for t in found if not t or t.startswith("-") or any(c.isspace() for c in t)]
    if bad:
        raise G2dUserError(f"not a package atom or set: {bad}")
    return found


def emerge(
    root: str | os.PathLike[str],
    targets: Sequence[str],
    *,
    sources: PortageSources,
    logs: Path,
    oneshot: bool = False,
    extra_binds: Sequence[Bind] = (),
    options: Sequence[str] = (),
    jobs: int = 1,
    timeout: float | None = None,
    parent: Host | None = None,
) -> EmergeResult:
    """emerge ``targets`` inside ``root``; raise ``EmergeFailed`` unless all merged.

    logs: a directory on this machine for emerge's transcript and failed build logs.
    oneshot: leave the world file alone (an update); else the targets join world (a deploy).
    options: more emerge options, after g2d's (``--exclude=...``, ``--with-bdeps=y``).
    A timeout or cancellation kills emerge and everything it started; the Chroot takes
    its mounts with it. What was merged before stays merged; run again to resume.
    """
    wanted = check_targets(targets)
    logs.mkdir(parents=True, exist_ok=True)
    transcript = logs / TRANSCRIPT
    argv = [
        "emerge", *EMERGE_OPTIONS,
        *(["--oneshot"] if oneshot else []),
        f"--jobs={jobs}",
        *options,
        "--", *wanted,
    ]  # fmt: skip
    env = {**BASE_ENV, **sources.env(), "FEATURES": "binpkg-request-signature"}
    binds = [*sources.binds(), *extra_binds]
    started = time.monotonic()
    with Chroot(root, binds=binds, parent=parent or LocalHost(), resolv_conf=False) as ch:
        offset = _size(ch, EMERGE_LOG)
        killed: CommandTimeout | None = None
        try:
            done = ch.run(argv, env=env, stdout=transcript, timeout=timeout, check=False)
            code: int | None = done.returncode
            tail = done.stderr
        except CommandTimeout as e:
            killed, code, tail = e, None, e.tail
        run = parse_emerge_log(_read_from(ch, EMERGE_LOG, offset))
        failed = _collect_failures(ch, run, tail, logs)
    result = EmergeResult(
        root=ch.root,
        targets=wanted,
        merged=tuple(
            Merged(m.cpv, m.kind or MergeKind.built, m.build_id, m.seconds or 0)
            for m in run.completed
        ),
        failed=failed,
        planned=run.planned,
        returncode=code,
        seconds=time.monotonic() - started,
        transcript=transcript,
    )
    for m in result.merged:
        log.info("%s: merged %s (%s) in %d s", result.root, m.cpv, m.kind, m.seconds)
    if killed is not None:
        raise EmergeFailed(
            f"emerge in {result.root} {killed.describe_exit()}; {_summary(result)}",
            result,
            hint="nothing is left running; run it again to resume after what was merged",
        ) from killed
    if not result.ok:
        raise EmergeFailed(_failure_message(result, tail), result, hint=_hint(result))
    return result


def _summary(result: EmergeResult) -> str:
    text = f"{len(result.merged)} merged"
    if result.failed:
        text += ", unfinished: " + ", ".join(f.cpv for f in result.failed)
    return text


def _failure_message(result: EmergeResult, tail: str) -> str:
    if result.failed:
        listed = "; ".join(
            f"{f.cpv} (build log: {f.log})" if f.log else f.cpv for f in result.failed
        )
        return (
            f"emerge in {result.root} failed for {len(result.failed)} of "
            f"{result.planned} packages: {listed}"
        )
    # nothing started: emerge refused the request as a whole (masks, blockers, unknown atoms)
    why = "\n".join(line for line in tail.splitlines() if line.strip())
    return f"emerge in {result.root} exited with {result.returncode} before merging:\n{why}"


def _hint(result: EmergeResult) -> str:
    if result.failed:
        return (
            f"{len(result.merged)} packages were merged and stay merged; fix the failed ones "
            "(their USE flags, or the ebuild) and run again to resume"
        )
    return "see emerge's messages above; the root is unchanged"


def _size(ch: Chroot, path: str) -> int:
    done = ch.run(["stat", "-c", "%s", "--", path], check=False)
    return int(done.stdout.strip()) if done.ok else 0


def _read_from(ch: Chroot, path: str, offset: int) -> str:
    done = ch.run(["tail", "-c", f"+{offset + 1}", "--", path], check=False)
    return done.stdout if done.ok else ""


def _collect_failures(ch: Chroot, run: RunLog, tail: str, logs: Path) -> tuple[Failure, ...]:
    """Each unfinished package with its build log copied to ``logs/<category>/<pf>.log``."""
    named = {m["cpv"]: m["path"] for m in _LOG_FILE.finditer(tail)}
    failures = []
    for merge in run.unfinished:
        failures.append(Failure(merge.cpv, merge.kind, _copy_log(ch, merge, named, logs)))
    return tuple(failures)


def _copy_log(ch: Chroot, merge: Merge, named: dict[str, str], logs: Path) -> Path | None:
    # Portage keeps the build directory of a failed package (unless FEATURES=fail-clean);
    # its log is where emerge's summary says, or in the default PORTAGE_TMPDIR
    source = named.get(merge.cpv, f"/var/tmp/portage/{merge.cpv}/temp/build.log")
    dest = logs / f"{merge.cpv}.log"
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = ch.run(["cat", "--", source], stdout=dest, check=False)
    if not done.ok:
        dest.unlink(missing_ok=True)
        return None
    return dest
