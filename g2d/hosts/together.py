"""Commands that only read, run at the same time on one host.

Over ssh every command is a round trip (and, on many hosts, a login shell): two reads
started together cost one. Each command runs in its own thread with a copy of the
caller's context, so its log lines reach the same Prefect run as the caller's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from g2d.hosts.base import Argv, Host
from g2d.hosts.runner import Completed


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
