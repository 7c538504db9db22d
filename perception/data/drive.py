"""Drive folders: a synthetic (or converted) drive on disk in KITTI layout.

    DRIVE/
      image_2/000000.png    colour frames (BGR PNG)
      depth/000000.png      depth, uint16 metres x 256, 0 = no depth
      label_2/000000.txt    one file per frame, KITTI *tracking* lines (frame track_id type ...)
      calib.txt             KITTI calib: P0..P3 = P2, R0_rect, Tr_velo_to_cam = vehicle -> camera
      timestamps.txt        capture time of each frame, KITTI raw style (UTC, nanoseconds)
      camera.yaml           the calibration it was rendered with (camera_info + extrinsics)
      drive.json            seed, fps, frame count, size, classes, format version

Frame files are numbered from the drive's first frame index (six digits). See
docs/synthetic.md for the label conventions.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.camera import CameraModel
from perception.data import kitti
from perception.errors import UserError
from perception.synth.classes import CLASSES
from perception.synth.drive import SynthFrame
from perception.synth.labels import ObjectLabel

DRIVE_FORMAT = "perception-drive"
DRIVE_VERSION = 1
IMAGE_DIR, DEPTH_DIR, LABEL_DIR = "image_2", "depth", "label_2"


def frame_name(index: int) -> str:
    return f"{index:06d}"


def to_kitti(
    label: ObjectLabel, camera: CameraModel, frame: int | None = None
) -> kitti.KittiObject:
    """An object label as a KITTI object (location = bottom centre of the box, camera frame)."""
    h = float(label.size_lwh[2])
    box = [float(v) for v in label.box_xyxy]
    down_cam = camera.T_vehicle_camera[:3, :3].T @ np.array([0.0, 0.0, -1.0])
    bottom = np.asarray(label.center_cam, np.float64) + 0.5 * h * down_cam
    return kitti.KittiObject(
        type=kitti.KITTI_TYPES[label.class_name],
        truncated=float(label.truncation),
        occluded=kitti.occlusion_level(label.occlusion),
        alpha=kitti.observation_angle(label.yaw_cam, float(bottom[0]), float(bottom[2])),
        bbox_xyxy=(box[0], box[1], box[2], box[3]),
        dimensions_hwl=(h, float(label.size_lwh[1]), float(label.size_lwh[0])),
        location_xyz=(float(bottom[0]), float(bottom[1]), float(bottom[2])),
        rotation_y=float(label.yaw_cam),
        frame=frame,
        track_id=label.track_id if frame is not None else None,
    )


def camera_yaml(camera: CameraModel) -> dict[str, Any]:
    """A camera as a ROS camera_info document with an extrinsics block."""
    assert camera.P is not None

    def block(m: np.ndarray) -> dict[str, Any]:
        m = np.atleast_2d(m)
        return {
            "rows": int(m.shape[0]),
            "cols": int(m.shape[1]),
            "data": [float(v) for v in m.ravel()],
        }

    T = camera.T_vehicle_camera
    return {
        "image_width": camera.width,
        "image_height": camera.height,
        "camera_name": camera.name,
        "camera_matrix": block(camera.K),
        "distortion_model": camera.distortion_model,
        "distortion_coefficients": block(camera.D.reshape(1, -1)),
        "rectification_matrix": block(camera.R),
        "projection_matrix": block(camera.P),
        "extrinsics": {
            "frame_id": camera.frame_id,
            "parent_frame_id": "vehicle",
            "translation": [float(v) for v in T[:3, 3]],
            "rotation": block(T[:3, :3]),
        },
    }


@dataclass
class DriveInfo:
    """What drive.json says."""

    seed: int | None
    fps: float
    frames: int
    start_frame: int
    width: int
    height: int
    classes: list[str]
    extra: dict[str, Any]


class DriveWriter:
    """Writes frames of one drive into a folder (see the module docstring for the layout)."""

    def __init__(
        self,
        root: str | Path,
        camera: CameraModel,
        *,
        fps: float,
        seed: int | None = None,
        start_frame: int = 0,
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
        png_compression: int = 1,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                raise UserError(
                    f"output folder {self.root} is not empty (use --overwrite to replace it)"
                )
            for sub in (IMAGE_DIR, DEPTH_DIR, LABEL_DIR):
                shutil.rmtree(self.root / sub, ignore_errors=True)
        for sub in (IMAGE_DIR, DEPTH_DIR, LABEL_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.camera = camera
        self.fps = fps
        self.seed = seed
        self.start_frame = start_frame
        self.extra = extra or {}
        self.png_compression = png_compression
        self.stamps: list[int] = []
        assert camera.P is not None
        T_cv = np.linalg.inv(camera.T_vehicle_camera)
        kitti.write_calib(self.root / "calib.txt", camera.P, T_cv[:3, :4], camera.R)
        (self.root / "camera.yaml").write_text(
            "# Calibration this drive was rendered with (ROS camera_info + extrinsics).\n"
            + yaml.safe_dump(camera_yaml(camera), sort_keys=False)
        )

    def write(self, frame: SynthFrame) -> None:
        name = frame_name(frame.index)
        kitti.write_image(
            self.root / IMAGE_DIR / f"{name}.png", frame.image_bgr, self.png_compression
        )
        kitti.write_depth_png(
            self.root / DEPTH_DIR / f"{name}.png", frame.depth_m, self.png_compression
        )
        objects = [to_kitti(o, self.camera, frame.index) for o in frame.objects]
        objects += [kitti.dont_care(o.box_xyxy, frame.index) for o in frame.ignored]
        kitti.write_labels(self.root / LABEL_DIR / f"{name}.txt", objects)
        self.stamps.append(frame.stamp_ns)

    def close(self) -> None:
        """Write timestamps.txt and drive.json (call after the last frame)."""
        kitti.write_timestamps(self.root / "timestamps.txt", self.stamps)
        info = {
            "format": DRIVE_FORMAT,
            "version": DRIVE_VERSION,
            "seed": self.seed,
            "fps": self.fps,
            "frames": len(self.stamps),
            "start_frame": self.start_frame,
            "width": self.camera.width,
            "height": self.camera.height,
            "classes": list(CLASSES),
            "kitti_types": dict(kitti.KITTI_TYPES),
            "depth_scale": kitti.DEPTH_SCALE,
            "label_format": "kitti_tracking",
            **self.extra,
        }
        (self.root / "drive.json").write_text(json.dumps(info, indent=2) + "\n")


def read_drive_info(root: str | Path) -> DriveInfo | None:
    """drive.json of a drive folder, or None where there is none (e.g. a KITTI export)."""
    path = Path(root) / "drive.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return DriveInfo(
            seed=doc.get("seed"),
            fps=float(doc["fps"]),
            frames=int(doc["frames"]),
            start_frame=int(doc.get("start_frame", 0)),
            width=int(doc["width"]),
            height=int(doc["height"]),
            classes=list(doc.get("classes", CLASSES)),
            extra={
                k: v
                for k, v in doc.items()
                if k not in {"seed", "fps", "frames", "start_frame", "width", "height", "classes"}
            },
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a valid drive.json: {exc}") from None


def camera_from_drive(root: str | Path) -> CameraModel:
    """The camera of a drive folder: camera.yaml if present, else K from calib.txt."""
    root = Path(root)
    if (root / "camera.yaml").exists():
        return CameraModel.load(root / "camera.yaml")
    calib = kitti.read_calib(root / "calib.txt")
    image = next(iter(sorted((root / IMAGE_DIR).glob("*.png"))), None)
    if image is None:
        raise UserError(f"{root}: no images in {IMAGE_DIR}/")
    h, w = kitti.read_image(image).shape[:2]
    return CameraModel(name="camera", width=w, height=h, K=calib.K, P=calib.P2)
