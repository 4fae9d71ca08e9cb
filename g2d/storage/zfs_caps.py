"""What this host's ZFS can do, asked of the real ``zfs``/``zpool`` commands.

Options are probed the way zfs_autobackup does it: run the command with the option on a
dataset that does not exist and read the error. An option the tool lacks fails with
"invalid option"; one it knows gets as far as looking the dataset up. Nothing is assumed
from a version number: zfs-fuse (pool version 23) and OpenZFS 2.x differ in dozens of
places (research/lineage-anchors.md §5.1).

Probing costs a dozen commands, each a round trip over ssh, so the result is kept: in
memory for the process, and on disk in ``<state_dir>/caps/zfs-<host>.json`` for the next
one. A kept result is used only while the tool answers ``zfs version`` exactly as it did
when it was probed (one command): OpenZFS prints its userland and kernel module versions;
zfs-fuse and other pre-2.0 ZFS have no such command and print their usage instead, the
list of commands and options, which changes with the tool. Anything else re-probes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from g2d.core.errors import G2dUserError
from g2d.hosts.base import Host
from g2d.storage.base import Caps

log = logging.getLogger("g2d.storage.zfs")

PROBE = "g2d-no-such-pool/probe"  # never exists: pool names from g2d's lab have a token
_PROPERTY_ROW = re.compile(r"^\s+(\S+)\s+(?:YES|NO)\s+(?:YES|NO)\s+(.*)$")
_POOL_VERSION = re.compile(r"ZFS pool version (\d+)")


def _refused(host: Host, argv: list[str]) -> bool:
    """True if zfs rejects the command's syntax (an unknown option or verb)."""
    done = host.run(argv, stdin=b"", check=False)
    text = done.stderr
    return "invalid option" in text or "unrecognized command" in text or "too many arg" in text


def _knows(host: Host, argv: list[str]) -> bool:
    return not _refused(host, argv)


def property_table(host: Host) -> dict[str, str]:
    """Property -> allowed values, from the table ``zfs get`` prints with its usage."""
    done = host.run(["zfs", "get"], check=False)  # no arguments: usage and property table
    table = {}
    for line in done.stderr.splitlines():
        if m := _PROPERTY_ROW.match(line):
            table[m.group(1)] = m.group(2).strip()
    return table


def compression_algorithms(values: str) -> tuple[str, ...]:
    """``on | off | lzjb | gzip | gzip-[1-9] | zle | lz4`` -> ("lzjb", "gzip", "zle", "lz4")."""
    words = [w.strip() for w in values.split("|")]
    return tuple(w for w in words if w and w not in ("on", "off") and "[" not in w)


def version_text(host: Host) -> tuple[str, str]:
    """(version text, pool version): ``zfs version`` where it exists (OpenZFS), else the
    pool version that ``zpool upgrade -v`` reports (zfs-fuse and other pre-2.0 ZFS)."""
    upgrade = host.run(["zpool", "upgrade", "-v"], check=False).stdout
    if "feature flags" in upgrade:
        pool_version = "5000"  # feature flags
    else:
        m = _POOL_VERSION.search(upgrade)
        pool_version = m.group(1) if m else "unknown"
    done = host.run(["zfs", "version"], check=False)
    if done.ok and done.stdout.strip():
        return done.lines()[0].strip(), pool_version
    return f"zfs pool version {pool_version} (no 'zfs version')", pool_version


_probed: dict[tuple[type, str], Caps] = {}
CACHE_FORMAT = 1


def probe_caps(host: Host, *, cache_dir: Path | None = None) -> Caps:
    """The host's caps: probed once per host (by name) and process, and kept in
    ``cache_dir`` (default ``<state_dir>/caps``) while ``zfs version`` answers the same."""
    key = (type(host), host.name)
    if key not in _probed:
        _probed[key] = cached_caps(host, cache_dir or default_cache_dir())
    return _probed[key]


def forget_caps() -> None:
    """Drop what this process probed (tests: the next call reads the disk cache)."""
    _probed.clear()


def default_cache_dir() -> Path | None:
    from g2d.settings import load_settings

    try:
        return load_settings().state_dir / "caps"
    except G2dUserError as e:  # unusable settings: probe every time rather than fail here
        log.debug("no caps cache: %s", e)
        return None


def tool_fingerprint(host: Host) -> str:
    """A digest of what ``zfs version`` answers (exit code and both streams)."""
    done = host.run(["zfs", "version"], check=False)
    text = f"{done.returncode}\n{done.stdout.strip()}\n{done.stderr.strip()}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: Path, host: Host) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.@:-]", "_", host.name)
    return cache_dir / f"zfs-{safe}.json"


def cached_caps(host: Host, cache_dir: Path | None) -> Caps:
    """Caps from ``cache_dir`` if they were probed from the tool that answers now; else
    probed, and written there."""
    if cache_dir is None:
        return _probe(host)
    fingerprint = tool_fingerprint(host)
    path = cache_path(cache_dir, host)
    try:
        kept = json.loads(path.read_text())
        if kept.get("format") == CACHE_FORMAT and kept.get("fingerprint") == fingerprint:
            return caps_from_json(kept["caps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: probe
    caps = _probe(host)
    entry = {"format": CACHE_FORMAT, "host": host.name, "fingerprint": fingerprint,
             "caps": caps.to_json()}  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, indent=1))
        os.replace(tmp, path)
    except OSError as e:  # a read-only state dir costs a probe per process, nothing more
        log.debug("cannot keep the caps of %s in %s: %s", host.name, path, e)
    return caps


def caps_from_json(data: dict[str, object]) -> Caps:
    fields = dict(data)
    fields["compression"] = tuple(fields.get("compression") or ())  # type: ignore[arg-type]
    return Caps(**fields)  # type: ignore[arg-type]


def _probe(host: Host) -> Caps:
    snap = f"{PROBE}@probe"
    holds = host.run(["zfs", "holds", snap], check=False)
    table = property_table(host)
    version, pool_version = version_text(host)
    return Caps(
        version=version,
        resumable_send=_knows(host, ["zfs", "send", "-t", "g2d-probe-token"])
        and _knows(host, ["zfs", "receive", "-s", PROBE]),
        raw_send=_knows(host, ["zfs", "send", "-w", snap]),
        bookmarks=_knows(host, ["zfs", "bookmark", snap, f"{PROBE}#probe"]),
        encryption="encryption" in table,
        compression=compression_algorithms(table.get("compression", "")),
        # zfs-fuse: `zfs holds` dies on a missing Python helper; a working one looks up the
        # snapshot and says it does not exist
        list_holds="does not exist" in holds.stderr + holds.stdout,
        # OpenZFS takes several names in one (atomic) `zfs snapshot`; zfs-fuse only `-r`
        atomic_snapshots=_knows(host, ["zfs", "snapshot", snap, f"{PROBE}2@probe"]),
        incremental_send=True,
        extra={
            "pool_version": pool_version,
            "list_parsable": _knows(host, ["zfs", "list", "-p", "-H", "-o", "name", PROBE]),
            "snapshot_props": _knows(host, ["zfs", "snapshot", "-o", "g2d:probe=1", snap]),
            "send_props": _knows(host, ["zfs", "send", "-p", snap]),
            "recv_exclude": _knows(host, ["zfs", "receive", "-x", "mountpoint", PROBE]),
            "clones_property": "clones" in table,
            # zfs-fuse (pre-feature-flag ZFS through FUSE) releases an unmounted dataset
            # late: a destroy right after an unmount can fail "dataset is busy"
            "late_release": pool_version != "5000",
        },
    )
