"""g2d talks to 127.0.0.1 and its configured hosts only: Prefect's telemetry is off as soon
as g2d is imported, unless the user set the variables themselves."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import g2d, os\n"
    "from prefect._internal.analytics.enabled import is_telemetry_enabled\n"
    "from prefect.settings import get_current_settings\n"
    "print(os.environ['DO_NOT_TRACK'], is_telemetry_enabled(),"
    " get_current_settings().server.analytics_enabled)\n"
)


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "CI")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout


def test_importing_g2d_turns_prefect_telemetry_off() -> None:
    assert _probe() == "1 False False\n"


def test_a_users_own_setting_is_kept() -> None:
    assert _probe(DO_NOT_TRACK="0") == "0 True False\n"
