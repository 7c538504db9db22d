"""Summaries of timing samples, shared by node status, the topic tools, the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.msgs import NodeStatus


def median_p99(values: Sequence[float], digits: int = 2) -> dict[str, float] | None:
    """``{"median", "p99"}`` of the samples, rounded; None when there are none."""
    if not len(values):
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(a)), digits),
        "p99": round(float(np.percentile(a, 99)), digits),
    }


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
