"""Cameras and drives shared by the generator tests (small where the test allows)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from perception.camera import CameraModel
from perception.synth import DriveConfig, SensorConfig, TrafficConfig

REPO = Path(__file__).resolve().parents[2]
FRONT_YAML = REPO / "calibration" / "synthetic_front.yaml"


def front_camera() -> CameraModel:
    return CameraModel.load(FRONT_YAML)


def pitched_camera(
    pitch_deg: float, height_m: float = 1.4, width: int = 320, height: int = 192, f: float = 200.0
) -> CameraModel:
    """A camera looking forward and pitch_deg down, height_m above the road."""
    p = math.radians(pitch_deg)
    c, s = math.cos(p), math.sin(p)
    x_cam = [0.0, -1.0, 0.0]  # optical axes in vehicle coordinates
    y_cam = [-s, 0.0, -c]
    z_cam = [c, 0.0, -s]
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x_cam, y_cam, z_cam])
    T[:3, 3] = [1.2, 0.0, height_m]
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    return CameraModel(name="pitched", width=width, height=height, K=K, T_vehicle_camera=T)


def empty_street() -> DriveConfig:
    """No agents, no roadside, no sensor effects, no sway: just road and sky."""
    return DriveConfig(
        traffic=TrafficConfig(density=0.0),
        roadside=False,
        ego_sway=False,
        sensor=SensorConfig(enabled=False),
    )
