"""Association costs and the linear assignment that turns them into matches.

Costs are matrices (tracks x detections) in [0, 1], lower is better; pairs above a threshold
are never matched. The assignment is solved exactly with scipy's Hungarian-style solver
(``linear_sum_assignment``); infeasible pairs get a cost no feasible set of pairs can reach,
and the matches that still land on them are dropped, the same effect as ``lap.lapjv``'s
``cost_limit`` in ByteTrack.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.tracking.kalman import inv3

_INFEASIBLE = 1e6


def iou_matrix_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(M, N) intersection over union of two sets of xyxy boxes."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    # Outer min/max on 1-D columns: no (M, N, 2) temporaries, ~5x faster at 100 x 100.
    iw = np.minimum.outer(a[:, 2], b[:, 2]) - np.maximum.outer(a[:, 0], b[:, 0])
    ih = np.minimum.outer(a[:, 3], b[:, 3]) - np.maximum.outer(a[:, 1], b[:, 1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = np.add.outer(area_a, area_b) - inter
    return inter / np.maximum(union, 1e-12)


def mahalanobis_sq_pairs(
    track_pos: np.ndarray,
    track_cov: np.ndarray,
    det_pos: np.ndarray,
    det_cov: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Squared Mahalanobis distance for the listed (track, detection) pairs only.

    The innovation covariance is the track's predicted position covariance plus the
    detection's. Computed per pair (K small 3x3 solves) instead of densely: only pairs that
    overlap in the image can match, which keeps this linear in the number of objects.
    """
    if len(rows) == 0:
        return np.zeros(0)
    S = track_cov[rows] + det_cov[cols]
    r = det_pos[cols] - track_pos[rows]
    x = (inv3(S) @ r[:, :, None])[:, :, 0]
    return np.einsum("ki,ki->k", r, x)


def fused_cost_pairs(
    cost_iou: np.ndarray,
    d2: np.ndarray,
    weight_3d: float,
    chi2: float,
    gate: float = np.inf,
) -> np.ndarray:
    """Cost of (track, detection) pairs that overlap in the image and both have a 3D position:
    (1 - w) (1 - IoU) + w min(d^2 / chi2, 1); pairs with d^2 > `gate` cost 2 (never match).

    `cost_iou` holds 1 - IoU of the pairs, `d2` their squared Mahalanobis distances. Pairs
    without 3D keep 1 - IoU; pairs that do not overlap are never fused, so 3D agreement alone
    never makes a match. The 3D term separates objects that overlap in the image at different
    depths (a pedestrian's track must not take the detection of the car passing in front).
    """
    fused = (1.0 - weight_3d) * cost_iou + weight_3d * np.minimum(d2 / chi2, 1.0)
    return np.where(d2 > gate, 2.0, fused)


def linear_assignment(
    cost: np.ndarray, max_cost: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching, pairs above `max_cost` excluded.

    Returns (matches (K, 2) of [row, col], unmatched rows, unmatched cols).
    """
    m, n = cost.shape
    if m == 0 or n == 0:
        return np.zeros((0, 2), np.intp), np.arange(m), np.arange(n)
    # Work on the feasible pairs (few: objects overlap few others). A row and a column that
    # are each other's only feasible partner match in every optimal assignment: take those
    # directly and solve only the contested rest; rows and columns without a feasible pair
    # are left out of the solve.
    fr, fc = np.nonzero(cost <= max_cost)
    per_row = np.bincount(fr, minlength=m)
    per_col = np.bincount(fc, minlength=n)
    sure = (per_row[fr] == 1) & (per_col[fc] == 1)
    match_r, match_c = fr[sure], fc[sure]
    contested = ~sure
    if contested.any():
        r_idx = np.unique(fr[contested])
        c_idx = np.unique(fc[contested])
        sub = cost[r_idx][:, c_idx]
        sub_feasible = sub <= max_cost
        rows, cols = linear_sum_assignment(np.where(sub_feasible, sub, _INFEASIBLE))
        keep = sub_feasible[rows, cols]
        match_r = np.concatenate([match_r, r_idx[rows[keep]]])
        match_c = np.concatenate([match_c, c_idx[cols[keep]]])
    matches = np.empty((len(match_r), 2), np.intp)
    matches[:, 0] = match_r
    matches[:, 1] = match_c
    free_rows = np.ones(m, bool)
    free_rows[match_r] = False
    free_cols = np.ones(n, bool)
    free_cols[match_c] = False
    return matches, np.flatnonzero(free_rows), np.flatnonzero(free_cols)
