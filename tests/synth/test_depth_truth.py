"""Ground-truth depth against geometry computed independently of the renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.synth import DriveConfig, SensorConfig, SyntheticDrive, TrafficConfig
from perception.synth.agents import AgentState
from tests.synth.helpers import empty_street, front_camera, pitched_camera


def test_road_depth_level_camera_matches_flat_road_formula() -> None:
    cam = front_camera()  # level, 1.5 m above the road, fy = 400, cy = 191.5
    frame = SyntheticDrive(3, cam, empty_street()).frame(0)
    fy, cy, h = cam.K[1, 1], cam.K[1, 2], cam.T_vehicle_camera[2, 3]
    # a pixel on the road straight ahead: row 251.5 would be 10 m; rows 251 and 252 straddle it
    for v in (230, 251, 252, 300, 383):
        expected = fy * h / (v - cy)
        row = frame.depth_m[v]
        assert np.allclose(row, expected, rtol=1e-5), (v, row.min(), row.max(), expected)
    assert frame.depth_m[251, 320] > 10.0 > frame.depth_m[252, 320]
    # above the horizon: sky, no depth
    assert np.all(frame.depth_m[: int(cy)] == 0)
    # beyond far_m the road has no depth either
    far_row = math.floor(cy + fy * h / DriveConfig().far_m)
    assert np.all(frame.depth_m[far_row] == 0)


@pytest.mark.parametrize("pitch_deg", [4.0, -2.0])
def test_road_depth_pitched_camera(pitch_deg: float) -> None:
    cam = pitched_camera(pitch_deg)
    frame = SyntheticDrive(4, cam, empty_street()).frame(5)
    p = math.radians(pitch_deg)
    fy, cy, h = cam.K[1, 1], cam.K[1, 2], cam.T_vehicle_camera[2, 3]
    checked = 0
    for v in range(cam.height):
        # the ray of row v rises (v - cy) / fy per metre of depth in the camera frame; in the
        # vehicle frame it drops cos(p) (v - cy) / fy + sin(p) per metre of depth
        drop = math.cos(p) * (v - cy) / fy + math.sin(p)
        if drop <= 0:
            assert np.all(frame.depth_m[v] == 0)
            continue
        z = h / drop
        if z > frame_far(frame):
            continue
        assert np.allclose(frame.depth_m[v], z, rtol=1e-5), (v, z)
        checked += 1
    assert checked > cam.height // 3


def frame_far(frame: object) -> float:
    return DriveConfig().far_m


def _car(x: float, y: float, yaw: float, track_id: int = 7) -> AgentState:
    return AgentState(
        track_id=track_id,
        cls="car",
        length=4.0,
        width=1.8,
        height=1.5,
        x=x,
        y=y,
        z=0.0,
        yaw=yaw,
        vx=0.0,
        vy=0.0,
        look=3,
        gait=0.0,
    )


def test_box_face_depth_straight_ahead() -> None:
    cam = front_camera()
    drive = SyntheticDrive(5, cam, empty_street())
    ego = drive.ego(0)
    assert ego.yaw == 0.0
    cam_x = ego.x + cam.T_vehicle_camera[0, 3]
    # the car's rear face is 10 m ahead of the camera, square to the optical axis
    frame = drive.render(0, [_car(cam_x + 10.0 + 2.0, ego.y, 0.0)])
    fy, cy = cam.K[1, 1], cam.K[1, 2]
    h = cam.T_vehicle_camera[2, 3]
    v = round(cy + fy * (h - 0.6) / 10.0)  # a body row: 0.6 m above the road
    for u in (300, 319, 320, 340):
        assert frame.depth_m[v, u] == pytest.approx(10.0, abs=1e-4)
        assert frame.instance_map is not None and frame.instance_map[v, u] == 7
    (label,) = frame.objects
    assert label.center_cam == pytest.approx([0.0, h - 0.75, 12.0], abs=1e-9)
    assert label.depth_m == pytest.approx(12.0)
    assert label.occlusion == 0.0 and label.truncation == 0.0
    assert label.yaw_cam == pytest.approx(-math.pi / 2)  # driving away from the camera


def test_box_face_depth_yawed_car_matches_ray_plane_intersection() -> None:
    cam = front_camera()
    drive = SyntheticDrive(6, cam, empty_street())
    ego = drive.ego(0)
    yaw = math.radians(35.0)
    car = _car(ego.x + 16.0, ego.y - 1.0, yaw)
    frame = drive.render(0, [car])
    # the rear face of the body: centre and normal in the world
    L, H = car.length, car.height
    heading = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    centre = np.array([car.x, car.y, 0.41 * H]) - heading * L / 2
    normal = -heading
    T_wc = np.eye(4)
    T_wc[:2, :2] = [[1, 0], [0, 1]]
    T_wc[0, 3], T_wc[1, 3] = ego.x, ego.y
    T_wc = T_wc @ cam.T_vehicle_camera
    p_cam = T_wc[:3, :3].T @ (centre - T_wc[:3, 3])
    u0, v0 = cam.project(p_cam[None])[0]
    checked = 0
    for du in (-3, 0, 3):
        for dv in (-2, 0, 2):
            u, v = round(u0) + du, round(v0) + dv
            ray_cam = np.linalg.inv(cam.K) @ np.array([u, v, 1.0])
            ray_w = T_wc[:3, :3] @ ray_cam
            t = normal @ (centre - T_wc[:3, 3]) / (normal @ ray_w)
            assert frame.instance_map is not None and frame.instance_map[v, u] == car.track_id
            assert frame.depth_m[v, u] == pytest.approx(t, rel=1e-5)
            checked += 1
    assert checked == 9


def test_occluded_car_has_occlusion_and_box_of_visible_part() -> None:
    cam = front_camera()
    drive = SyntheticDrive(7, cam, empty_street())
    ego = drive.ego(0)
    near = _car(ego.x + 12.0, ego.y, 0.0, track_id=1)
    far = _car(ego.x + 22.0, ego.y + 1.0, 0.0, track_id=2)
    frame = drive.render(0, [near, far])
    labels = {o.track_id: o for o in frame.objects}
    assert labels[1].occlusion == 0.0
    assert 0.3 < labels[2].occlusion < 1.0
    assert frame.instance_map is not None
    mask = np.asarray(frame.instance_map == 2)
    ys, xs = np.nonzero(mask)
    assert list(labels[2].box_xyxy) == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert labels[2].visible_px == int(mask.sum())


def test_traffic_off_means_no_labels_and_sensor_noise_leaves_depth_alone() -> None:
    cam = front_camera()
    quiet = SyntheticDrive(8, cam, DriveConfig(traffic=TrafficConfig(density=0.0)))
    noisy = SyntheticDrive(
        8,
        cam,
        DriveConfig(traffic=TrafficConfig(density=0.0), sensor=SensorConfig(noise_std=(6.0, 6.0))),
    )
    a, b = quiet.frame(3), noisy.frame(3)
    assert a.objects == [] and a.ignored == []
    assert np.array_equal(a.depth_m, b.depth_m)
    assert not np.array_equal(a.image_bgr, b.image_bgr)
