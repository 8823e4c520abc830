"""Side-by-side timing shared by the benchmark scripts: contenders alternate within every
round, the order rotated each round, so drifts of a noisy machine hit all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of one call of each contender per round (warm up before calling this)."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over rounds of ``name``'s time divided by ``baseline``'s in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[baseline], strict=True))
