"""How healthy each mirror is, measured and remembered between runs; trying mirrors in turn.

``probe`` fetches one small file a mirror of that resource carries (``core.mirrors.
probe_path``): that it arrives says the mirror is reachable, how long it took is its latency,
and the time it states is its freshness. rsync URLs are probed with rsync itself, the others
through the same transports the downloads use. ``HealthStore`` keeps the last measurement
per URL in ``<state_dir>/mirror-health.json``. ``first_working`` tries ranked mirrors in
order: a transfer error (or a mirror that is behind) moves on to the next one; a
verification error is raised at once, since another mirror's bytes would not make a bad
signature good and the user must see it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from g2d.core.mirrors import BadTimestamp, Health, Resource, freshness_of, join, probe_path
from g2d.hosts.ssh import SshHost
from g2d.sources.errors import MirrorBehind, NoTransport, TransferError, is_retryable
from g2d.sources.rsync import CONNECT_TIMEOUT, RsyncSource, run_rsync
from g2d.sources.transports import Transports

log = logging.getLogger("g2d.sources")

T = TypeVar("T")
HEALTH_FILE = "mirror-health.json"
PROBE_LIMIT = 4 << 20  # the most a probe file may weigh (a binhost Packages index is large)


class AllMirrorsFailed(TransferError):
    """Every mirror was tried and none delivered; each one's error is listed."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        listed = "; ".join(errors.values())  # each error names its URL
        super().__init__(f"{len(errors)} mirror(s)", listed, hint="retry later, or add a mirror")
        self.args = (dict(errors),)
        self.errors = dict(errors)

    def __str__(self) -> str:
        return f"no mirror worked: {self.reason}"


class HealthStore:
    """The last measurement of each mirror URL, in one JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> HealthStore:
        return cls(state_dir / HEALTH_FILE)

    def load(self) -> dict[str, Health]:
        try:
            data = json.loads(self.path.read_text())
            return {url: Health.from_json(h) for url, h in data.get("mirrors", {}).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as e:  # damaged: measure again, say so
            log.warning("%s: unreadable (%s); mirror health starts afresh", self.path, e)
            return {}

    def record(self, healths: Iterable[Health]) -> None:
        """Merge these measurements in; concurrent writers each keep theirs (flock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = self.load()
            merged.update({h.url: h for h in healths})
            data = {"version": 1, "mirrors": {u: h.to_json() for u, h in sorted(merged.items())}}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
            os.replace(tmp, self.path)


def now_utc() -> datetime:
    return datetime.now(UTC)


def probe(
    url: str,
    resource: Resource | str,
    *,
    arch: str = "amd64",
    ssh_hosts: Sequence[SshHost] = (),
    timeout: float = float(CONNECT_TIMEOUT),
) -> Health:
    """One measurement of ``url``; never raises for a mirror that is down, records it."""
    resource = Resource(resource)
    relative = probe_path(resource, arch)
    target = join(url, relative) if relative else url
    checked = now_utc()
    started = time.monotonic()
    try:
        text = _read(url, relative, ssh_hosts, timeout)
        latency = time.monotonic() - started
        fresh = freshness_of(resource, text, target) if relative else None
    except (TransferError, NoTransport, BadTimestamp) as e:
        return Health(url, checked, reachable=False, error=str(e))
    return Health(url, checked, reachable=True, latency=latency, fresh_as_of=fresh)


def probe_all(
    urls: Sequence[str],
    resource: Resource | str,
    *,
    store: HealthStore | None = None,
    arch: str = "amd64",
    ssh_hosts: Sequence[SshHost] = (),
    timeout: float = float(CONNECT_TIMEOUT),
) -> list[Health]:
    """Probe every URL at once (threads: each waits on the network), and remember them."""
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        found = list(
            pool.map(
                lambda u: probe(u, resource, arch=arch, ssh_hosts=ssh_hosts, timeout=timeout),
                urls,
            )
        )
    if store is not None:
        store.record(found)
    return found


def _read(url: str, relative: str, ssh_hosts: Sequence[SshHost], timeout: float) -> str:
    scheme = urlsplit(url).scheme
    if scheme == "rsync":
        return _rsync_read(url, relative, timeout)
    transports = Transports(ssh_hosts, timeout=timeout)
    if not relative:
        return "\n".join(transports.listdir(url))
    data = transports.read_all(join(url, relative), PROBE_LIMIT)
    return data.decode("utf-8", errors="replace")


def _rsync_read(url: str, relative: str, timeout: float) -> str:
    source = RsyncSource.of(url)
    io = f"--timeout={max(1, round(timeout))}"
    if not relative:  # the module or directory itself: that it lists is enough
        return run_rsync(
            [*source.options, io, "--list-only", source.arg.rstrip("/") + "/"], url, timeout=timeout
        )
    with tempfile.TemporaryDirectory(prefix="g2d-probe-") as tmp:
        local = Path(tmp, "probe")
        run_rsync(
            [*source.options, io, source.under(relative), os.fspath(local)], url, timeout=timeout
        )
        if local.stat().st_size > PROBE_LIMIT:
            raise TransferError(url, f"{relative} is larger than {PROBE_LIMIT} bytes")
        return local.read_text(errors="replace")


def first_working(
    urls: Sequence[str],
    attempt: Callable[[str], T],
    *,
    store: HealthStore | None = None,
) -> T:
    """``attempt(url)`` for each URL in order until one returns. A transfer error (or a
    mirror behind ours) is recorded and the next URL tried; anything else, a verification
    error above all, is raised at once. ``AllMirrorsFailed`` lists every URL's error."""
    errors: dict[str, str] = {}
    for url in urls:
        started, checked = time.monotonic(), now_utc()
        try:
            result = attempt(url)
        except MirrorBehind as e:
            errors[url] = str(e)
            _remember(store, Health(url, checked, reachable=True, error=str(e)))
            continue
        except Exception as e:
            if not (is_retryable(e) or isinstance(e, NoTransport)):
                raise
            log.warning("%s; trying the next mirror", e)
            errors[url] = str(e)
            _remember(store, Health(url, checked, reachable=False, error=str(e)))
            continue
        _remember(store, _succeeded(store, url, checked, time.monotonic() - started))
        return result
    raise AllMirrorsFailed(errors)


def _succeeded(store: HealthStore | None, url: str, checked: datetime, took: float) -> Health:
    # keep the probe's latency and freshness: a whole transfer's time is not a latency
    before = store.load().get(url) if store else None
    if before is not None and before.reachable:
        return Health(url, checked, True, before.latency, before.fresh_as_of)
    return Health(url, checked, reachable=True, latency=took)


def _remember(store: HealthStore | None, health: Health) -> None:
    if store is not None:
        store.record([health])
