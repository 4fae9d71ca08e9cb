"""Run every benchmark module (bench/bench_*.py) and print g2d/baseline ratios side by side.

``python -m bench [name ...]`` runs the named modules only (e.g. ``runner``). Results are
also written to bench/results/latest.json. Exit status is 0: a ratio below its target is
reported, never asserted (speed is not a test).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import bench
from bench.common import HEADER, Comparison


def modules(wanted: list[str]) -> list[str]:
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_")
    )
    return [n for n in names if not wanted or n in wanted]


def main(argv: list[str]) -> int:
    results: list[Comparison] = []
    print(HEADER)
    for name in modules(argv):
        module = importlib.import_module(f"bench.bench_{name}")
        found = module.main()
        # a module may return its comparisons, or a dict of numbers holding them
        items = found["comparisons"] if isinstance(found, dict) else found
        for c in items:
            if isinstance(c, Comparison):
                results.append(c)
                print(c.row(), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps([c.to_json() for c in results], indent=2))
    below = [c.name for c in results if c.meets_target is False]
    if below:
        print(f"\n{len(below)} below target: {', '.join(below)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
