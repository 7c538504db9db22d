"""3D lifting from depth maps: robust depth, back-projection, covariance, size, fallback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from perception.camera import CameraModel
from perception.msgs import DepthMap
from perception.tracking.config import LiftingConfig
from perception.tracking.lifting import (
    SOURCE_DEPTH_MAP,
    SOURCE_DETECTION,
    SOURCE_GROUND,
    SOURCE_NONE,
    box_depths,
    ground_depths,
    lift_detections,
    occluder_pairs,
)

REPO = Path(__file__).resolve().parents[2]
# Boxes drawn around points that do not stand on the road: no ground-plane prior.
NO_OFFSET = LiftingConfig(centre_offset_m={}, ground_prior=False)


@pytest.fixture
def camera() -> CameraModel:
    return CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")


def scene_depth(
    camera: CameraModel,
    boxes: np.ndarray,
    depths: list[float],
    s: int = 1,
    background: float = 80.0,
) -> DepthMap:
    """A depth map (downscaled by s) with each box filled at its depth over a far background."""
    w, h = camera.width // s, camera.height // s
    d = np.full((h, w), background, np.float32)
    off = (s - 1) / 2
    for b, z in sorted(zip(boxes, depths, strict=True), key=lambda x: -x[1]):
        u0, v0 = int(np.ceil((b[0] - off) / s)), int(np.ceil((b[1] - off) / s))
        u1, v1 = int(np.floor((b[2] - off) / s)), int(np.floor((b[3] - off) / s))
        d[max(v0, 0) : v1 + 1, max(u0, 0) : u1 + 1] = z
    return DepthMap(
        image_width=camera.width,
        image_height=camera.height,
        scale_x=s,
        scale_y=s,
        offset_x=off,
        offset_y=off,
        depth_m=d.astype(np.float16),
    )


def test_robust_statistic_ignores_holes_background_and_outliers() -> None:
    depth = np.full((100, 100), 50.0)
    depth[20:80, 20:80] = 10.0
    rng = np.random.default_rng(0)
    depth[rng.random(depth.shape) < 0.3] = 0.0  # 30% holes
    depth[50, 50] = 1.0  # a single near outlier
    z, frac = box_depths(depth, np.array([[10.0, 10.0, 90.0, 90.0]]), 0.5, 12, 30.0)
    assert z[0] == pytest.approx(10.0)
    assert 0.6 < frac[0] < 0.8
    # No valid pixel: NaN and fraction 0; boxes partly outside the map still work.
    z, frac = box_depths(np.zeros((10, 10)), np.array([[-5.0, -5.0, 5.0, 5.0]]), 0.5, 4, 30.0)
    assert np.isnan(z[0]) and frac[0] == 0.0


def test_positions_match_the_objects(camera: CameraModel) -> None:
    truth_v = np.array([[12.0, 2.0, 1.0], [30.0, -4.0, 0.8], [55.0, 1.0, 1.2]])
    uv, z = camera.project_vehicle(truth_v)
    half = np.array([[40.0, 30.0], [15.0, 12.0], [8.0, 6.0]])
    boxes = np.hstack([uv - half, uv + half])
    depth = scene_depth(camera, boxes, list(z), s=4)
    out = lift_detections(camera, boxes, depth, config=NO_OFFSET)
    assert np.all(out.source == SOURCE_DEPTH_MAP)
    np.testing.assert_allclose(out.depth_m, z, rtol=2e-3)  # float16 storage
    np.testing.assert_allclose(out.positions_vehicle, truth_v, rtol=3e-3, atol=0.05)
    # Metric size from the box: width = 2 * half-width * z / f.
    np.testing.assert_allclose(out.sizes_m, 2 * half * z[:, None] / 400.0, rtol=5e-3)
    # Covariance: symmetric PD, grows with range, elongated along the viewing ray (x).
    cov = out.covariances_vehicle
    assert np.allclose(cov, np.swapaxes(cov, 1, 2))
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert cov[0, 0, 0] < cov[1, 0, 0] < cov[2, 0, 0]
    assert np.all(cov[:, 0, 0] > 10 * cov[:, 1, 1])


def test_fallback_and_unknown(camera: CameraModel) -> None:
    boxes = np.array([[100.0, 100.0, 140.0, 150.0], [300.0, 150.0, 330.0, 190.0]])
    empty = DepthMap(image_width=640, image_height=384, depth_m=np.zeros((384, 640), np.float16))
    out = lift_detections(camera, boxes, empty, np.array([20.0, 0.0]), NO_OFFSET)
    assert out.source.tolist() == [SOURCE_DETECTION, SOURCE_NONE]
    assert out.depth_m[0] == 20.0 and np.isnan(out.positions_vehicle[1]).all()
    unknown = (out.positions_camera[1], out.covariances_vehicle[1], out.sizes_m[1])
    assert all(np.isnan(a).all() for a in unknown)  # NaN throughout, not just the position
    # The fallback is less certain than the same depth read from a map.
    mapped = lift_detections(
        camera, boxes[:1], scene_depth(camera, boxes[:1], [20.0]), config=NO_OFFSET
    )
    assert out.covariances_vehicle[0, 0, 0] > 3 * mapped.covariances_vehicle[0, 0, 0]
    # No depth map at all, no boxes.
    assert lift_detections(camera, boxes).source.tolist() == [SOURCE_NONE, SOURCE_NONE]
    none = lift_detections(camera, np.zeros((0, 4)), empty)
    assert none.positions_vehicle.shape == (0, 3) and none.covariances_vehicle.shape == (0, 3, 3)
    assert none.sizes_m.shape == (0, 2) and none.source.dtype == np.uint8


def test_occluder_in_front_of_part_of_the_box(camera: CameraModel) -> None:
    """A nearer object covering a corner of the box does not decide the depth."""
    box = np.array([[200.0, 100.0, 300.0, 200.0]])
    occluder = np.array([[180.0, 90.0, 235.0, 150.0]])
    depth = scene_depth(camera, np.vstack([box, occluder]), [25.0, 8.0])
    out = lift_detections(camera, box, depth, config=LiftingConfig(percentile=50.0))
    assert out.depth_m[0] == pytest.approx(25.0, rel=1e-3)


def test_car_behind_a_car_reads_its_own_depth(camera: CameraModel) -> None:
    """A nearer car (its bottom edge lower in the image) covers the middle of a farther car's
    box: the farther box's samples inside the nearer box are dropped, so its depth is its own,
    not the occluder's (which the 30th percentile would otherwise pick)."""
    far = np.array([200.0, 150.0, 300.0, 200.0])
    near = np.array([215.0, 160.0, 255.0, 225.0])  # lower bottom edge: nearer
    boxes = np.vstack([far, near])
    depth = scene_depth(camera, boxes, [30.0, 12.0])
    assert occluder_pairs(boxes, 0.05).tolist() == [[0, 1]]
    cfg = LiftingConfig(centre_offset_m={}, ground_prior=False)
    out = lift_detections(camera, boxes, depth, config=cfg)
    assert out.depth_m[0] == pytest.approx(30.0, rel=1e-3)
    assert out.depth_m[1] == pytest.approx(12.0, rel=1e-3)
    naive = lift_detections(camera, boxes, depth, config=replace(cfg, occlusion_aware=False))
    assert naive.depth_m[0] == pytest.approx(12.0, rel=1e-3)
    # Side by side (bottom edges level) is no occlusion.
    assert len(occluder_pairs(np.array([[0, 0, 10, 10], [5, 0, 15, 10.2]]), 0.05)) == 0


def test_ground_plane_depth_and_fusion(camera: CameraModel) -> None:
    """The synthetic camera is 1.5 m above the road looking level: the bottom edge of an
    object standing at depth z is 400 * 1.5 / z pixels below the horizon row (191.5)."""
    z_true = np.array([10.0, 25.0, 60.0])
    bottom = 191.5 + 400.0 * 1.5 / z_true
    boxes = np.column_stack([[300.0, 310.0, 320.0], bottom - 30, [340.0, 330.0, 325.0], bottom])
    zg, sg = ground_depths(camera, boxes, LiftingConfig())
    np.testing.assert_allclose(zg, z_true, rtol=1e-9)
    # One pixel of the bottom edge matters more with range (~ z^2 / (f h)).
    assert sg[0] < sg[1] < sg[2] and sg[2] > 0.05 * 60.0
    # Above the horizon there is no ground.
    assert np.isnan(ground_depths(camera, np.array([[300.0, 100, 340, 180]]), LiftingConfig())[0])
    # A depth map reading 20% too far is pulled towards the ground depth; without a map the
    # ground depth is used alone.
    cfg = LiftingConfig(centre_offset_m={})
    depth = scene_depth(camera, boxes[:2], list(1.2 * z_true[:2]))
    fused = lift_detections(camera, boxes[:2], depth, config=cfg)
    err = np.abs(fused.depth_m - z_true[:2])
    assert np.all(err < 0.5 * 0.2 * z_true[:2]) and np.all(fused.source == SOURCE_DEPTH_MAP)
    alone = lift_detections(camera, boxes[:1], None, config=cfg)
    assert alone.source.tolist() == [SOURCE_GROUND]
    assert alone.depth_m[0] == pytest.approx(10.0)
    # A box cut by the image's lower border does not show where the object stands.
    cut = np.array([[300.0, 300.0, 340.0, 383.5]])
    assert lift_detections(camera, cut, None, config=cfg).source.tolist() == [SOURCE_NONE]


def test_centre_offset_moves_along_the_ray(camera: CameraModel) -> None:
    boxes = np.array([[300.0, 170.0, 340.0, 210.0], [300.0, 170.0, 340.0, 210.0]])
    depth = scene_depth(camera, boxes[:1], [20.0])
    cfg = LiftingConfig(centre_offset_m={"car": 2.0})
    out = lift_detections(camera, boxes, depth, None, cfg, np.array([0, 1]), ["car", "person"])
    delta = out.positions_vehicle[0] - out.positions_vehicle[1]
    assert np.linalg.norm(delta) == pytest.approx(2.0)
    assert delta[0] > 1.99  # straight ahead: along the vehicle x axis


def test_distorted_camera_back_projects_through_the_lens() -> None:
    cam = CameraModel(
        "d", 640, 480, [[450.0, 0, 320.0], [0, 450.0, 240.0], [0, 0, 1]], [-0.3, 0.1, 0.0, 0.0, 0.0]
    )
    p = np.array([[3.0, 1.5, 12.0]])  # optical frame, towards a corner: strong distortion
    uv = cam.project(p)
    boxes = np.hstack([uv - 10, uv + 10])
    depth = DepthMap(
        image_width=640, image_height=480, depth_m=np.full((480, 640), 12.0, np.float16)
    )
    out = lift_detections(cam, boxes, depth, config=NO_OFFSET)
    np.testing.assert_allclose(out.positions_camera, p, atol=1e-6)


def test_source_image_of_another_size_scales_the_camera(camera: CameraModel) -> None:
    """Boxes of a half-resolution stream: the calibration is scaled, positions agree."""
    truth = np.array([[20.0, 1.0, 1.0]])
    uv, z = camera.project_vehicle(truth)
    boxes = np.hstack([uv - 10, uv + 10])
    full = lift_detections(camera, boxes, scene_depth(camera, boxes, list(z)), config=NO_OFFSET)
    half_cam = camera.scaled(320, 192)
    uv_h, _ = half_cam.project_vehicle(truth)
    boxes_h = np.hstack([uv_h - 5, uv_h + 5])
    d = scene_depth(half_cam, boxes_h, list(z))
    half = lift_detections(camera, boxes_h, d, config=NO_OFFSET)  # full-size calibration
    np.testing.assert_allclose(half.positions_vehicle, full.positions_vehicle, atol=0.02)
    np.testing.assert_allclose(half.positions_vehicle, truth, atol=0.05)
