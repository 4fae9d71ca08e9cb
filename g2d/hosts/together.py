"""Reads run at the same time: commands on one host (``run_together``), or one read
beside the caller's own work (``beside``).

Over ssh every command is a round trip (and, on many hosts, a login shell): two reads
started together cost one. Each runs in its own thread with a copy of the caller's
context, so its log lines reach the same Prefect run as the caller's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from g2d.hosts.base import Argv, Host
from g2d.hosts.runner import Completed

T = TypeVar("T")


def run_together(host: Host, argvs: Sequence[Argv], *, check: bool = False) -> list[Completed]:
    """``host.run(argv, check=check)`` for each of ``argvs``, all started at once; the
    results in the order given. Only for commands no other of them depends on."""
    if len(argvs) < 2:
        return [host.run(a, check=check) for a in argvs]
    with ThreadPoolExecutor(max_workers=len(argvs), thread_name_prefix="g2d-read") as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, host.run, a, check=check) for a in argvs
        ]
        return [f.result() for f in futures]


@contextmanager
def beside(fn: Callable[..., T], *args: object) -> Iterator[Future[T]]:
    """``fn(*args)`` started in a thread while the block runs (its result through the
    future); the thread is waited for when the block ends."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="g2d-beside") as pool:
        yield pool.submit(contextvars.copy_context().run, fn, *args)
