"""Kalman filters: the fast forms equal the textbook matrix forms; real-dt prediction."""

from __future__ import annotations

import numpy as np
import pytest

from perception.tracking.config import BoxFilterConfig, MotionConfig
from perception.tracking.kalman import (
    BoxFilter,
    ConstantVelocityKalman,
    PositionFilter,
    sym_inv3,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def _textbook_predict(mean, cov, dt, q):  # type: ignore[no-untyped-def]
    d = mean.shape[1] // 2
    F = np.eye(2 * d)
    F[:d, d:] = dt * np.eye(d)
    Q = np.zeros((len(mean), 2 * d, 2 * d))
    for i in range(d):
        Q[:, i, i] = q[:, i] * dt**3 / 3
        Q[:, i, i + d] = Q[:, i + d, i] = q[:, i] * dt**2 / 2
        Q[:, i + d, i + d] = q[:, i] * dt
    return mean @ F.T, F @ cov @ F.T + Q


def _textbook_update(mean, cov, z, R):  # type: ignore[no-untyped-def]
    d = z.shape[1]
    H = np.hstack([np.eye(d), np.zeros((d, d))])
    S = H @ cov @ H.T + R
    K = cov @ H.T @ np.linalg.inv(S)
    mean = mean + np.einsum("mij,mj->mi", K, z - mean @ H.T)
    cov = (np.eye(2 * d) - K @ H) @ cov
    return mean, cov


def _random_spd(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    A = rng.normal(size=(m, n, n))
    return A @ np.swapaxes(A, 1, 2) + n * np.eye(n)


def test_full_filter_equals_textbook_forms() -> None:
    rng = np.random.default_rng(1)
    kf = ConstantVelocityKalman(3)
    mean, cov = rng.normal(size=(20, 6)), _random_spd(rng, 20, 6)
    accel = rng.uniform(0.5, 2.0, (20, 3))
    m1, c1 = kf.predict(mean, cov, 0.1, accel)
    m2, c2 = _textbook_predict(mean, cov, 0.1, accel**2)
    np.testing.assert_allclose(m1, m2, atol=1e-12)
    np.testing.assert_allclose(c1, c2, atol=1e-10)
    z, R = rng.normal(size=(20, 3)), _random_spd(rng, 20, 3)
    m1, c1, d2 = kf.update(m2, c2, z, R)
    m3, c3 = _textbook_update(m2, c2, z, R)
    np.testing.assert_allclose(m1, m3, atol=1e-10)
    np.testing.assert_allclose(c1, c3, atol=1e-10)
    S = c2[:, :3, :3] + R
    r = z - m2[:, :3]
    np.testing.assert_allclose(d2, np.einsum("mi,mij,mj->m", r, np.linalg.inv(S), r))


@pytest.mark.parametrize("dim", [2, 3])
def test_predict_with_shared_noise_is_the_kron_product(dim: int) -> None:
    """One acceleration std per coordinate for all tracks (the position filter's case), and dt
    different every frame as real stamps are: the looked-up transition and process noise give
    exactly the (F kron F) product and np.kron noise, and the textbook prediction."""
    rng = np.random.default_rng(5)
    kf = ConstantVelocityKalman(dim)
    accel = rng.uniform(0.5, 2.0, dim)
    mean, cov = rng.normal(size=(7, 2 * dim)), _random_spd(rng, 7, 2 * dim)
    for dt in (0.1, 0.1003, 0.0331, 1.7):
        F = np.eye(2 * dim)
        F[:dim, dim:] = dt * np.eye(dim)
        block = np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])
        Q = np.kron(block, np.eye(dim) * accel**2)
        np.testing.assert_array_equal(kf.process_noise(dt, accel), Q)
        m1, c1 = kf.predict(mean, cov, dt, accel)
        kron = (cov.reshape(len(cov), -1) @ np.kron(F, F).T).reshape(cov.shape) + Q
        np.testing.assert_array_equal(c1, kron)
        m2, c2 = _textbook_predict(mean, cov, dt, np.broadcast_to(accel**2, (7, dim)))
        np.testing.assert_allclose(m1, m2, atol=1e-12)
        np.testing.assert_allclose(c1, c2, atol=1e-10)


def test_box_filter_equals_full_filter_with_diagonal_noise() -> None:
    """The per-coordinate box filter is the same filter as the full 8-state one."""
    cfg = BoxFilterConfig()
    bf = BoxFilter(cfg)
    rng = np.random.default_rng(2)
    boxes = rng.uniform(0, 500, (10, 2))
    boxes = np.hstack([boxes, boxes + rng.uniform(10, 150, (10, 2))])
    mean, cov = bf.initiate(boxes)

    def full(c: np.ndarray) -> np.ndarray:
        out = np.zeros((len(c), 8, 8))
        for i in range(4):
            out[:, i, i], out[:, i, i + 4] = c[:, i, 0], c[:, i, 1]
            out[:, i + 4, i], out[:, i + 4, i + 4] = c[:, i, 1], c[:, i, 2]
        return out

    kf = ConstantVelocityKalman(4)
    fm, fc = mean.copy(), full(cov)
    for step in range(5):
        scale = bf._scale(mean[:, :4])
        mean, cov = bf.predict(mean, cov, 0.1)
        fm, fc = kf.predict(fm, fc, 0.1, cfg.accel_std * scale)
        fm[:, 2:4] = np.maximum(fm[:, 2:4], 1.0)
        z = boxes + step * 3.0 + rng.normal(0, 1, boxes.shape)
        mean, cov = bf.update(mean, cov, z)
        zc = xyxy_to_xywh(z)
        R = np.zeros((10, 4, 4))
        R[:, np.arange(4), np.arange(4)] = bf.measurement_var(zc)
        fm, fc, _ = kf.update(fm, fc, zc, R)
        np.testing.assert_allclose(mean, fm, atol=1e-8)
        np.testing.assert_allclose(full(cov), fc, atol=1e-8)


@pytest.mark.parametrize("make", ["box", "position"])
def test_one_long_prediction_equals_many_short_ones(make: str) -> None:
    """White-noise acceleration: predicting 0.3 s at once is the same as 3 x 0.1 s, so frame
    drops and gaps cost nothing but the information they did not bring."""
    rng = np.random.default_rng(3)
    if make == "box":
        f: BoxFilter | PositionFilter = BoxFilter(BoxFilterConfig())
        mean, cov = f.initiate(np.array([[100.0, 100.0, 140.0, 180.0]]))
        mean[:, 4:] = [30.0, -10.0, 0.0, 0.0]  # no size change: noise scale stays fixed
    else:
        f = PositionFilter(MotionConfig())
        mean, cov = f.initiate(np.array([[20.0, 3.0, 0.5]]), np.diag([1.0, 0.2, 0.2])[None])
        mean[:, 3:] = rng.normal(size=3)
    m1, c1 = f.predict(mean, cov, 0.3)
    m3, c3 = mean, cov
    for _ in range(3):
        m3, c3 = f.predict(m3, c3, 0.1)
    np.testing.assert_allclose(m1, m3, atol=1e-9)
    np.testing.assert_allclose(c1, c3, rtol=1e-9, atol=1e-9)
    # dt = 0 changes nothing.
    m0, c0 = f.predict(mean, cov, 0.0)
    assert m0 is mean and c0 is cov


def test_position_filter_converges_to_constant_velocity() -> None:
    f = PositionFilter(MotionConfig())
    rng = np.random.default_rng(4)
    v = np.array([-8.0, 1.5, 0.0])
    p0 = np.array([40.0, -3.0, 0.7])
    R = np.diag([1.0, 0.05, 0.05])[None]  # depth-like noise along x
    mean, cov = f.initiate(p0[None] + rng.normal(0, [1.0, 0.22, 0.22])[None], R)
    errors, stds = [], []
    for k in range(1, 41):
        mean, cov = f.predict(mean, cov, 0.1)
        z = p0 + v * 0.1 * k + rng.normal(0, [1.0, 0.22, 0.22])
        mean, cov, _ = f.update(mean, cov, z[None], R)
        errors.append(mean[0, 3:] - v)
        stds.append(np.sqrt(np.diag(cov[0])[3:]))
    # After 3 s: errors of about a metre per second at most, and within the filter's own
    # uncertainty (3 sigma), i.e. the covariance it reports is honest.
    err, std = np.array(errors[30:]), np.array(stds[30:])
    assert np.linalg.norm(err, axis=1).mean() < 1.0
    assert np.all(np.abs(err) < 3 * std)
    # The reported covariance is a covariance: symmetric, positive definite.
    assert np.allclose(cov, np.swapaxes(cov, 1, 2))
    assert np.all(np.linalg.eigvalsh(cov[0]) > 0)


def test_box_conversions_round_trip() -> None:
    b = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_allclose(xyxy_to_xywh(b)[0], [30.0, 60.0, 40.0, 80.0])


def test_box_noise_scales_with_the_longer_side() -> None:
    """A far pedestrian's box (3 x 16 px) jitters and moves like a 16 px object in x too:
    scaling x by its 3 px width made the filter trust a lagging prediction."""
    bf = BoxFilter(BoxFilterConfig())
    thin = bf.measurement_var(np.array([[100.0, 100.0, 3.0, 16.0]]))
    square = bf.measurement_var(np.array([[100.0, 100.0, 16.0, 16.0]]))
    np.testing.assert_allclose(np.broadcast_to(thin, (1, 4)), np.broadcast_to(square, (1, 4)))
    _, cov = bf.initiate(np.array([[98.5, 92.0, 101.5, 108.0]]))
    assert np.allclose(cov[0, :, 2], cov[0, 0, 2])  # one velocity prior for all coordinates


def test_sym_inv3_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    A = rng.normal(size=(20, 3, 3))
    S = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(3)
    np.testing.assert_allclose(sym_inv3(S), np.linalg.inv(S), rtol=1e-9, atol=1e-10)
