"""One writer per pool, across every process that talks to the Prefect server.

``pool_writer(host, pool)`` holds a slot of the global concurrency limit
``pool:<host>:<pool>`` (limit 1) for the ``with`` body. It creates the limit when it is
missing and takes a lease on its slot as ``concurrency(strict=True)`` would (without
``strict`` a missing limit only logs a warning and guards nothing), through
``pool_lease``, which does not wait 2 s each time a server on SQLite is busy. g2d's own
``pool_lock`` (an flock, taken inside by ``LineageWriter``) stays underneath: it also
excludes writers started without Prefect.

Prefect refuses ``/ % & < >`` in limit names, so other characters than letters, digits and
``@.+-_:`` are written ``~XX`` (UTF-8 bytes in hex): ``/srv/roots`` becomes
``~2Fsrv~2Froots``.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from g2d.core.errors import G2dUserError
from g2d.tasks.pool_lease import LeaseTimeout, acquire_lease, release_lease, renewing

POOL_LIMIT = 1  # one writer per pool
LEASE_SECONDS = 300  # renewed in the background while the writer runs, so hours are fine
_KEEP = frozenset(string.ascii_letters + string.digits + "@.+-_:")


class PoolBusy(G2dUserError):
    """Another writer held the pool's concurrency slot for longer than we would wait."""

    def __init__(self, host: str, pool: str, limit: str, waited: float) -> None:
        super().__init__(
            f"pool {pool} on {host} is busy: another flow run holds {limit} "
            f"(still after {waited:g} s)",
            hint="wait for that run to finish, or pass a longer wait",
        )
        self.host, self.pool, self.limit, self.waited = host, pool, limit, waited


def _escape(text: str) -> str:
    return "".join(c if c in _KEEP else "".join(f"~{b:02X}" for b in c.encode()) for c in text)


def pool_limit_name(host: str, pool: str) -> str:
    """``pool:<host>:<pool>``, escaped for Prefect's limit names."""
    return f"pool:{_escape(host)}:{_escape(pool)}"


def ensure_pool_limit(
    name: str, client: SyncPrefectClient | None = None, limit: int = POOL_LIMIT
) -> bool:
    """Create the global concurrency limit ``name`` unless it exists; True if created.
    An existing limit is left as the site configured it."""
    with ExitStack() as opened:
        if client is None:
            client = opened.enter_context(get_client(sync_client=True))
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit)
            )
        except ObjectAlreadyExists:  # another writer created it between read and create
            return False
        return True


@contextmanager
def pool_writer(host: str, pool: str, *, wait: float | None = None) -> Iterator[str]:
    """Hold ``pool:<host>:<pool>`` for the body; wait at most ``wait`` seconds for it
    (None: as long as it takes), then raise PoolBusy. Yields the limit's name."""
    name = pool_limit_name(host, pool)
    with get_client(sync_client=True) as client:
        ensure_pool_limit(name, client)
        try:
            lease = acquire_lease(client, name, LEASE_SECONDS, wait)
        except LeaseTimeout:
            raise PoolBusy(host, pool, name, wait or 0.0) from None
        try:
            with renewing(lease, LEASE_SECONDS):
                yield name
        finally:
            release_lease(client, lease)
