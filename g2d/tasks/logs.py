"""Send g2d's own loggers (commands, their output) to the Prefect run log.

The layers below ``tasks`` never import Prefect; they log to ``logging.getLogger("g2d...")``.
Prefect forwards the loggers named in PREFECT_LOGGING_EXTRA_LOGGERS to the API by giving
them the handlers of its ``prefect.extra`` logger; g2d does the same for ``g2d`` so that
no user setting is needed. Records logged outside a run are not sent (no run context).
"""

from __future__ import annotations

import logging

from prefect.logging.configuration import setup_logging
from prefect.logging.handlers import APILogHandler


class _RunOnlyAPIHandler(logging.Filter):
    """Drop records that have no run to belong to, instead of warning about each one."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return bool(
            getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get()
        )


def forward_g2d_logs() -> None:
    """Idempotent: attach Prefect's API handlers to the ``g2d`` logger once."""
    g2d_logger = logging.getLogger("g2d")
    if any(getattr(h, "_g2d_forwarded", False) for h in g2d_logger.handlers):
        return
    extra = logging.getLogger("prefect.extra")
    if not extra.handlers:
        setup_logging()
    for handler in extra.handlers:
        if isinstance(handler, APILogHandler):
            handler.addFilter(_RunOnlyAPIHandler())
        handler._g2d_forwarded = True  # type: ignore[attr-defined]
        g2d_logger.addHandler(handler)
    if g2d_logger.level == logging.NOTSET:
        g2d_logger.setLevel(logging.INFO)
