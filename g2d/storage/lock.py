"""One writer per pool: an flock on ``<state_dir>/locks/pool:<host>:<pool>.lock``.

The kernel drops an flock when its holder dies, so a crashed writer never leaves a stale
lock. The holder writes its pid and purpose into the file, and a second writer's error
names them. This works without Prefect; the Prefect layer adds its global concurrency
limit ``pool:<host>:<pool>`` on top. The lock lives on the machine g2d runs on, so it
excludes the writers started from this machine (for remote pools too).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from g2d.core.errors import G2dUserError

_POLL = 0.05  # seconds between tries while waiting


class PoolLocked(G2dUserError):
    """Another writer holds the pool's lock."""

    def __init__(self, host: str, pool: str, holder: str, waited: float) -> None:
        after = f" (still after {waited:g} s)" if waited > 0 else ""
        super().__init__(
            f"pool {pool} on {host} is locked by another g2d writer: {holder}{after}",
            hint="wait for it to finish, or pass --wait SECONDS",
        )
        self.host, self.pool, self.holder, self.waited = host, pool, holder, waited


def lock_path(state_dir: Path, host: str, pool: str) -> Path:
    """``pool:<host>:<pool>.lock``; '/' and ':' inside names are %-quoted."""
    safe = "@.+-_"
    return state_dir / "locks" / f"pool:{quote(host, safe=safe)}:{quote(pool, safe=safe)}.lock"


def read_holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    return text or "pid unknown"


@contextmanager
def pool_lock(
    state_dir: Path, host: str, pool: str, *, purpose: str = "", wait: float = 0.0
) -> Iterator[Path]:
    """Hold the pool's lock for the ``with`` body; raise PoolLocked after ``wait`` seconds."""
    path = lock_path(state_dir, host, pool)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolLocked(host, pool, read_holder(path), wait) from None
                time.sleep(min(_POLL, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {purpose}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock
