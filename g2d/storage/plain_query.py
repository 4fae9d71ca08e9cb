"""Reading plain volumes and snapshots on a host: read-only commands, run at once."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from g2d.core.errors import CommandNotFound
from g2d.hosts.base import Host
from g2d.storage.base import NotFound, SnapRef, SnapshotInfo, Unsupported, VolumeInfo
from g2d.storage.plain_attrs import Attrs, parse_getfattr, read_attrs
from g2d.storage.plain_attrs import getfattr_argv as _getfattr
from g2d.storage.plain_layout import (
    CREATED,
    GUID,
    HOLD_PREFIX,
    ORIGIN,
    SNAPDIR,
    VOLUME,
    VolPath,
    snap_path,
    xattr_to_meta,
)

MAX_DEPTH = 3  # volumes() looks this many directory levels below its root
_PACKAGES = {"tar": "tar", "cp": "coreutils", "getfattr": "attr", "setfattr": "attr"}


def user_meta(attrs: Mapping[str, str]) -> dict[str, str]:
    return {key: v for k, v in attrs.items() if (key := xattr_to_meta(k)) is not None}


def holds(attrs: Mapping[str, str]) -> frozenset[str]:
    return frozenset(k[len(HOLD_PREFIX) :] for k in attrs if k.startswith(HOLD_PREFIX))


def created_ns(attrs: Mapping[str, str]) -> int:
    try:
        return int(attrs.get(CREATED, "0"))
    except ValueError:
        return 0


class PlainReader:
    """Queries on one host."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def version(self, tool: str) -> str:
        try:
            return self.host.run([tool, "--version"]).lines()[0].strip()
        except CommandNotFound:
            raise Unsupported(
                f"{self.host.name}: {tool} not found; plain volumes need it",
                hint=f"install the {_PACKAGES[tool]} package on {self.host.name}",
            ) from None

    def reflink_at(self, directory: str) -> bool:
        """Whether ``cp --reflink=always`` works in ``directory``: tried, not guessed."""
        probe = self.host.run(
            ["mktemp", "-d", "-p", directory, ".g2d-reflink-probe.XXXXXX"]
        ).stdout.strip()
        try:
            self.host.run(["touch", "--", f"{probe}/a"])
            cp = ["cp", "--reflink=always", "--", f"{probe}/a", f"{probe}/b"]
            return self.host.run(cp, check=False).ok
        finally:
            self.host.run(["rm", "-rf", "--one-file-system", "--", probe])

    def changes(self, volume: str, snapshot: str) -> list[str]:
        """What differs between a volume and a snapshot of it (names, modes, owners, sizes,
        times; rsync's quick check), ``["./"]`` included when entries came or went."""
        argv = [
            "rsync", "--dry-run", "--archive", "--hard-links", "--numeric-ids", "--delete",
            "--modify-window=-1",  # compare nanoseconds, not only whole seconds
            "--itemize-changes", "--", f"{volume}/", f"{snapshot}/",
        ]  # fmt: skip
        try:
            out = self.host.run(argv).lines()
        except CommandNotFound:
            raise Unsupported(
                f"{self.host.name}: rsync not found; an incremental receive needs it",
                hint=f"install the rsync package on {self.host.name}",
            ) from None
        return [line.split(None, 1)[1] for line in out if " " in line.strip()]

    def is_dir(self, path: str) -> bool:
        return self.host.run(["test", "-d", path], check=False).ok

    def is_there(self, path: str) -> bool:
        return self.host.run(["test", "-e", path], check=False).ok

    def require(self, name: str) -> VolPath:
        vp = VolPath(name)
        if not self.is_dir(name):
            raise NotFound(name)
        return vp

    def attrs(self, path: str) -> Attrs:
        return read_attrs(self.host, [path])[path]

    def _find(self, dirs: list[str], name: str | None) -> list[str]:
        """find argv for the subdirectories of ``dirs`` named ``name`` (default: visible)."""
        match = ["-name", name] if name else ["!", "-name", ".*"]
        return ["find", *dirs, "-mindepth", "1", "-maxdepth", "1", "-type", "d", *match]

    def attrs_below(self, dirs: list[str], name: str | None = None) -> dict[str, Attrs]:
        """Attributes of the subdirectories of ``dirs`` that have any, in one command (a
        missing directory in ``dirs`` is just empty)."""
        argv = [*self._find(dirs, name), "-exec", *_getfattr([]), "{}", "+"]
        return parse_getfattr(self.host.run(argv, check=False).out)

    def subdirs(self, dirs: list[str]) -> tuple[list[str], dict[str, Attrs]]:
        """Visible subdirectories of ``dirs`` and their attributes."""
        out = self.host.run([*self._find(dirs, None), "-print0"], check=False).out
        paths = [p.decode("utf-8", "replace") for p in out.split(b"\0") if p]
        return paths, self.attrs_below(dirs)

    def volume_info(self, name: str, attrs: Attrs) -> VolumeInfo:
        origin = SnapRef.parse(attrs[ORIGIN]) if ORIGIN in attrs else None
        return VolumeInfo(name, origin, None, name, user_meta(attrs))

    def volumes(self, root: str) -> list[VolumeInfo]:
        """Directories marked as volumes, breadth first; a volume's inside is its data, so
        only directories that are not volumes are looked into."""
        root = posixpath.normpath(root)
        if not root.startswith("/") or not self.is_dir(root):
            raise NotFound(root)
        found: list[VolumeInfo] = []
        level, attrs = [root], {root: self.attrs(root)}
        for depth in range(MAX_DEPTH + 1):
            containers = []
            for path in sorted(level):
                if attrs.get(path, {}).get(VOLUME):
                    found.append(self.volume_info(path, attrs[path]))
                else:
                    containers.append(path)
            if not containers or depth == MAX_DEPTH:
                break
            level, attrs = self.subdirs(containers)
        return found

    def origins(self, parent: str) -> dict[str, list[str]]:
        """``{"vol@snap": [clones]}`` for the volumes in ``parent``: where plain looks for
        clones (a clone made into another directory is not found from its origin)."""
        clones: dict[str, list[str]] = {}
        for path, a in self.attrs_below([parent]).items():
            if ORIGIN in a and a.get(VOLUME):
                clones.setdefault(a[ORIGIN], []).append(path)
        return {k: sorted(v) for k, v in clones.items()}

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """A snapshot is a ``<leaf>@<snap>`` directory in .g2d-snap with g2d attributes."""
        vp = self.require(name)
        found = self.attrs_below([vp.snapdir], f"{vp.leaf}@*")
        clones = self.origins(vp.parent) if found else {}
        infos = []
        for path, a in found.items():
            n = posixpath.basename(path).split("@", 1)[1]
            ref = vp.ref(n)
            infos.append(
                (
                    (created_ns(a), n),
                    SnapshotInfo(
                        ref=ref,
                        guid=a.get(GUID, ""),
                        created=created_ns(a) // 1_000_000_000,
                        used=None,  # blocks are shared by reflinks; du would mislead
                        meta=user_meta(a),
                        holds=holds(a),
                        clones=tuple(clones.get(str(ref), ())),
                    ),
                )
            )
        return [info for _, info in sorted(infos, key=lambda t: t[0])]

    def snapshot_attrs(self, ref: SnapRef) -> Attrs:
        path = snap_path(ref)
        if not self.is_dir(path):
            raise NotFound(str(ref))
        return self.attrs(path)

    def find_guid(self, parent: str, guid: str) -> SnapRef | None:
        """The snapshot in ``parent/.g2d-snap`` whose guid is ``guid``."""
        snapdir = posixpath.join(parent, SNAPDIR)
        for path, a in sorted(self.attrs_below([snapdir], "*@*").items()):
            if a.get(GUID) == guid:
                volume, _, snap = posixpath.basename(path).partition("@")
                return SnapRef(posixpath.join(parent, volume), snap)
        return None
