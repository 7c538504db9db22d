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

_INFEASIBLE = 1e6
_EMPTY_IDX = np.zeros(0, np.intp)


def flatnonzero(mask: np.ndarray) -> np.ndarray:
    """Indices of the true entries of the flattened mask: ``np.flatnonzero`` without its
    Python-level wrappers, which cost several microseconds a call on the development VM
    (the tracker makes about twenty such calls per frame)."""
    return mask.ravel().nonzero()[0]


def iou_matrix_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(M, N) intersection over union of two sets of xyxy boxes."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter = intersection_xyxy(a, b)
    union = np.add(box_areas(a)[:, None], box_areas(b))
    union -= inter
    np.maximum(union, 1e-12, out=union)
    return np.divide(inter, union, out=inter)


def intersection_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(M, N) intersection areas of two sets of xyxy boxes."""
    # Broadcast min/max of contiguous coordinate rows, x and y together (2, M, N), in place
    # where possible: each dense operation costs microseconds, and allocations add to it.
    ax, bx = np.ascontiguousarray(a_xyxy.T), np.ascontiguousarray(b_xyxy.T)
    extent = np.minimum(ax[2:, :, None], bx[2:, None, :])  # overlap width, height
    extent -= np.maximum(ax[:2, :, None], bx[:2, None, :])
    np.maximum(extent, 0.0, out=extent)
    return np.multiply(extent[0], extent[1])


def box_areas(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N,) areas of xyxy boxes (0 for degenerate ones)."""
    b = boxes_xyxy
    return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)


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
    # Row gathers with take: about twice as fast as fancy indexing at this size.
    S = track_cov.reshape(-1, 9).take(rows, axis=0) + det_cov.reshape(-1, 9).take(cols, axis=0)
    x, y, z = (det_pos.take(cols, axis=0) - track_pos.take(rows, axis=0)).T
    return sym3_quadratic_inverse(S, x, y, z)


def sym3_quadratic_inverse(
    S_flat: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """r^T S^-1 r for a batch of symmetric positive definite 3x3 matrices S (K, 9) flattened
    row-major (only the upper triangle is read) and vectors r = (x, y, z), each (K,).

    The adjugate of a symmetric matrix has six distinct cofactors, so this is ~30 element-wise
    operations on (K,) arrays: no inverse, no small matrix products.
    """
    a, b, c = S_flat[:, 0], S_flat[:, 1], S_flat[:, 2]
    e, f, i = S_flat[:, 4], S_flat[:, 5], S_flat[:, 8]
    c00, c11, c22 = e * i - f * f, a * i - c * c, a * e - b * b
    c01, c02, c12 = c * f - b * i, b * f - c * e, b * c - a * f
    det = a * c00 + b * c01 + c * c02
    num = x * (c00 * x + 2.0 * (c01 * y + c02 * z)) + y * (c11 * y + 2.0 * c12 * z) + c22 * z * z
    return num / det


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
    # 2-D np.nonzero is several times slower than a flat one + divmod.
    flat = flatnonzero(cost <= max_cost)
    rows, cols = np.divmod(flat, n)
    return linear_assignment_pairs(rows, cols, cost.reshape(-1)[flat], m, n)


def linear_assignment_pairs(
    rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, m: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching among the listed feasible pairs of an m x n problem
    (every other pair is infeasible); each (row, col) listed at most once.

    Returns (matches (K, 2) of [row, col], unmatched rows, unmatched cols). Among the
    matchings with the most pairs, the cheapest (as :func:`linear_assignment`).
    """
    match_r, match_c = match_pairs(rows, cols, costs, m, n)
    matches = np.empty((len(match_r), 2), np.intp)
    matches[:, 0] = match_r
    matches[:, 1] = match_c
    free_rows = np.ones(m, bool)
    free_rows[match_r] = False
    free_cols = np.ones(n, bool)
    free_cols[match_c] = False
    return matches, flatnonzero(free_rows), flatnonzero(free_cols)


def match_pairs(
    rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, m: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`linear_assignment_pairs` returning only the matched (rows, cols)."""
    if len(rows) == 0:
        return _EMPTY_IDX, _EMPTY_IDX
    # A row and a column that are each other's only feasible partner match in every optimal
    # assignment: take those directly and solve only the contested rest; rows and columns
    # without a feasible pair are left out of the solve.
    per_row = np.bincount(rows, minlength=m)
    per_col = np.bincount(cols, minlength=n)
    sure = (per_row[rows] == 1) & (per_col[cols] == 1)
    if sure.all():
        return rows, cols
    contested = flatnonzero(~sure)
    cr, cc = rows[contested], cols[contested]
    # The contested rows and columns in increasing order, and each pair's place among them
    # (np.unique sorts; a lookup table over the few hundred indices is several times faster).
    r_idx, c_idx = _distinct(cr, m), _distinct(cc, n)
    lut_r = np.empty(m, np.intp)
    lut_r[r_idx] = np.arange(len(r_idx))
    lut_c = np.empty(n, np.intp)
    lut_c[c_idx] = np.arange(len(c_idx))
    sub = np.full((len(r_idx), len(c_idx)), _INFEASIBLE)
    sub[lut_r[cr], lut_c[cc]] = costs[contested]
    sr, sc = linear_sum_assignment(sub)
    keep = sub[sr, sc] < _INFEASIBLE
    return (
        np.concatenate([rows[sure], r_idx[sr[keep]]]),
        np.concatenate([cols[sure], c_idx[sc[keep]]]),
    )


def _distinct(idx: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct values of `idx`, all in [0, size)."""
    mask = np.zeros(size, bool)
    mask[idx] = True
    return flatnonzero(mask)
