"""Constant-velocity Kalman filters, vectorised over a batch of tracks.

Both filters use the state ``[p (d), v (d)]`` with ``p' = p + v dt`` and the continuous
white-noise acceleration model. Prediction takes the real elapsed time ``dt`` (seconds), so a
dropped frame or a gap of a second is predicted correctly and its uncertainty grows as it
should (position variance ~ dt^3), instead of being counted as one step as per-frame filters do.

- :class:`ConstantVelocityKalman` keeps the full covariance (M, 2d, 2d); the 3D position
  filter needs it, as lifted positions have a full covariance (elongated along the ray).
- :class:`BoxFilter` (cx, cy, w, h) has a diagonal measurement noise, so its four coordinates
  never couple: it keeps one 2x2 covariance per coordinate and every step is element-wise,
  which is exactly the same filter at a fraction of the cost. Its noise scales with the box
  size (as in SORT/ByteTrack, which use the height; here the longer side): a 20-pixel box
  moves and jitters less in pixels than a 200-pixel one.

Everything works on stacked arrays over M tracks; no Python loop over tracks.
"""

from __future__ import annotations

import numpy as np

from perception.tracking.config import BoxFilterConfig, MotionConfig

# A symmetric 3x3 matrix flattened row-major is [a, b, c, b, e, f, c, f, i]. Its six distinct
# cofactors (c00 = e i - f f, c01 = c f - b i, c02 = b f - c e, c11 = a i - c c,
# c12 = b c - a f, c22 = a e - b b) are left minus right products of two flat entries:
# entry _COF_FIRST[k] times entry _COF_SECOND[k], the six left products, then the right ones.
_COF_FIRST = np.array([4, 2, 1, 0, 1, 0, 5, 1, 2, 2, 0, 1])
_COF_SECOND = np.array([8, 5, 5, 8, 2, 4, 5, 8, 4, 2, 5, 1])
_ADJUGATE = np.array([0, 1, 2, 1, 3, 4, 2, 4, 5])  # the 3x3 adjugate from the six cofactors


def sym_inv3(S: np.ndarray) -> np.ndarray:
    """Inverse of a batch of symmetric 3x3 matrices (M, 3, 3) (the upper triangle is read).

    Element-wise arithmetic on the adjugate (six distinct cofactors for a symmetric
    matrix): several times faster than ``np.linalg.inv``/``solve``, which call LAPACK once
    per small matrix. Covariances here are well conditioned (they include measurement
    noise), so the closed form is accurate. All cofactors come from two column gathers and
    two element-wise operations: at tens of matrices, numpy calls are what costs.
    """
    s = S.reshape(len(S), 9)
    products = s.take(_COF_FIRST, axis=1) * s.take(_COF_SECOND, axis=1)
    cof = products[:, :6] - products[:, 6:]
    det = np.add.reduce(s[:, :3] * cof[:, :3], axis=1)  # a c00 + b c01 + c c02
    return (cof.take(_ADJUGATE, axis=1) / det[:, None]).reshape(len(S), 3, 3)


class ConstantVelocityKalman:
    """Kalman filter for d constant-velocity coordinates measured directly (H = [I 0]),
    with a full covariance."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._eye = np.eye(dim)
        self._q: tuple[float, bytes, np.ndarray] | None = None
        n = 2 * dim
        # F = [[I, dt I], [0, I]] as powers of dt (-1: a zero entry), and F kron F, whose
        # entry [i n + j, k n + l] is F[i, k] F[j, l]: 1, dt, dt^2 or 0 (looked up as 0..3).
        power = np.full((n, n), -1)
        power[np.arange(n), np.arange(n)] = 0
        power[np.arange(dim), np.arange(dim) + dim] = 1
        left, right = power[:, None, :, None], power[None, :, None, :]
        kron = np.where((left < 0) | (right < 0), 3, left + right).reshape(n * n, n * n)
        self._transition_index = kron.T.copy()
        # Q[a d + i, b d + j] = block[a, b] q_i delta_ij: index 1 + (2 a + b) d + i into the
        # products block x q, 0 (a zero) off the diagonals.
        a, i, b, j = np.indices((2, dim, 2, dim))
        self._noise_index = np.where(i == j, 1 + (2 * a + b) * dim + i, 0).reshape(n, n)

    def initiate(
        self, z: np.ndarray, z_cov: np.ndarray, velocity_std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tracks from first measurements z (M, d) with covariance (M, d, d); velocity zero
        with std `velocity_std` (M, d)."""
        m, d = z.shape
        mean = np.zeros((m, 2 * d))
        mean[:, :d] = z
        cov = np.zeros((m, 2 * d, 2 * d))
        cov[:, :d, :d] = z_cov
        idx = np.arange(d) + d
        cov[:, idx, idx] = np.asarray(velocity_std, np.float64) ** 2
        return mean, cov

    def predict(
        self, mean: np.ndarray, cov: np.ndarray, dt: float, accel_std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance every track by dt seconds; `accel_std` (d,) or (M, d)."""
        if dt <= 0.0 or len(mean) == 0:
            return mean, cov
        d, m = self.dim, len(mean)
        mean = mean.copy()
        mean[:, :d] += dt * mean[:, d:]
        # vec(F P F^T) = (F kron F) vec(P) for row-major vec, so the covariance prediction of
        # all tracks is one (M, 4d^2) x (4d^2, 4d^2) product. (F kron F)^T only holds 1, dt,
        # dt^2 and 0: a lookup, where np.kron would rebuild it every frame (dt always changes).
        transition = np.array([1.0, dt, dt * dt, 0.0])[self._transition_index]
        out = (cov.reshape(m, -1) @ transition).reshape(cov.shape)
        out += self.process_noise(dt, accel_std)
        return mean, out

    def process_noise(self, dt: float, accel_std: np.ndarray) -> np.ndarray:
        """Q of white-noise acceleration with std `accel_std` per coordinate, (d,) -> (2d, 2d)
        shared by all tracks or (M, d) -> (M, 2d, 2d):
        q [[dt^3/3, dt^2/2], [dt^2/2, dt]] per coordinate, q = accel_std^2."""
        q = np.asarray(accel_std, np.float64) ** 2
        if q.ndim == 1 and self._q is not None and self._q[0] == dt and self._q[1] == q.tobytes():
            return self._q[2]  # frames at one exact rate: same dt, same Q
        block = np.array([dt**3 / 3.0, dt**2 / 2.0, dt**2 / 2.0, dt])
        if q.ndim == 1:
            products = np.zeros(1 + 4 * self.dim)  # 0, then block[a, b] q_i
            np.multiply(block[:, None], q, out=products[1:].reshape(4, self.dim))
            Q = products[self._noise_index]
            self._q = (dt, q.tobytes(), Q)
            return Q
        return np.einsum("ab,mi,ij->maibj", block.reshape(2, 2), q, self._eye).reshape(
            len(q), 2 * self.dim, -1
        )

    def update(
        self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray, z_cov: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Correct every track with its measurement z (M, d), covariance z_cov (M, d, d).

        Also returns each measurement's squared Mahalanobis distance to the prediction (M,),
        for outlier rejection, computed from the same inverse innovation covariance.
        """
        if len(mean) == 0:
            return mean, cov, np.zeros(0)
        d, m = self.dim, len(mean)
        S = cov[:, :d, :d] + z_cov
        S_inv = sym_inv3(S) if d == 3 else np.linalg.inv(S)
        # One product gives K^T = S^-1 H P (S symmetric) and S^-1 r: [H P | r] side by side.
        X = np.empty((m, d, 2 * d + 1))
        X[:, :, : 2 * d] = cov[:, :d, :]  # H P (M, d, 2d); P H^T is its transpose
        resid = np.subtract(z, mean[:, :d], out=X[:, :, 2 * d])
        Y = S_inv @ X
        Kt = Y[:, :, : 2 * d]
        # (einsum would do these two in one call each, but it brings ~0.1 ms of its own
        # code per frame when cold; multiply, reduce and matmul are already warm here.)
        d2 = np.add.reduce(resid * Y[:, :, 2 * d], axis=1)
        mean = mean + (resid[:, None, :] @ Kt)[:, 0]
        cov = cov - np.swapaxes(Kt, 1, 2) @ X[:, :, : 2 * d]
        return mean, 0.5 * (cov + np.swapaxes(cov, 1, 2)), d2


# Small-array helpers write into preallocated outputs: np.stack / np.concatenate cost several
# microseconds each in Python-level dispatch, which adds up at hundreds of calls per frame.


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) corners -> (N, 4) centre x, centre y, width, height."""
    b = np.asarray(boxes_xyxy, np.float64)
    out = np.empty(b.shape)
    np.subtract(b[:, 2:], b[:, :2], out=out[:, 2:])
    out[:, :2] = b[:, :2] + 0.5 * out[:, 2:]
    return out


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) corners."""
    b = np.asarray(boxes_xywh, np.float64)
    half = 0.5 * b[:, 2:]
    out = np.empty(b.shape)
    np.subtract(b[:, :2], half, out=out[:, :2])
    np.add(b[:, :2], half, out=out[:, 2:])
    return out


class BoxFilter:
    """Constant-velocity filter on boxes (cx, cy, w, h), noise proportional to box size.

    State: ``mean`` (M, 8) = [cx, cy, w, h, vcx, vcy, vw, vh] (pixels, pixels/s);
    ``cov`` (M, 4, 3) = per coordinate [var(p), cov(p, v), var(v)].
    """

    def __init__(self, config: BoxFilterConfig) -> None:
        self.cfg = config

    @staticmethod
    def _scale(xywh: np.ndarray) -> np.ndarray:
        """Size scale of each box (M, 1): its longer side, for every coordinate.

        The box's jitter and image motion grow with its apparent size (nearer objects), and
        the longer side measures that size for thin boxes too: a far pedestrian 3 px wide
        and 16 px tall moves and jitters like a 16 px object, and scaling x by its width
        made its filter trust a lagging prediction (3-5 times more small-box misses on the
        rendered drives, docs/tracking.md).
        """
        return np.maximum(np.maximum(xywh[:, 2:3], xywh[:, 3:4]), 1.0)

    def measurement_var(self, xywh: np.ndarray) -> np.ndarray:
        """(M, 4) measurement variances."""
        return np.maximum(self.cfg.meas_std * self._scale(xywh), self.cfg.meas_std_min_px) ** 2

    def initiate(self, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = xyxy_to_xywh(boxes_xyxy)
        mean = np.zeros((len(z), 8))
        mean[:, :4] = z
        cov = np.zeros((len(z), 4, 3))
        cov[:, :, 0] = 4.0 * self.measurement_var(z)
        cov[:, :, 2] = (self.cfg.init_velocity_std * self._scale(z)) ** 2
        return mean, cov

    def predict(
        self, mean: np.ndarray, cov: np.ndarray, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if dt <= 0.0 or len(mean) == 0:
            return mean, cov
        q = (self.cfg.accel_std * self._scale(mean[:, :4])) ** 2
        mean = mean.copy()
        mean[:, :4] += dt * mean[:, 4:]
        mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)  # a box never shrinks below a pixel
        pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
        out = np.empty_like(cov)
        out[:, :, 0] = pp + 2.0 * dt * pv + dt * dt * vv + q * (dt**3 / 3.0)
        out[:, :, 1] = pv + dt * vv + q * (dt**2 / 2.0)
        out[:, :, 2] = vv + q * dt
        return mean, out

    def update(
        self, mean: np.ndarray, cov: np.ndarray, boxes_xyxy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(mean) == 0:
            return mean, cov
        z = xyxy_to_xywh(boxes_xyxy)
        pp, pv, vv = cov[:, :, 0], cov[:, :, 1], cov[:, :, 2]
        s = pp + self.measurement_var(z)
        kp, kv = pp / s, pv / s
        resid = z - mean[:, :4]
        new = np.empty_like(mean)
        np.add(mean[:, :4], kp * resid, out=new[:, :4])
        np.add(mean[:, 4:], kv * resid, out=new[:, 4:])
        mean = new
        out = np.empty_like(cov)
        out[:, :, 0] = pp - kp * pp
        out[:, :, 1] = pv - kp * pv
        out[:, :, 2] = vv - kv * pv
        return mean, out


class PositionFilter:
    """Constant-velocity filter on (x, y, z) in the vehicle frame, metres and m/s."""

    def __init__(self, config: MotionConfig) -> None:
        self.cfg = config
        self.kf = ConstantVelocityKalman(3)
        self._accel = np.array(
            [config.accel_std_mps2, config.accel_std_mps2, config.accel_std_z_mps2]
        )

    def initiate(self, positions: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vel_std = np.full((len(positions), 3), self.cfg.init_velocity_std_mps)
        return self.kf.initiate(positions, covs, vel_std)

    def predict(
        self, mean: np.ndarray, cov: np.ndarray, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.kf.predict(mean, cov, dt, self._accel)

    def update(
        self, mean: np.ndarray, cov: np.ndarray, positions: np.ndarray, covs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corrected (mean, cov) and the squared Mahalanobis distance of each position."""
        return self.kf.update(mean, cov, positions, covs)
