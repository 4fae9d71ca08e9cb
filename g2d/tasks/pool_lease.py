"""A lease on one slot of a Prefect global concurrency limit, asked for without the 2 s wait.

A Prefect server on SQLite answers a slot request that meets its own writer (the events and
logs a running flow sends) with ``503 database is locked``; Prefect's client waits 2 s before
asking again. Measured here: about one lineage change in two paid those 2 s, a deploy's four
changes 4-8 s. ``acquire_lease`` sends the same requests as ``prefect.concurrency.sync.
concurrency(strict=True)`` (``increment-with-lease``, then ``renew`` while held, then
``decrement-with-lease``) and asks again after 50-400 ms on a 503. A 423 (the slot is taken)
waits as the server's ``Retry-After`` says, within the caller's wait.

The first try of each request goes out through the Prefect client's httpx client without its
retrying ``send``; any answer but 200/204, 423 or 503 (CSRF, auth, an error) is asked again
through the Prefect client itself, with its own retries and errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client

log = logging.getLogger(__name__)

INCREMENT = "/v2/concurrency_limits/increment-with-lease"
DECREMENT = "/v2/concurrency_limits/decrement-with-lease"
BUSY_PAUSES = (0.05, 0.1, 0.2, 0.4)  # after a 503, then 0.4 s on


class LeaseTimeout(TimeoutError):
    """The slot stayed taken for longer than the caller would wait."""


class LimitMissing(LookupError):
    """The server knows no limit of that name (strict: never run unguarded)."""


def _post(client: SyncPrefectClient, path: str, body: dict[str, Any]) -> httpx.Response:
    http = getattr(client, "_client", None)  # Prefect's httpx.Client (its send retries)
    if isinstance(http, httpx.Client):
        response = httpx.Client.send(http, http.build_request("POST", path, json=body))
        if response.status_code in (200, 204, 423, 503):
            return response
    try:
        return client.request("POST", path, json=body)  # type: ignore[arg-type]
    except httpx.HTTPStatusError as e:
        if e.response.status_code in (423, 503):
            return e.response
        raise


def _ask(client: SyncPrefectClient, path: str, body: dict[str, Any], deadline: float | None,
         ) -> httpx.Response:  # fmt: skip
    """POST until the answer is not 503 (or 423); LeaseTimeout after ``deadline``."""
    tries = 0
    while True:
        response = _post(client, path, body)
        if response.status_code not in (423, 503):
            response.raise_for_status()
            return response
        if response.status_code == 503:
            pause = BUSY_PAUSES[min(tries, len(BUSY_PAUSES) - 1)]
        else:
            pause = float(response.headers.get("Retry-After") or 1.0)
        tries += 1
        if deadline is not None and time.monotonic() + pause > deadline:
            raise LeaseTimeout(f"{path}: still {response.status_code} after {tries} tries")
        time.sleep(pause)


def acquire_lease(client: SyncPrefectClient, name: str, lease_seconds: float,
                  wait: float | None = None) -> UUID:  # fmt: skip
    """A lease on one slot of ``name``; wait at most ``wait`` seconds (None: as long as it
    takes) for a taken slot, else LeaseTimeout."""
    deadline = None if wait is None else time.monotonic() + wait
    body = {"names": [name], "slots": 1, "mode": "concurrency", "lease_duration": lease_seconds}
    answer = _ask(client, INCREMENT, body, deadline).json()
    if not answer.get("limits"):
        raise LimitMissing(f"no concurrency limit named {name}")
    return UUID(answer["lease_id"])


def release_lease(client: SyncPrefectClient, lease: UUID) -> None:
    _ask(client, DECREMENT, {"lease_id": str(lease)}, time.monotonic() + 60)


@contextmanager
def renewing(lease: UUID, lease_seconds: float) -> Iterator[None]:
    """Renew ``lease`` every third of its duration while the body runs (a replication may
    take hours). A failed renewal is logged; the pool's flock still keeps this host's other
    writers out."""
    stop = threading.Event()

    def renew() -> None:
        with get_client(sync_client=True) as client:
            while not stop.wait(lease_seconds / 3):
                try:
                    client.renew_concurrency_lease(lease, lease_seconds)
                except Exception as e:  # the run goes on; say why its slot may lapse
                    log.warning("could not renew the pool's concurrency lease %s: %s", lease, e)

    worker = threading.Thread(target=renew, name=f"g2d-lease-{lease}", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=30)
