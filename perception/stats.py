"""Summaries of timing samples, shared by node status, the topic tools, the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.msgs import NodeStatus


def median_p99(values: Sequence[float], digits: int = 2) -> dict[str, float] | None:
    """``{"median", "p99"}`` of the samples, rounded; None when there are none.

    The quantiles of ``np.percentile`` (linear interpolation between order statistics), in
    plain Python: a node's status summarises a few short sample lists once a second, and
    ``np.median`` + ``np.percentile`` took ~0.25 ms a list there, run cold beside the frame
    path (a status at ~2 ms per node held up the frames it overlapped by that much).
    """
    if not len(values):
        return None
    ordered = sorted(map(float, values))
    return {
        "median": round(_quantile(ordered, 0.5), digits),
        "p99": round(_quantile(ordered, 0.99), digits),
    }


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation at position ``q * (n - 1)`` of sorted values, as NumPy does it
    (from the upper neighbour past the midpoint, for the same rounding)."""
    position = q * (len(ordered) - 1)
    below = int(position)
    t = position - below
    lo, hi = ordered[below], ordered[min(below + 1, len(ordered) - 1)]
    return lo + (hi - lo) * t if t < 0.5 else hi - (hi - lo) * (1.0 - t)


class StageMedians:
    """Per node and stage, the medians its NodeStatus messages reported over a run."""

    def __init__(self) -> None:
        self._medians: dict[str, dict[str, list[float]]] = {}

    def add(self, status: NodeStatus) -> None:
        for stage, s in status.stages_ms.items():
            if s.get("count"):  # a period without samples reports a placeholder 0
                node = self._medians.setdefault(status.node, {})
                node.setdefault(stage, []).append(float(s["median"]))

    def of(self, node: str, digits: int = 2) -> dict[str, float]:
        """Median over the run of each stage's per-period median."""
        return {
            stage: round(float(np.median(v)), digits)
            for stage, v in self._medians.get(node, {}).items()
        }

    def all(self, digits: int = 2) -> dict[str, dict[str, float]]:
        return {node: self.of(node, digits) for node in self._medians}
