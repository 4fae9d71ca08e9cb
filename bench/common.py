"""Side-by-side measurement: g2d against the baseline, same inputs, one run, as ratios."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    name: str
    g2d_s: float
    baseline_s: float
    target: float | None = None  # minimum speed ratio (baseline time / g2d time) asked for

    @property
    def ratio(self) -> float:
        """Speed of g2d relative to the baseline: 1.0 is as fast, above 1 faster."""
        return self.baseline_s / self.g2d_s if self.g2d_s > 0 else float("inf")

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target

    def row(self) -> str:
        verdict = {None: "", True: "ok", False: "BELOW TARGET"}[self.meets_target]
        target = f">= {self.target:.2f}" if self.target is not None else ""
        return (
            f"{self.name:<44} {self.g2d_s:>9.3f} {self.baseline_s:>9.3f} "
            f"{self.ratio:>7.2f} {target:>8} {verdict}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "g2d_s": self.g2d_s,
            "baseline_s": self.baseline_s,
            "ratio": self.ratio,
            "target": self.target,
            "meets_target": self.meets_target,
        }


HEADER = f"{'benchmark':<44} {'g2d s':>9} {'base s':>9} {'ratio':>7} {'target':>8}"


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` calls: the least disturbed by the rest of the box."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def compare(
    name: str,
    g2d: Callable[[], object],
    baseline: Callable[[], object],
    *,
    repeat: int = 3,
    target: float | None = None,
) -> Comparison:
    """Alternate the two so drift of the machine hits both alike."""
    g, b = float("inf"), float("inf")
    for _ in range(repeat):
        g = min(g, best_of(g2d, 1))
        b = min(b, best_of(baseline, 1))
    return Comparison(name, g, b, target)
