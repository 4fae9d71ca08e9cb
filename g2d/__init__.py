"""g2d: a Gentoo distribution server (dom0) and the machines it feeds, as Prefect flows."""

import os

# g2d talks to its own mirrors and hosts only: no usage telemetry from the Prefect server or
# client it starts (a test harness's server would otherwise try to reach an outside address)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
