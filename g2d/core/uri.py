"""Target URIs: where a system root lives, and the disk an install writes.

Pure parsing and validation, no I/O. Every form the old bash tool took is read here, and
each parsed value prints back (``str``) as the one canonical text that parses to it again.

Source and work targets (``parse_target``)::

    pool/set[@snap]                           a dataset or a relative path; backend sensed later
    /abs/path[@snap]                          an absolute path; backend sensed later
    zfs://pool/set[@snap]                     a ZFS dataset on this machine
    zfs://[user@]host[:port]:/pool/set[@snap] a ZFS dataset on another machine, over ssh
    btrfs://[[user@]host[:port]:]/path[@snap] a btrfs subvolume
    dir://[[user@]host[:port]:]/path[@snap]   a plain directory tree

Boot targets (``parse_boot``), with or without a leading ``boot=``::

    zfs:///dev/DISK:/pool/dataset             a new disk with a new pool
    zfs://pool/dataset                        an existing pool, no new disk
    btrfs|ext4|xfs:///dev/DISK:/path          a new disk with that file system

g2d is stricter than the file systems: every name component takes only letters, digits and
``_ . : -`` (paths also ``+``), never starts with ``-``, and is never ``.`` or ``..``, so an
accepted name can neither start an option nor carry a shell metacharacter. See
``docs/targets.md`` for the whole rule set.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any, Self

from g2d.core.errors import InvalidTarget

__all__ = [
    "Backend",
    "BootTarget",
    "FsKind",
    "HostAddress",
    "Target",
    "parse_any",
    "parse_boot",
    "parse_target",
]


class Backend(enum.StrEnum):
    """Where a target's system root lives; ``auto`` leaves it to the storage layer to sense."""

    auto = "auto"
    zfs = "zfs"
    btrfs = "btrfs"
    dir = "dir"

    def is_sensed(self) -> bool:
        """True when the storage layer must look at the host to learn the real backend."""
        return self is Backend.auto

    def takes_dataset(self) -> bool:
        """True when the target is named as ``pool/dataset``, never as an absolute path."""
        return self is Backend.zfs

    def takes_path(self) -> bool:
        """True when the target is named by an absolute path."""
        return self in (Backend.btrfs, Backend.dir)

    def scheme(self) -> str | None:
        """The URI scheme that names this backend; None for ``auto``, which has none."""
        return None if self is Backend.auto else self.value


class FsKind(enum.StrEnum):
    """The file system a boot target puts on its disk."""

    zfs = "zfs"
    btrfs = "btrfs"
    ext4 = "ext4"
    xfs = "xfs"

    def backend(self) -> Backend:
        """The storage backend that holds a system root on this file system."""
        if self is FsKind.zfs:
            return Backend.zfs
        if self is FsKind.btrfs:
            return Backend.btrfs
        return Backend.dir

    def has_pools(self) -> bool:
        """True when the name after the device is ``pool/dataset`` rather than a path."""
        return self is FsKind.zfs

    def has_snapshots(self) -> bool:
        """True when the file system itself snapshots (ZFS snapshots, btrfs subvolumes)."""
        return self in (FsKind.zfs, FsKind.btrfs)


# --- character rules -------------------------------------------------------------------------

# ZFS itself also takes a space (and '%' inside the kernel); g2d takes neither.
_ZFS_CHARS = frozenset(string.ascii_letters + string.digits + "_.:-")
_PATH_CHARS = _ZFS_CHARS | {"+"}
_SHELL_META = frozenset("|&;<>()$`\\\"'*?[]#~!{}^")

# zfs_namecheck.c: a full name is shorter than ZFS_MAX_DATASET_NAME_LEN (256); a pool name
# leaves room for "/$ORIGIN@$ORIGIN" (256 - 2 - 2*7 = 240, exclusive); nesting stays below
# the default zfs_max_dataset_nesting (50).
_ZFS_NAME_MAX = 255
_ZFS_POOL_MAX = 239
_ZFS_DEPTH_MAX = 49
_NAME_MAX = 255  # one path component (Linux NAME_MAX)
_PATH_MAX = 4095  # a whole path, without its NUL (Linux PATH_MAX)

# `zpool create` refuses these (libzfs zpool_name_valid); old ZFS, zfs-fuse among them, also
# refuses a pool name that looks like a Solaris disk (c0t0d0).
_POOL_RESERVED_EXACT = ("log",)
_POOL_RESERVED_PREFIX = ("mirror", "raidz", "draid", "spare")
_DISKLIKE = re.compile(r"c[0-9]")

_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IPV4ISH = frozenset(string.digits + ".")
_IPV6ISH = frozenset(string.hexdigits + ":.")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=")

_HINT_DASH = "a leading '-' could be read as an option by zfs, btrfs, rsync or ssh"
_HINT_ZFS_CHARS = "ZFS names in g2d take letters, digits and _ . : -"
_HINT_BARE_CHARS = (
    "a bare relative name may be a ZFS dataset, so it follows ZFS's rules "
    "(letters, digits and _ . : -); write an absolute path for a directory"
)
_HINT_PATH_CHARS = "path components take letters, digits and _ . : + -"
_HINT_SCHEMES = "g2d takes zfs://, btrfs:// and dir://, or a bare dataset name or absolute path"
_HINT_FS = "a boot target's file system is one of zfs, btrfs, ext4, xfs"
_HINT_REMOTE = "a remote target is written like zfs://user@host:/pool/set@snap"


class _Refused(Exception):
    """Internal: what is wrong, before the caller knows the whole text to name."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason, hint)
        self.reason = reason
        self.hint = hint


def _check_component(comp: str, what: str, allowed: frozenset[str], hint: str) -> None:
    if not comp:
        raise _Refused(f"empty {what}")
    if comp in (".", ".."):
        raise _Refused(f"{what} {comp!r} is not allowed")
    if comp.startswith("-"):
        raise _Refused(f"{what} {comp!r} starts with '-'", _HINT_DASH)
    for ch in comp:
        if ch in allowed:
            continue
        if ch.isspace():
            raise _Refused(f"{what} {comp!r} contains white space")
        if ch in _SHELL_META:
            raise _Refused(f"{what} {comp!r} contains the shell metacharacter {ch!r}", hint)
        raise _Refused(f"{what} {comp!r} contains {ch!r}, which g2d does not allow", hint)


def _check_pool(pool: str, hint: str) -> None:
    _check_component(pool, "pool name", _ZFS_CHARS, hint)
    if ":" in pool:
        raise _Refused(
            f"pool name {pool!r} contains ':'",
            "in a target, 'name:/' reads as a host; g2d keeps ':' out of pool names",
        )
    if pool[0] not in string.ascii_letters:
        raise _Refused(f"pool name {pool!r} does not start with a letter")
    if pool in _POOL_RESERVED_EXACT or pool.startswith(_POOL_RESERVED_PREFIX):
        raise _Refused(
            f"pool name {pool!r} is reserved by ZFS",
            "zpool create refuses 'log' and names starting with mirror, raidz, draid or spare",
        )
    if _DISKLIKE.match(pool):
        raise _Refused(
            f"pool name {pool!r} looks like a Solaris disk name",
            "older ZFS, zfs-fuse among them, refuses pool names of 'c' and a digit",
        )
    if len(pool) > _ZFS_POOL_MAX:
        raise _Refused(
            f"pool name is {len(pool)} characters long; ZFS allows at most {_ZFS_POOL_MAX}"
        )


def _split_name(name: str) -> tuple[str, ...]:
    """The components of a normalized dataset name or absolute path ('/' has none)."""
    if name == "/":
        return ()
    body = name[1:] if name.startswith("/") else name
    if name.endswith("/"):
        raise _Refused(f"trailing '/' in {name!r}")
    parts = tuple(body.split("/"))
    if "" in parts:
        raise _Refused(f"empty component ('//') in {name!r}")
    return parts


def _check_dataset(name: str, bare: bool) -> tuple[str, ...]:
    hint = _HINT_BARE_CHARS if bare else _HINT_ZFS_CHARS
    parts = _split_name(name)
    _check_pool(parts[0], hint)
    for comp in parts[1:]:
        _check_component(comp, "dataset component", _ZFS_CHARS, hint)
    if len(parts) - 1 > _ZFS_DEPTH_MAX:
        raise _Refused(
            f"dataset has {len(parts) - 1} levels below its pool; "
            f"ZFS allows at most {_ZFS_DEPTH_MAX}"
        )
    return parts


def _check_zfs_length(name: str, snapshot: str | None) -> None:
    full = len(name) + (len(snapshot) + 1 if snapshot is not None else 0)
    if full > _ZFS_NAME_MAX:
        what = "dataset name with its snapshot" if snapshot is not None else "dataset name"
        raise _Refused(f"{what} is {full} characters long; ZFS allows at most {_ZFS_NAME_MAX}")


def _check_path(name: str, what: str = "path component") -> tuple[str, ...]:
    parts = _split_name(name)
    for comp in parts:
        _check_component(comp, what, _PATH_CHARS, _HINT_PATH_CHARS)
        if len(comp) > _NAME_MAX:
            raise _Refused(
                f"{what} is {len(comp)} characters long; at most {_NAME_MAX} are allowed"
            )
    if len(name) > _PATH_MAX:
        raise _Refused(f"path is {len(name)} characters long; at most {_PATH_MAX} are allowed")
    return parts


def _check_snapshot(snapshot: str) -> None:
    if "/" in snapshot:
        raise _Refused(
            f"snapshot name {snapshot!r} contains '/'",
            f"a snapshot name ends the target; {_HINT_REMOTE}",
        )
    _check_component(snapshot, "snapshot name", _ZFS_CHARS, _HINT_ZFS_CHARS)
    if len(snapshot) > _NAME_MAX:
        raise _Refused(
            f"snapshot name is {len(snapshot)} characters long; at most {_NAME_MAX} are allowed"
        )


def _check_text(text: str, empty: str) -> None:
    if not text:
        raise _Refused(empty)
    for i, ch in enumerate(text):
        if ch.isspace():
            raise _Refused(f"contains white space ({ch!r} at position {i})")
        if not ch.isprintable():
            raise _Refused(f"contains the control character {ch!r} at position {i}")


# --- hosts -----------------------------------------------------------------------------------


def _check_host_name(name: str) -> None:
    if not name:
        raise _Refused("host name is empty")
    if name.startswith("-"):
        raise _Refused(f"host name {name!r} starts with '-'", _HINT_DASH)
    if ":" in name:
        try:
            if not set(name) <= _IPV6ISH:
                raise ValueError(name)
            ipaddress.IPv6Address(name)
        except ValueError:
            raise _Refused(f"host name {name!r} is not a valid IPv6 address") from None
        return
    if set(name) <= _IPV4ISH:
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise _Refused(f"host name {name!r} is not a valid IPv4 address") from None
        return
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise _Refused(
            f"host name {name!r} is not a valid host name",
            "a host name is dot-separated labels of letters, digits and inner '-'",
        )


def _check_user(user: str) -> None:
    if not user:
        raise _Refused("user name is empty")
    if user.startswith("-"):
        raise _Refused(f"user name {user!r} starts with '-'", _HINT_DASH)
    if not _USER.fullmatch(user):
        raise _Refused(
            f"user name {user!r} is not a valid user name",
            "a user name starts with a letter or '_', then letters, digits and _ . -, "
            "at most 32 characters",
        )


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _Refused(f"port {port!r} is not a number from 1 to 65535")


@dataclass(frozen=True, slots=True)
class HostAddress:
    """The machine a remote target lives on, reached over ssh: ``[user@]name[:port]``."""

    name: str
    user: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        try:
            _check_host_name(self.name)
            if self.user is not None:
                _check_user(self.user)
            if self.port is not None:
                _check_port(self.port)
        except _Refused as e:
            raise InvalidTarget(_render_host(self), e.reason, hint=e.hint) from None

    @property
    def destination(self) -> str:
        """``user@name`` (or ``name``), as ssh takes it; the port goes separately."""
        return f"{self.user}@{self.name}" if self.user is not None else self.name

    def is_loopback(self) -> bool:
        """True for localhost or a loopback address: still reached over ssh, never shortcut."""
        if self.name == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.name).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return _render_host(self)

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "name": self.name, "port": self.port}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=data["name"], user=data.get("user"), port=data.get("port"))


def _render_host(host: HostAddress) -> str:
    name = f"[{host.name}]" if ":" in host.name else host.name
    user = f"{host.user}@" if host.user is not None else ""
    port = f":{host.port}" if host.port is not None else ""
    return f"{user}{name}{port}"


def _parse_authority(authority: str) -> HostAddress:
    user: str | None = None
    hostport = authority
    if "@" in authority:
        user, _, hostport = authority.rpartition("@")
        _check_user(user)
    port_text: str | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _Refused(f"host {hostport!r} has no closing ']'")
        name, after = hostport[1:end], hostport[end + 1 :]
        if ":" not in name:
            raise _Refused(f"host {hostport!r}: brackets are only for IPv6 addresses")
        if after:
            if not after.startswith(":"):
                raise _Refused(f"unexpected {after!r} after the IPv6 address")
            port_text = after[1:]
    else:
        if hostport.count(":") > 1:
            raise _Refused(
                f"host {hostport!r} has more than one ':'",
                "write an IPv6 address in brackets, like root@[::1]:/pool/set",
            )
        name, colon, rest = hostport.partition(":")
        port_text = rest if colon else None
    _check_host_name(name)
    port: int | None = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            raise _Refused(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostAddress(name=name, user=user, port=port)


def _split_authority(rest: str) -> tuple[str | None, str]:
    """``user@host:port:/x`` -> (``user@host:port``, ``/x``); no host before ``:/`` -> None."""
    i = rest.find(":/")
    if i >= 0 and "/" not in rest[:i]:
        return rest[:i], rest[i + 1 :]
    return None, rest


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A system root: a dataset, subvolume or directory, maybe on another host, maybe a snapshot.

    ``name`` is a dataset (``wSys/plasma``) for zfs, an absolute path (``/srv/roots/g1``) for
    btrfs and dir, and either for auto. A value checks itself when it is built.
    """

    backend: Backend
    name: str
    snapshot: str | None = None
    host: HostAddress | None = None

    def __post_init__(self) -> None:
        try:
            _check_target(self)
        except _Refused as e:
            raise InvalidTarget(_render_target(self), e.reason, hint=e.hint) from None

    @classmethod
    def parse(cls, text: str) -> Target:
        return parse_target(text)

    @property
    def is_path(self) -> bool:
        """True when ``name`` is an absolute path rather than a dataset name."""
        return self.name.startswith("/")

    @property
    def is_remote(self) -> bool:
        return self.host is not None

    @property
    def parts(self) -> tuple[str, ...]:
        """The components of the dataset or path: ``("wSys", "plasma")``; ``()`` for ``/``."""
        return _split_name(self.name)

    @property
    def dataset(self) -> str | None:
        """The dataset name (zfs, or auto without a leading '/'); None for a path."""
        return None if self.is_path else self.name

    @property
    def path(self) -> PurePosixPath | None:
        """The absolute path (btrfs, dir, or auto with a leading '/'); None for a dataset."""
        return PurePosixPath(self.name) if self.is_path else None

    @property
    def pool(self) -> str | None:
        """The first component of a dataset name; None for a path."""
        return None if self.is_path else self.name.split("/", 1)[0]

    def with_snapshot(self, snapshot: str | None) -> Target:
        """The same dataset or path at another snapshot (None: the live one)."""
        return replace(self, snapshot=snapshot)

    def child(self, component: str) -> Target:
        """The dataset or directory ``component`` below this one; the snapshot is dropped."""
        base = "" if self.name == "/" else self.name
        return replace(self, name=f"{base}/{component}", snapshot=None)

    def __str__(self) -> str:
        return _render_target(self)

    def to_json(self) -> dict[str, Any]:
        path = self.path
        return {
            "uri": str(self),
            "backend": self.backend.value,
            "host": self.host.to_json() if self.host is not None else None,
            "dataset": self.dataset,
            "path": str(path) if path is not None else None,
            "pool": self.pool,
            "snapshot": self.snapshot,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        """Rebuild from ``to_json()``; ``uri`` and ``pool`` are derived and not read."""
        try:
            backend = Backend(data["backend"])
        except ValueError:
            raise InvalidTarget(
                str(data.get("uri")), f"unknown backend {data['backend']!r}"
            ) from None
        name = data.get("dataset") or data.get("path") or ""
        host = data.get("host")
        return cls(
            backend=backend,
            name=name,
            snapshot=data.get("snapshot"),
            host=HostAddress.from_json(host) if host is not None else None,
        )


def _check_target(t: Target) -> None:
    if not isinstance(t.backend, Backend):
        raise _Refused(f"unknown backend {t.backend!r}")
    if t.host is not None and t.backend.is_sensed():
        raise _Refused("a remote target names its backend", _HINT_REMOTE)
    if not t.name:
        noun = {Backend.auto: "dataset or path", Backend.zfs: "dataset"}.get(t.backend, "path")
        if t.snapshot is not None:
            raise _Refused(f"snapshot {t.snapshot!r} has no {noun}")
        raise _Refused(f"no {noun}")
    if t.is_path:
        if t.backend.takes_dataset():
            dataset = t.name.lstrip("/")
            raise _Refused(
                "a ZFS dataset name does not start with '/'",
                f"write zfs://{dataset} for the local dataset {dataset!r}",
            )
        _check_path(t.name)
        if t.snapshot is not None:
            _check_snapshot(t.snapshot)
    else:
        if t.backend.takes_path():
            raise _Refused(
                f"{t.backend}:// takes an absolute path",
                f"write {t.backend}:///path, or {t.backend}://user@host:/path on another host",
            )
        _check_dataset(t.name, bare=t.backend.is_sensed())
        if t.snapshot is not None:
            _check_snapshot(t.snapshot)
        _check_zfs_length(t.name, t.snapshot)


def _render_target(t: Target) -> str:
    snap = f"@{t.snapshot}" if t.snapshot is not None else ""
    scheme = t.backend.scheme() if isinstance(t.backend, Backend) else str(t.backend)
    prefix = f"{scheme}://" if scheme is not None else ""
    if t.host is not None:  # (a remote auto target is refused; this text only names it)
        sep = "" if t.name.startswith("/") else "/"
        return f"{prefix}{t.host}:{sep}{t.name}{snap}"
    return f"{prefix}{t.name}{snap}"


def _split_snapshot(body: str) -> tuple[str, str | None]:
    if body.count("@") > 1:
        raise _Refused("more than one '@'", "a target names at most one snapshot")
    name, at, snapshot = body.partition("@")
    if not at:
        return name, None
    if not snapshot:
        raise _Refused("'@' is not followed by a snapshot name")
    if "/" in snapshot:
        _check_snapshot(snapshot)  # says what is wrong with it
    return name, snapshot


def _refuse_key(text: str, expected: str) -> None:
    m = _KEY.match(text)
    if m:
        raise _Refused(
            f"starts with the key {m.group(0)!r}",
            f"{expected}; give the value after '=' alone",
        )


def _parse_target(text: str) -> Target:
    _check_text(text, "empty target")
    if text.startswith("boot="):
        raise _Refused("a boot target is not a source or work target", "parse it with parse_boot")
    _refuse_key(text, "a key=value word is split by the command line")
    m = _SCHEME.fullmatch(text)
    if m is None:
        for scheme in ("zfs", "btrfs", "dir"):
            if text.startswith(f"{scheme}:"):
                raise _Refused(f"scheme '{scheme}:' is not followed by '//'")
        authority, body = _split_authority(text)
        if authority is not None:
            raise _Refused("a remote target names its backend", _HINT_REMOTE)
        name, snapshot = _split_snapshot(body)
        return Target(Backend.auto, name, snapshot)

    scheme, rest = m.group(1), m.group(2)
    if scheme not in ("zfs", "btrfs", "dir"):
        if scheme.lower() in ("zfs", "btrfs", "dir"):
            raise _Refused(f"scheme {scheme!r} is not lower case")
        raise _Refused(f"unknown scheme {scheme!r}", _HINT_SCHEMES)
    backend = Backend(scheme)
    if not rest:
        raise _Refused(f"nothing after '{scheme}://'")
    authority, body = _split_authority(rest)
    host = _parse_authority(authority) if authority is not None else None
    if backend is Backend.zfs:
        if host is not None:
            body = body[1:]  # the '/' of ':/' only separates the host
            if not body:
                raise _Refused("no dataset after the host")
        elif body.startswith("/dev/") and ":/" in body:
            raise _Refused(
                "names a disk and a dataset, which makes a boot target",
                f"give it as boot={text}",
            )
    name, snapshot = _split_snapshot(body)
    return Target(backend, name, snapshot, host)


def parse_target(text: str) -> Target:
    """Parse a source or work target; raise InvalidTarget naming what is wrong."""
    try:
        return _parse_target(text)
    except (_Refused, InvalidTarget) as e:
        raise InvalidTarget(text, e.reason, hint=e.hint) from None


# --- boot targets ----------------------------------------------------------------------------


def _check_device(device: str) -> None:
    if not device.startswith("/dev/"):
        raise _Refused(
            f"device {device!r} is not under /dev/",
            "name the disk like /dev/sda, /dev/nvme0n1 or /dev/disk/by-id/...",
        )
    for comp in _check_path(device, "device path component"):
        if comp.endswith(":"):
            raise _Refused(
                f"device path component {comp!r} ends with ':'",
                "':/' separates the device from the name after it",
            )


@dataclass(frozen=True, slots=True)
class BootTarget:
    """Where ``install`` puts a generation: a new disk (or, for ZFS, an existing pool).

    ``name`` is ``pool/dataset`` for ZFS (``usb/g1``) and a path inside the new file system
    for the others (``/g1``). ``device`` is None only for ZFS onto an existing pool.
    """

    fs: FsKind
    device: str | None
    name: str

    def __post_init__(self) -> None:
        try:
            _check_boot(self)
        except _Refused as e:
            raise InvalidTarget(_render_boot(self), e.reason, hint=e.hint) from None

    @classmethod
    def parse(cls, text: str) -> BootTarget:
        return parse_boot(text)

    @property
    def formats_disk(self) -> bool:
        """True when the install partitions and formats ``device``."""
        return self.device is not None

    @property
    def parts(self) -> tuple[str, ...]:
        return _split_name(self.name)

    @property
    def pool(self) -> str | None:
        return self.name.split("/", 1)[0] if self.fs.has_pools() else None

    @property
    def dataset(self) -> str | None:
        return self.name if self.fs.has_pools() else None

    @property
    def path(self) -> PurePosixPath | None:
        """The path inside the new file system; None for ZFS."""
        return None if self.fs.has_pools() else PurePosixPath(self.name)

    @property
    def generation(self) -> str:
        """The last component: the generation's name (``g1``)."""
        return self.name.rsplit("/", 1)[-1]

    def partition(self, number: int) -> str:
        """The device node of partition ``number`` on the disk: sda2, nvme0n1p2, ...-part2."""
        if self.device is None:
            raise ValueError(f"{self} names no disk")
        if number < 1:
            raise ValueError(f"partition numbers start at 1, not {number}")
        if self.device.startswith("/dev/disk/by-"):
            return f"{self.device}-part{number}"
        if self.device[-1] in string.digits:  # nvme0n1, mmcblk0, loop3
            return f"{self.device}p{number}"
        return f"{self.device}{number}"

    @property
    def argument(self) -> str:
        """The command-line word: ``boot=zfs:///dev/sda:/usb/g1``."""
        return f"boot={self}"

    def __str__(self) -> str:
        return _render_boot(self)

    def to_json(self) -> dict[str, Any]:
        path = self.path
        return {
            "uri": str(self),
            "fs": self.fs.value,
            "device": self.device,
            "pool": self.pool,
            "dataset": self.dataset,
            "path": str(path) if path is not None else None,
            "generation": self.generation,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BootTarget:
        """Rebuild from ``to_json()``; the derived keys are not read."""
        try:
            fs = FsKind(data["fs"])
        except ValueError:
            raise InvalidTarget(
                str(data.get("uri")), f"unknown file system {data['fs']!r}"
            ) from None
        name = data.get("dataset") or data.get("path") or ""
        return cls(fs=fs, device=data.get("device"), name=name)


def _check_boot(b: BootTarget) -> None:
    if not isinstance(b.fs, FsKind):
        raise _Refused(f"unknown file system {b.fs!r}", _HINT_FS)
    if b.device is None:
        if not b.fs.has_pools():
            raise _Refused(
                f"{b.fs} boot targets name a device",
                f"write {b.fs}:///dev/DISK:/PATH",
            )
    else:
        _check_device(b.device)
    if b.fs.has_pools():
        if not b.name:
            raise _Refused("no pool and dataset", "write zfs:///dev/DISK:/pool/dataset")
        if b.name.startswith("/"):
            raise _Refused(
                "a ZFS dataset name does not start with '/'",
                "the '/' of ':/' is already the separator; write zfs:///dev/DISK:/pool/dataset",
            )
        parts = _check_dataset(b.name, bare=False)
        _check_zfs_length(b.name, None)
        if len(parts) < 2:
            raise _Refused(
                f"names only the pool {parts[0]!r}",
                f"a ZFS boot target names a pool and a dataset below it, like {parts[0]}/g1",
            )
    else:
        if not b.name:
            raise _Refused("no path after the device", f"write {b.fs}:///dev/DISK:/g1")
        if not b.name.startswith("/"):
            raise _Refused(f"path {b.name!r} is not absolute")
        if not _check_path(b.name):
            raise _Refused(
                "names the top of the new file system",
                f"name a directory for the generation, like {b.fs}:///dev/DISK:/g1",
            )


def _render_boot(b: BootTarget) -> str:
    fs = b.fs.value if isinstance(b.fs, FsKind) else str(b.fs)
    if b.device is None:
        return f"{fs}://{b.name}"
    sep = "" if b.name.startswith("/") else "/"
    return f"{fs}://{b.device}:{sep}{b.name}"


def _parse_boot(text: str) -> BootTarget:
    _check_text(text, "empty boot target")
    if text.startswith("boot="):
        text = text[len("boot=") :]
        _check_text(text, "nothing after 'boot='")
    _refuse_key(text, "a boot target is given as boot=...")
    m = _SCHEME.fullmatch(text)
    if m is None:
        raise _Refused(
            "a boot target names its file system", f"{_HINT_FS}: zfs:///dev/DISK:/pool/g1"
        )
    scheme, rest = m.group(1), m.group(2)
    try:
        fs = FsKind(scheme)
    except ValueError:
        if scheme.lower() in FsKind.__members__:
            raise _Refused(f"scheme {scheme!r} is not lower case") from None
        raise _Refused(f"unknown file system {scheme!r}", _HINT_FS) from None
    if not rest:
        raise _Refused(f"nothing after '{scheme}://'")
    if not rest.startswith("/") and _split_authority(rest)[0] is not None:
        raise _Refused("a boot target is a disk on this machine; it takes no host")
    if "@" in rest:
        raise _Refused(
            "a boot target takes no snapshot", "the source target names the snapshot to install"
        )
    if not rest.startswith("/"):
        return BootTarget(fs, None, rest)
    i = rest.find(":/")
    if i < 0:
        what = "pool/dataset" if fs.has_pools() else "path"
        raise _Refused(
            f"no {what.replace('/', ' and ')} after the device {rest!r}",
            f"write {fs}://{rest}:/{'pool/g1' if fs.has_pools() else 'g1'}",
        )
    device, name = rest[:i], rest[i + 1 :]
    if fs.has_pools():
        name = name[1:]  # the '/' of ':/' only separates the device
    return BootTarget(fs, device, name)


def parse_boot(text: str) -> BootTarget:
    """Parse a boot target, ``boot=zfs:///dev/sda:/usb/g1`` with or without ``boot=``."""
    try:
        return _parse_boot(text)
    except (_Refused, InvalidTarget) as e:
        raise InvalidTarget(text, e.reason, hint=e.hint) from None


def parse_any(text: str) -> Target | BootTarget:
    """A ``boot=...`` word as a BootTarget, anything else as a Target (for ``g2d uri``)."""
    return parse_boot(text) if text.startswith("boot=") else parse_target(text)
