"""Association costs and the linear assignment."""

from __future__ import annotations

import itertools

import numpy as np

from perception.tracking.matching import (
    box_areas,
    fused_cost_pairs,
    intersection_xyxy,
    iou_matrix_xyxy,
    linear_assignment,
    linear_assignment_pairs,
    mahalanobis_sq_pairs,
)


def test_iou_values() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2.0, 2.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    iou = iou_matrix_xyxy(a, b)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 4 / 100, 0.0])
    assert iou_matrix_xyxy(a, np.zeros((0, 4))).shape == (2, 0)
    # Degenerate (zero-area) boxes give 0, not NaN.
    assert iou_matrix_xyxy(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0


def _brute_force(cost: np.ndarray, max_cost: float) -> tuple[int, float]:
    """(largest number of feasible pairs, least total cost among those)."""
    m, n = cost.shape
    best = (0, 0.0)
    for k in range(min(m, n), 0, -1):
        found = None
        for rows in itertools.combinations(range(m), k):
            for cols in itertools.permutations(range(n), k):
                c = cost[list(rows), list(cols)]
                if np.all(c <= max_cost) and (found is None or c.sum() < found):
                    found = float(c.sum())
        if found is not None:
            return k, found
    return best


def test_linear_assignment_is_optimal_and_respects_threshold() -> None:
    rng = np.random.default_rng(0)
    for _ in range(150):
        m, n = rng.integers(0, 5, 2)
        cost = rng.random((m, n))
        cost[rng.random((m, n)) < 0.5] = 3.0
        matches, ur, uc = linear_assignment(cost, 0.8)
        k, total = _brute_force(cost, 0.8) if m and n else (0, 0.0)
        assert len(matches) == k
        assert np.isclose(cost[matches[:, 0], matches[:, 1]].sum() if k else 0.0, total)
        assert sorted([*matches[:, 0], *ur]) == list(range(m))
        assert sorted([*matches[:, 1], *uc]) == list(range(n))


def test_fused_cost_separates_depths() -> None:
    cost_iou = np.array([0.4, 0.4])
    d2 = np.array([0.5, 200.0])
    cost = fused_cost_pairs(cost_iou, d2, weight_3d=0.3, chi2=11.34)
    assert cost[0] < cost[1]  # same overlap, the one at the right depth wins
    np.testing.assert_allclose(cost, [0.7 * 0.4 + 0.3 * 0.5 / 11.34, 0.7 * 0.4 + 0.3])
    gated = fused_cost_pairs(cost_iou, d2, 0.3, 11.34, gate=40.0)
    assert gated[1] > 1.0 and gated[0] == cost[0]


def test_mahalanobis_pairs() -> None:
    tp = np.array([[10.0, 0.0, 0.0], [20.0, 5.0, 0.0]])
    tc = np.tile(np.diag([4.0, 1.0, 1.0]), (2, 1, 1))
    dp = np.array([[12.0, 0.0, 0.0], [20.0, 6.0, 0.0]])
    dc = np.tile(np.diag([0.0, 1.0, 1.0]), (2, 1, 1))
    d2 = mahalanobis_sq_pairs(tp, tc, dp, dc, np.array([0, 1, 0]), np.array([0, 1, 1]))
    np.testing.assert_allclose(d2, [1.0, 0.5, 100 / 4 + 36 / 2])


def test_assignment_on_listed_pairs_equals_the_dense_one() -> None:
    """The tracker lists only the feasible (overlapping) pairs; same matching as dense."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        m, n = rng.integers(1, 9, 2)
        cost = rng.random((m, n))
        cost[rng.random((m, n)) < 0.6] = 3.0  # infeasible
        dense = linear_assignment(cost, 0.8)
        r, c = np.nonzero(cost <= 0.8)
        sparse = linear_assignment_pairs(r, c, cost[r, c], m, n)
        assert np.isclose(
            cost[dense[0][:, 0], dense[0][:, 1]].sum(), cost[sparse[0][:, 0], sparse[0][:, 1]].sum()
        )
        assert len(dense[0]) == len(sparse[0])
        assert sorted([*sparse[0][:, 0], *sparse[1]]) == list(range(m))
        assert sorted([*sparse[0][:, 1], *sparse[2]]) == list(range(n))


def test_intersections_and_areas() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0]])  # the second has no area
    b = np.array([[5.0, 0.0, 20.0, 20.0], [100.0, 100.0, 110.0, 110.0]])
    np.testing.assert_allclose(intersection_xyxy(a, b), [[50.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(box_areas(np.vstack([a, [[3.0, 3.0, 1.0, 5.0]]])), [100, 0, 0])
