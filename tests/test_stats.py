"""Timing summaries: the plain-Python quantiles agree with NumPy's."""

from __future__ import annotations

import numpy as np
import pytest

from perception.stats import median_p99


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 11, 99, 100, 101, 1000])
def test_median_p99_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (
        rng.exponential(5.0, n),  # latencies: a long tail
        rng.integers(0, 4, n),  # many ties, integers
        np.full(n, 2.5),
    ):
        got = median_p99(list(values), digits=12)
        assert got is not None
        assert got["median"] == pytest.approx(float(np.median(values)), rel=1e-12, abs=1e-12)
        assert got["p99"] == pytest.approx(float(np.percentile(values, 99)), rel=1e-12, abs=1e-12)


def test_median_p99_rounds_and_takes_any_sequence() -> None:
    assert median_p99([]) is None
    assert median_p99((3, 1, 2)) == {"median": 2.0, "p99": 2.98}
    assert median_p99([0.12345, 0.12345], digits=3) == {"median": 0.123, "p99": 0.123}
