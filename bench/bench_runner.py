"""The command runner and local pipelines against plain subprocess and a shell pipe."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from bench.common import Comparison, compare
from g2d.hosts.local import LocalHost
from g2d.hosts.pipeline import Stage, run_pipeline

GIB = 1 << 30


def main() -> list[Comparison]:
    logging.getLogger("g2d").setLevel(logging.WARNING)  # measure the work, not the console
    host = LocalHost()

    def runner_200() -> None:
        for _ in range(200):
            host.run(["true"])

    def subprocess_200() -> None:
        for _ in range(200):
            subprocess.run(["true"], check=True, capture_output=True)

    def g2d_pipe() -> None:
        run_pipeline(
            [Stage.of(host, ["head", "-c", str(GIB), "/dev/zero"]), Stage.of(host, ["cat"])],
            stdout=Path("/dev/null"),
        )

    def shell_pipe() -> None:
        subprocess.run(["sh", "-c", f"head -c {GIB} /dev/zero | cat > /dev/null"], check=True)

    return [
        compare("200 x true: runner vs subprocess.run", runner_200, subprocess_200),
        compare("1 GiB local pipeline vs sh 'cat | cat'", g2d_pipe, shell_pipe, target=0.9),
    ]
