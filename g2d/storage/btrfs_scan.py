"""What is on one btrfs file system, read in three commands and parsed here.

``findmnt`` maps the file system's own subvolume paths to the paths seen through the mount
that holds the anchor; ``btrfs subvolume list`` gives ids, generations and the three
uuids; one ``getfattr`` reads every ``user.g2d*`` attribute of every subvolume and home.
Everything else (snapshots of a volume, origins, clones) is derived in memory.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from g2d.hosts.base import Host
from g2d.storage.base import NotFound, SnapRef, StorageError
from g2d.storage.btrfs_layout import (
    ALL_ATTRS,
    ORIGIN,
    is_volume_path,
    parent_dir,
    ref_of,
)

_LIST_LINE = re.compile(
    r"ID (\d+) gen (\d+) cgen (\d+) parent (\d+) top level (\d+) "
    r"parent_uuid (\S+)\s+received_uuid (\S+)\s+uuid (\S+) path (.*)"
)
_OCTAL = re.compile(r"\\([0-7]{3})")
_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Subvol:
    id: int
    gen: int
    cgen: int  # generation it was created in: orders snapshots
    uuid: str
    parent_uuid: str | None
    received_uuid: str | None
    path: str  # absolute, through the mount

    @property
    def guid(self) -> str:
        """What ``btrfs send`` puts in the stream, and a receiver keeps as received_uuid."""
        return self.received_uuid or self.uuid

    @cached_property
    def ref(self) -> SnapRef | None:
        return ref_of(self.path)


def _uuid(text: str) -> str | None:
    return None if text == "-" else text


def parse_list(text: str, fsroot: str, target: str) -> list[Subvol]:
    """``btrfs subvolume list -p -c -u -q -R`` lines, mapped to paths under ``target``."""
    root = fsroot.strip("/")
    subvols = []
    for line in text.splitlines():
        m = _LIST_LINE.fullmatch(line.strip())
        if not m:
            continue
        rel = m.group(9)
        if root:
            if rel != root and not rel.startswith(root + "/"):
                continue  # outside the mounted part: not reachable by path here
            rel = rel[len(root) :].lstrip("/")
        subvols.append(
            Subvol(
                id=int(m.group(1)),
                gen=int(m.group(2)),
                cgen=int(m.group(3)),
                parent_uuid=_uuid(m.group(6)),
                received_uuid=_uuid(m.group(7)),
                uuid=m.group(8),
                path=posixpath.join(target, rel) if rel else target,
            )
        )
    return subvols


def parse_getfattr(text: str) -> dict[str, dict[str, str]]:
    """``getfattr --absolute-names -d -e hex`` output: path -> {name: value}."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# file: "):
            path = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), line[len("# file: ") :])
            current = found.setdefault(path, {})
        elif current is not None and line and not line.startswith("#"):
            name, _, value = line.partition("=")
            raw = bytes.fromhex(value[2:]) if value.startswith("0x") else b""
            current[name] = raw.decode("utf-8", "replace")
    return found


def parse_show_times(text: str) -> dict[str, int]:
    """``btrfs subvolume show`` blocks: uuid -> creation time (epoch seconds)."""
    times: dict[str, int] = {}
    uuid = None
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key == "UUID":
            uuid = value
        elif key == "Creation time" and uuid:
            times[uuid] = int(datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z").timestamp())
    return times


def unescape_findmnt(text: str) -> str:
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


@dataclass
class Scan:
    host: Host
    target: str  # the mount point the paths go through
    subvols: list[Subvol]
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)

    @cached_property
    def by_path(self) -> dict[str, Subvol]:
        return {s.path: s for s in self.subvols}

    @cached_property
    def by_uuid(self) -> dict[str, Subvol]:
        return {s.uuid: s for s in self.subvols}

    @cached_property
    def snapshots(self) -> list[Subvol]:
        return sorted((s for s in self.subvols if s.ref), key=lambda s: (s.cgen, s.id))

    @cached_property
    def volume_list(self) -> list[Subvol]:
        return [s for s in self.subvols if is_volume_path(s.path)]

    def attrs_of(self, path: str) -> dict[str, str]:
        return self.attrs.get(path, {})

    def snapshots_of(self, name: str) -> list[Subvol]:
        """Oldest first."""
        return [s for s in self.snapshots if s.ref and s.ref.volume == name]

    def snapshot(self, ref: SnapRef) -> Subvol | None:
        return next((s for s in self.snapshots if s.ref == ref), None)

    def below(self, path: str) -> list[Subvol]:
        """Subvolumes strictly inside ``path``, deepest first."""
        inside = [s for s in self.subvols if s.path.startswith(path.rstrip("/") + "/")]
        return sorted(inside, key=lambda s: -s.path.count("/"))

    def origin(self, vol: Subvol) -> SnapRef | None:
        """The snapshot ``vol`` was cloned from.

        parent_uuid is walked past the volume's own snapshots (a rollback or a receive makes
        the volume a snapshot of its own snapshot); the recorded guid decides where the two
        disagree and is what is left when parent_uuid points nowhere (after promote, or
        after send/receive, where the origin is found by guid, nearest directory first).
        """
        recorded = self.attrs_of(vol.path).get(ORIGIN) or None
        parent, seen = self.by_uuid.get(vol.parent_uuid or ""), set()
        while parent and parent.ref and parent.ref.volume == vol.path and parent.uuid not in seen:
            seen.add(parent.uuid)
            parent = self.by_uuid.get(parent.parent_uuid or "")
        if parent and parent.ref and (recorded is None or parent.guid == recorded):
            return parent.ref
        if recorded is None:
            return None
        here = parent_dir(vol.path)
        candidates = sorted(
            (
                s
                for s in self.snapshots
                if s.guid == recorded and s.ref and s.ref.volume != vol.path
            ),
            key=lambda s: (parent_dir(s.ref.volume) != here, s.uuid != recorded, s.id),  # type: ignore[union-attr]
        )
        return candidates[0].ref if candidates else None

    @cached_property
    def origins(self) -> dict[str, SnapRef | None]:
        return {v.path: self.origin(v) for v in self.volume_list}

    def clones(self, ref: SnapRef) -> list[str]:
        return sorted(name for name, origin in self.origins.items() if origin == ref)

    def created(self, subvols: Iterable[Subvol]) -> dict[str, int]:
        """Creation times (one command for all of them): uuid -> epoch seconds."""
        paths = [s.path for s in subvols]
        if not paths:
            return {}
        out = self.host.run(
            ["find", *paths, "-maxdepth", "0", "-exec", "btrfs", "subvolume", "show", "{}", ";"]
        ).stdout
        return parse_show_times(out)


def read_scan(host: Host, anchor: str) -> Scan:
    """Everything on the btrfs file system that holds ``anchor`` (an existing path)."""
    found = host.run(
        ["findmnt", "-r", "-n", "-o", "TARGET,FSROOT,FSTYPE", "-T", anchor], check=False
    )
    if not found.ok:
        raise NotFound(anchor)  # findmnt finds no mount for a path that does not exist
    # mounts stacked on one mount point are all listed; the last one is the one on top
    lines = found.stdout.splitlines()
    fields = [unescape_findmnt(f) for f in lines[-1].split()] if lines else []
    if len(fields) != 3 or fields[2] != "btrfs":
        kind = fields[2] if len(fields) == 3 else "unknown"
        raise StorageError(f"{anchor} is not on btrfs (it is on {kind})")
    target, fsroot, _ = fields
    listed = host.run(["btrfs", "subvolume", "list", "-p", "-c", "-u", "-q", "-R", target])
    scan = Scan(host, target, parse_list(listed.stdout, fsroot, target))
    paths = [s.path for s in scan.subvols]
    paths += [posixpath.dirname(s.path) for s in scan.snapshots]  # homes
    if paths:
        dump = host.run(
            ["getfattr", "--absolute-names", "-d", "-e", "hex", "-m", ALL_ATTRS, *paths],
            check=False,  # a subvolume deleted since the list is reported, not fatal
        )
        scan.attrs = parse_getfattr(dump.stdout)
    return scan
