"""pool_lease against a stand-in Prefect API on 127.0.0.1 that answers as told.

A stand-in, because what it plays cannot be produced on demand: a Prefect server on SQLite
answering ``503 database is locked`` when a slot request meets its event writer, and a slot
another writer holds for as long as the test needs (tests/flows/test_pool_writer.py holds a
real one on the real server)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient

from g2d.tasks import pool_lease
from g2d.tasks.pool_lease import LeaseTimeout, LimitMissing, acquire_lease, release_lease

LEASE = str(uuid.uuid4())
GRANTED = {"lease_id": LEASE, "limits": [{"id": str(uuid.uuid4()), "name": "pool:l:p", "limit": 1}]}


class StandIn:
    """Answers POSTs from a script of (status, headers, body); records what it was asked."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], object]] = []
        self.asked: list[tuple[str, object]] = []


@pytest.fixture
def api() -> Iterator[tuple[StandIn, SyncPrefectClient]]:
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            stand_in.asked.append((self.path, json.loads(self.rfile.read(length) or b"null")))
            status, headers, body = stand_in.script.pop(0)
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            # what a real server with CSRF protection off answers Prefect's client
            data = json.dumps({"detail": "CSRF protection is disabled."}).encode()
            self.send_response(422)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = SyncPrefectClient(f"http://127.0.0.1:{server.server_port}/api")
    try:
        with client:
            yield stand_in, client
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(pool_lease.time, "sleep", slept.append)
    return slept


BUSY = (503, {}, {"exception_message": "Service Unavailable"})


def test_a_busy_server_is_asked_again_after_milliseconds_not_seconds(api, pauses) -> None:
    stand_in, client = api
    stand_in.script = [BUSY, BUSY, BUSY, (200, {}, GRANTED)]
    assert acquire_lease(client, "pool:l:p", 300, wait=10) == uuid.UUID(LEASE)
    assert pauses == [0.05, 0.1, 0.2]  # Prefect's own client waits 2 s after each
    body = {"names": ["pool:l:p"], "slots": 1, "mode": "concurrency", "lease_duration": 300}
    assert stand_in.asked == [("/api/v2/concurrency_limits/increment-with-lease", body)] * 4


def test_a_taken_slot_waits_as_the_server_says_then_times_out(api, pauses) -> None:
    stand_in, client = api
    taken = (423, {"Retry-After": "3"}, {"detail": "locked"})
    stand_in.script = [taken, taken, (200, {}, GRANTED)]
    assert acquire_lease(client, "pool:l:p", 300, wait=None) == uuid.UUID(LEASE)
    assert pauses == [3.0, 3.0]
    stand_in.script = [taken]
    with pytest.raises(LeaseTimeout, match="still 423 after 1 tries"):
        acquire_lease(client, "pool:l:p", 300, wait=2)


def test_a_missing_limit_is_an_error_not_a_run_without_a_guard(api, pauses) -> None:
    stand_in, client = api
    stand_in.script = [(200, {}, {"lease_id": LEASE, "limits": []})]
    with pytest.raises(LimitMissing, match="no concurrency limit named pool:l:p"):
        acquire_lease(client, "pool:l:p", 300)


def test_another_error_goes_through_prefects_client_and_is_raised(api, pauses) -> None:
    stand_in, client = api
    stand_in.script = [(500, {}, {"exception_message": "Internal Server Error"})] * 2
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        acquire_lease(client, "pool:l:p", 300)
    assert len(stand_in.asked) == 2  # the quick try, then Prefect's client once (no retry)


def test_release_is_asked_again_while_busy(api, pauses) -> None:
    stand_in, client = api
    stand_in.script = [BUSY, (204, {}, None)]
    release_lease(client, uuid.UUID(LEASE))
    assert stand_in.asked == [("/api/v2/concurrency_limits/decrement-with-lease",
                               {"lease_id": LEASE})] * 2  # fmt: skip
    assert pauses == [0.05]


def test_a_held_lease_is_renewed_until_the_body_ends(api, monkeypatch) -> None:
    stand_in, client = api
    stand_in.script = [(204, {}, None)] * 50
    monkeypatch.setattr(pool_lease, "get_client", lambda sync_client: client)
    renewed = threading.Event()
    with pool_lease.renewing(uuid.UUID(LEASE), 0.15):  # a renewal every 50 ms
        for _ in range(200):  # at most 10 s
            if len(stand_in.asked) >= 2:
                break
            renewed.wait(0.05)
    count = len(stand_in.asked)
    assert count >= 2
    renewed.wait(0.3)  # none after the body
    assert len(stand_in.asked) == count
    path = f"/api/v2/concurrency_limits/leases/{LEASE}/renew"
    assert stand_in.asked == [(path, {"lease_duration": 0.15})] * count
