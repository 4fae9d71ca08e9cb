"""Reading ZFS state: ``zfs get -Hp`` rows (tab-separated, exact numbers), names, errors.

Only machine-readable output is parsed. ``zfs list -p`` does not exist on zfs-fuse, but
``zfs get -Hp`` does everywhere, so every number comes from ``get``. User properties only
appear under ``get ... all``, so a read is two calls: the native properties by name, then
the locally set or received ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from g2d.core.errors import CommandFailed
from g2d.hosts.base import Host
from g2d.hosts.runner import Completed
from g2d.hosts.together import run_together
from g2d.storage.base import META_KEY, NotFound, SnapRef, SnapshotInfo, StorageError

# pool names start with a letter; no component may start with '-' (it would read as an option)
DATASET = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]*(?:/[A-Za-z0-9_.:][A-Za-z0-9_.:-]*)*")
SNAPNAME = re.compile(r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]*")
HOLD_TAG = SNAPNAME  # also: no comma, so tags can be listed in one property
HOLDS_KEY = "g2d:holds"  # hold tags on a snapshot, where `zfs holds` cannot list them
RESERVED_KEYS = frozenset({HOLDS_KEY})
MAX_VALUE = 8191  # zfs-fuse aborts ("Argument list too long") on longer user values
NATIVE = (
    "type", "origin", "used", "mounted", "mountpoint", "canmount",
    "guid", "creation", "createtxg", "userrefs", "atime",
)  # fmt: skip
_MISSING = "dataset does not exist"


def check_dataset(name: str) -> str:
    if not DATASET.fullmatch(name):
        raise StorageError(
            f"invalid dataset name {name!r}",
            hint="ZFS names are pool/a/b with [A-Za-z0-9_.:-], no leading '-'",
        )
    return name


def check_snapname(name: str, what: str = "snapshot name") -> str:
    if not SNAPNAME.fullmatch(name):
        raise StorageError(f"invalid {what} {name!r}", hint="use [A-Za-z0-9_.:-], no leading '-'")
    return name


def check_target(target: str | SnapRef) -> str:
    """The name of a dataset or snapshot, checked."""
    if isinstance(target, SnapRef):
        check_dataset(target.volume)
        check_snapname(target.name)
        return str(target)
    return check_dataset(target)


def check_meta_values(items: Mapping[str, str | None]) -> None:
    for key, value in items.items():
        if key in RESERVED_KEYS:
            raise StorageError(f"{key} is kept by g2d itself", hint="use hold and release")
        if value is None:
            continue
        if not value or len(value) > MAX_VALUE or "\t" in value or "\n" in value:
            raise StorageError(
                f"invalid value for {key}: {value[:40]!r}",
                hint=f"1 to {MAX_VALUE} characters, no tab or newline; None removes a key",
            )


def pool_of(name: str) -> str:
    return name.split("/", 1)[0].split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class Prop:
    value: str
    source: str  # "local", "received", "default", "inherited from X", "-"


@dataclass
class Row:
    """One dataset or snapshot and the properties read for it."""

    name: str
    props: dict[str, Prop] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        prop = self.props.get(key)
        return None if prop is None or prop.value == "-" else prop.value

    def number(self, key: str) -> int | None:
        value = self.get(key)
        return int(value) if value is not None and value.isdigit() else None

    def source(self, key: str) -> str | None:
        prop = self.props.get(key)
        return prop.source if prop is not None else None

    @property
    def is_snapshot(self) -> bool:
        return "@" in self.name

    @property
    def mounted_at(self) -> str | None:
        """Where the dataset is mounted, from its properties (None for legacy mounts)."""
        mountpoint = self.get("mountpoint")
        if self.get("mounted") != "yes" or mountpoint in (None, "none", "legacy"):
            return None
        return mountpoint

    def meta(self) -> dict[str, str]:
        """g2d:* keys set here or received; never inherited ones, never g2d's own."""
        return {
            key: prop.value
            for key, prop in self.props.items()
            if META_KEY.fullmatch(key)
            and key not in RESERVED_KEYS
            and prop.source in ("local", "received")
        }

    def tracked_holds(self) -> frozenset[str]:
        """Hold tags kept in g2d:holds; none when zfs counts no hold at all."""
        if self.source(HOLDS_KEY) != "local" or not self.number("userrefs"):
            return frozenset()
        return frozenset(t for t in (self.get(HOLDS_KEY) or "").split(",") if t)


def snapshot_info(row: Row, holds: frozenset[str], clones: Sequence[str]) -> SnapshotInfo:
    return SnapshotInfo(
        ref=SnapRef.parse(row.name),
        guid=row.get("guid") or "",
        created=row.number("creation") or 0,
        used=row.number("used"),
        meta=row.meta(),
        holds=holds,
        clones=tuple(sorted(clones)),
    )


def parse_get(text: str, rows: dict[str, Row] | None = None) -> dict[str, Row]:
    """``zfs get -Hp -o name,property,value,source`` output into rows, in output order."""
    rows = {} if rows is None else rows
    for line in text.splitlines():
        if not line:
            continue
        name, prop, value, source = line.split("\t")
        rows.setdefault(name, Row(name)).props[prop] = Prop(value, source)
    return rows


def failed(done: Completed, target: str) -> Exception:
    """The error for a failed zfs query: NotFound where zfs says so, else the failure."""
    if _MISSING in done.stderr:
        return NotFound(target)
    return CommandFailed(done.host, done.argv, done.returncode, done.stderr)


def get_argvs(
    targets: Sequence[str],
    *,
    depth: int | None = None,
    recursive: bool = False,
    native: Iterable[str] = NATIVE,
    user: bool = True,
) -> list[list[str]]:
    """The ``zfs get`` commands ``read_rows`` runs (one or two; they may run together)."""
    scope = [
        *(["-r"] if recursive or depth is not None else []),
        *(["-d", str(depth)] if depth is not None else []),
    ]
    columns = ["-o", "name,property,value,source"]
    wanted = ",".join(native)
    return [
        [
            "zfs", "get", "-Hp", *scope, *columns,
            *(["-s", "local,received"] if which == "all" else []),   # user properties
            which, *targets,
        ]
        for which in [*([wanted] if wanted else []), *(["all"] if user else [])]
    ]  # fmt: skip


def parse_rows(results: Iterable[Completed], targets: Sequence[str]) -> dict[str, Row]:
    """Rows from the results of ``get_argvs``; NotFound or CommandFailed for a failed one."""
    rows: dict[str, Row] = {}
    for done in results:
        if not done.ok:
            raise failed(done, targets[0] if len(targets) == 1 else ", ".join(targets))
        parse_get(done.stdout, rows)
    return rows


def read_rows(
    host: Host,
    targets: Sequence[str],
    *,
    depth: int | None = None,
    recursive: bool = False,
    native: Iterable[str] = NATIVE,
    user: bool = True,
) -> dict[str, Row]:
    """Properties of ``targets`` (and below, with ``recursive``/``depth``): the ``native``
    ones by name (user properties may be named too), and with ``user`` every locally set or
    received one. The native and the user read run together."""
    argvs = get_argvs(targets, depth=depth, recursive=recursive, native=native, user=user)
    return parse_rows(run_together(host, argvs), targets)


def origins_argv(pool: str) -> list[str]:
    return ["zfs", "list", "-H", "-o", "name,origin", "-r", "-t", "filesystem,volume", pool]


def parse_origins(text: str) -> dict[str, str]:
    pairs = (line.split("\t") for line in text.splitlines() if line)
    return {name: origin for name, origin in pairs if origin != "-"}


def origins(host: Host, pool: str) -> dict[str, str]:
    """Clone -> origin snapshot, for every clone in ``pool``."""
    return parse_origins(host.run(origins_argv(pool)).stdout)


def exists(host: Host, name: str) -> bool:
    return host.run(exists_argv(name), check=False).ok


def exists_argv(name: str) -> list[str]:
    """Exits 0 exactly when ``name`` (a dataset or snapshot) exists: a plan's ``done_if``."""
    return ["zfs", "list", "-H", "-o", "name", name]
