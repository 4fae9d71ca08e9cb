"""Asking zfs-fuse again while it calls a dataset or pool busy.

zfs-fuse lets go of a dataset late (a moment to seconds after its last reader or a big
write) and refuses an unmount, destroy or export meanwhile with "... is busy"; a person at
the prompt would simply run the command again. Anything else fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from g2d.core.errors import CommandFailed

log = logging.getLogger("g2d.storage")
T = TypeVar("T")


def waits(seconds: float, every: float = 0.2) -> tuple[float, ...]:
    """Pauses of ``every`` seconds adding up to ``seconds``."""
    return (every,) * round(seconds / every)


def while_busy(call: Callable[[], T], pauses: Sequence[float], what: str) -> T:
    """``call()``, asked again after each pause while it fails with "is busy"."""
    for pause in (*pauses, None):
        try:
            return call()
        except CommandFailed as e:
            if pause is None or "is busy" not in e.tail:
                raise
            log.info("%s: busy, trying again in %g s", what, pause)
            time.sleep(pause)
    raise AssertionError("unreachable: the last try raises or returns")
