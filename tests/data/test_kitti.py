"""KITTI formats: write-then-read round trips, parsing errors, conversions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perception.data import kitti
from perception.data.drive import to_kitti
from perception.errors import UserError
from perception.synth.labels import ObjectLabel
from tests.synth.helpers import front_camera


def _objects(rng: np.random.Generator, n: int, tracking: bool) -> list[kitti.KittiObject]:
    out = []
    for i in range(n):
        out.append(
            kitti.KittiObject(
                type=str(rng.choice(["Car", "Pedestrian", "Cyclist", "Truck", "Van"])),
                truncated=float(rng.uniform(0, 1)),
                occluded=int(rng.integers(0, 3)),
                alpha=float(rng.uniform(-math.pi, math.pi)),
                bbox_xyxy=tuple(float(v) for v in np.sort(rng.uniform(0, 600, 4))),  # type: ignore[arg-type]
                dimensions_hwl=tuple(float(v) for v in rng.uniform(0.5, 4, 3)),  # type: ignore[arg-type]
                location_xyz=tuple(float(v) for v in rng.uniform(-20, 60, 3)),  # type: ignore[arg-type]
                rotation_y=float(rng.uniform(-math.pi, math.pi)),
                score=float(rng.uniform(0, 1)) if i % 2 else None,
                frame=7 if tracking else None,
                track_id=int(rng.integers(0, 1000)) if tracking else None,
            )
        )
    return out


@pytest.mark.parametrize("tracking", [False, True])
def test_label_round_trip(tmp_path: Path, tracking: bool) -> None:
    objs = _objects(np.random.default_rng(1), 12, tracking)
    objs.append(kitti.dont_care([10.0, 20.0, 30.5, 40.25], 7 if tracking else None))
    kitti.write_labels(tmp_path / "a.txt", objs)
    back = kitti.read_labels(tmp_path / "a.txt")
    assert back == [o.rounded() for o in objs]
    # and writing what was read reproduces the file byte for byte
    kitti.write_labels(tmp_path / "b.txt", back)
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()


def test_reads_official_kitti_lines() -> None:
    line = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"
    o = kitti.parse_object(line)
    assert o.type == "Car" and o.bbox_xyxy == (587.01, 173.33, 614.12, 200.12)
    assert o.dimensions_hwl == (1.65, 1.67, 3.64) and o.location_xyz == (-0.65, 1.71, 46.70)
    assert o.frame is None and o.score is None
    trk = (
        "0 2 Pedestrian 0 0 -2.52 1106.14 166.00 1204.05 323.68 1.71 0.41 0.95 6.45 1.57 8.47 -1.91"
    )
    t = kitti.parse_object(trk)
    assert (t.frame, t.track_id, t.type, t.truncated) == (0, 2, "Pedestrian", 0.0)
    grouped = kitti.read_tracking_labels
    assert callable(grouped)


@pytest.mark.parametrize("bad", ["Car 0 0", "Car a b c d e f g h i j k l m n", "1 2 Car 0 0"])
def test_malformed_label_lines_are_user_errors(tmp_path: Path, bad: str) -> None:
    (tmp_path / "x.txt").write_text(bad + "\n")
    with pytest.raises(UserError, match=r"x\.txt:1"):
        kitti.read_labels(tmp_path / "x.txt")


def test_tracking_file_grouped_by_frame(tmp_path: Path) -> None:
    objs = _objects(np.random.default_rng(2), 5, True)
    objs = [kitti.KittiObject(**{**o.__dict__, "frame": i % 2}) for i, o in enumerate(objs)]
    kitti.write_labels(tmp_path / "0000.txt", objs)
    grouped = kitti.read_tracking_labels(tmp_path / "0000.txt")
    assert sorted(grouped) == [0, 1] and sum(len(v) for v in grouped.values()) == 5
    kitti.write_labels(
        tmp_path / "obj.txt", [kitti.KittiObject(**{**objs[0].__dict__, "frame": None})]
    )
    with pytest.raises(UserError, match="not a tracking"):
        kitti.read_tracking_labels(tmp_path / "obj.txt")


def test_depth_png_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 250.0, (37, 53)).astype(np.float32)
    depth[0, :5] = [0.0, -1.0, np.nan, np.inf, 300.0]  # unknown, bad and out-of-range -> 0
    kitti.write_depth_png(tmp_path / "d.png", depth)
    back = kitti.read_depth_png(tmp_path / "d.png")
    assert back.dtype == np.float32 and back.shape == depth.shape
    assert np.all(back[0, :5] == 0)
    ok = np.ones_like(depth, bool)
    ok[0, :5] = False
    assert np.max(np.abs(back[ok] - depth[ok])) <= 0.5 / 256 + 1e-6
    # exactly representable values come back exactly; a second round trip changes nothing
    kitti.write_depth_png(tmp_path / "e.png", back)
    assert np.array_equal(kitti.read_depth_png(tmp_path / "e.png"), back)


def test_depth_png_must_be_16_bit(tmp_path: Path) -> None:
    kitti.write_image(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="16-bit"):
        kitti.read_depth_png(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="does not exist"):
        kitti.read_depth_png(tmp_path / "none.png")


def test_calib_round_trip(tmp_path: Path) -> None:
    cam = front_camera()
    assert cam.P is not None
    T_cv = np.linalg.inv(cam.T_vehicle_camera)[:3]
    kitti.write_calib(tmp_path / "calib.txt", cam.P, T_cv)
    c = kitti.read_calib(tmp_path / "calib.txt")
    assert np.array_equal(c.P2, cam.P) and np.array_equal(c.K, cam.K)
    assert c.Tr_velo_to_cam is not None and np.allclose(
        c.Tr_velo_to_cam, T_cv, rtol=1e-12, atol=1e-15
    )
    assert np.array_equal(c.R0_rect, np.eye(3))
    (tmp_path / "raw.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nP_rect_02: " + " ".join(["1"] * 12) + "\n"
    )
    assert kitti.read_calib(tmp_path / "raw.txt").P2.shape == (3, 4)


def test_timestamps_round_trip(tmp_path: Path) -> None:
    stamps = [0, 100_000_000, 1_317_046_945_964_389_445, 1_700_000_000_123_456_789]
    kitti.write_timestamps(tmp_path / "t.txt", stamps)
    assert kitti.read_timestamps(tmp_path / "t.txt") == stamps
    assert (tmp_path / "t.txt").read_text().splitlines()[2] == "2011-09-26 14:22:25.964389445"
    (tmp_path / "bad.txt").write_text("yesterday\n")
    with pytest.raises(UserError, match=r"bad\.txt:1"):
        kitti.read_timestamps(tmp_path / "bad.txt")


def test_object_label_to_kitti_uses_bottom_centre_and_alpha() -> None:
    cam = front_camera()  # level camera: down is +y
    label = ObjectLabel(
        track_id=4,
        class_name="car",
        box_xyxy=np.array([100, 150, 200, 220], np.float32),
        truncation=0.1,
        occlusion=0.3,
        visible_px=500,
        size_lwh=np.array([4.0, 1.8, 1.5]),
        center_cam=np.array([3.0, 0.75, 20.0]),
        yaw_cam=-1.5,
        center_vehicle=np.zeros(3),
        yaw_vehicle=0.0,
        velocity_vehicle=np.zeros(3),
        relative_velocity_vehicle=np.zeros(3),
    )
    k = to_kitti(label, cam, frame=9)
    assert k.type == "Car" and k.frame == 9 and k.track_id == 4 and k.occluded == 1
    assert k.location_xyz == pytest.approx((3.0, 1.5, 20.0))
    assert k.dimensions_hwl == (1.5, 1.8, 4.0)
    assert k.alpha == pytest.approx(-1.5 - math.atan2(3.0, 20.0))
    assert kitti.occlusion_level(0.05) == 0 and kitti.occlusion_level(0.7) == 2
