"""Datasets over drive folders and over on-the-fly synthetic frames."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from perception.camera import CameraModel
from perception.data import kitti
from perception.data.augment import Augment, AugmentConfig
from perception.data.datasets import KittiDriveDataset, SyntheticDataset
from perception.data.drive import DriveWriter, camera_from_drive, read_drive_info
from perception.errors import UserError
from perception.synth import CLASSES, SyntheticDrive
from tests.synth.helpers import front_camera


@pytest.fixture(scope="module")
def camera() -> CameraModel:
    return front_camera().scaled(480, 288)


@pytest.fixture(scope="module")
def drive_dir(tmp_path_factory: pytest.TempPathFactory, camera: CameraModel) -> Path:
    root = tmp_path_factory.mktemp("drive")
    drive = SyntheticDrive(31, camera)
    writer = DriveWriter(root, camera, fps=drive.config.fps, seed=31, start_frame=5)
    for i in range(5, 8):
        writer.write(drive.frame(i))
    writer.close()
    return root


def test_synthetic_items(camera: CameraModel) -> None:
    ds = SyntheticDataset([31, 32], 3, camera, frame_stride=5, start_frame=5)
    assert len(ds) == 6 and ds.locate(4) == (32, 10)
    s = ds[4]
    s.check()
    assert s.image_bgr.shape == (288, 480, 3) and s.index == 10
    assert s.stamp_ns == 1_000_000_000
    assert np.all((s.class_ids >= 0) & (s.class_ids < len(CLASSES)))
    assert np.array_equal(s.K, camera.K)
    assert len(s.boxes_xyxy) > 0 and np.all(s.object_depth_m > 0)
    # pickles without its drives (DataLoader workers rebuild them)
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone[4].image_bgr, s.image_bgr)


def test_augmented_items_are_reproducible_per_epoch(camera: CameraModel) -> None:
    aug = Augment(AugmentConfig(scale_p=1.0, hflip_p=0.5))
    ds = SyntheticDataset([31], 2, camera, augment=aug, augment_seed=5)
    a, b = ds[1], ds[1]
    assert np.array_equal(a.image_bgr, b.image_bgr) and np.array_equal(a.boxes_xyxy, b.boxes_xyxy)
    ds.set_epoch(1)
    c = ds[1]
    assert not np.array_equal(a.image_bgr, c.image_bgr)


def test_drive_folder_reads_back_what_was_rendered(drive_dir: Path, camera: CameraModel) -> None:
    ds = KittiDriveDataset(drive_dir)
    direct = SyntheticDataset([31], 3, camera, start_frame=5)
    assert len(ds) == 3
    info = read_drive_info(drive_dir)
    assert info is not None and (info.seed, info.frames, info.start_frame) == (31, 3, 5)
    assert info.classes == list(CLASSES)
    cam = camera_from_drive(drive_dir)
    assert np.allclose(cam.K, camera.K) and np.allclose(
        cam.T_vehicle_camera, camera.T_vehicle_camera
    )
    for i in range(3):
        a, b = ds[i], direct[i]
        a.check()
        assert a.index == b.index and a.stamp_ns == b.stamp_ns
        assert np.array_equal(a.image_bgr, b.image_bgr)
        assert np.array_equal(a.class_ids, b.class_ids) and np.array_equal(a.track_ids, b.track_ids)
        assert np.allclose(a.boxes_xyxy, b.boxes_xyxy, atol=0.005)
        assert np.allclose(a.object_depth_m, b.object_depth_m, atol=0.0051)
        assert np.allclose(a.depth_m, b.depth_m, atol=0.5 / 256 + 1e-6)
        assert np.array_equal(a.depth_m > 0, b.depth_m > 0)
        assert len(a.ignore_boxes_xyxy) == len(b.ignore_boxes_xyxy)
        assert np.allclose(a.K, b.K)


def test_kitti_object_layout_with_per_frame_calib(tmp_path: Path) -> None:
    (tmp_path / "image_2").mkdir()
    (tmp_path / "label_2").mkdir()
    (tmp_path / "calib").mkdir()
    kitti.write_image(tmp_path / "image_2" / "000042.png", np.zeros((20, 30, 3), np.uint8))
    P2 = np.array([[700.0, 0, 15, 45], [0, 700, 10, 0], [0, 0, 1, 0]])
    kitti.write_calib(tmp_path / "calib" / "000042.txt", P2)
    (tmp_path / "label_2" / "000042.txt").write_text(
        "Van 0.00 0 -1.58 5.00 6.00 12.00 14.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
        "DontCare -1 -1 -10 1.00 2.00 3.00 4.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
        "Tram 0.00 0 -1.58 15.00 6.00 22.00 14.00 3.65 2.67 13.64 -0.65 1.71 26.70 -1.59\n"
    )
    s = KittiDriveDataset(tmp_path)[0]
    s.check()
    assert s.index == 42 and s.class_ids.tolist() == [0] and s.track_ids.tolist() == [-1]
    assert s.object_depth_m.tolist() == pytest.approx([46.7])
    assert len(s.ignore_boxes_xyxy) == 2 and np.all(s.depth_m == 0)
    assert np.array_equal(s.K, P2[:, :3])


def test_bad_folders_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="image_2"):
        KittiDriveDataset(tmp_path)
    (tmp_path / "image_2").mkdir()
    with pytest.raises(UserError, match=r"no \.png"):
        KittiDriveDataset(tmp_path)
    kitti.write_image(tmp_path / "image_2" / "000000.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="calib"):
        KittiDriveDataset(tmp_path)[0]
