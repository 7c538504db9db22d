"""Procedural driving scenes with exact ground truth (boxes, track ids, per-pixel depth).

    from perception.camera import CameraModel
    from perception.synth import SyntheticDrive

    drive = SyntheticDrive(seed=1, camera=CameraModel.load("calibration/synthetic_front.yaml"))
    frame = drive.frame(0)   # image_bgr, depth_m, objects (ObjectLabel), stamp_ns

See docs/synthetic.md for the world model and the ground-truth definitions.
"""

from perception.synth.classes import CLASS_IDS, CLASS_SIZES, CLASSES
from perception.synth.config import DriveConfig, SensorConfig, TrafficConfig
from perception.synth.drive import SyntheticDrive, SynthFrame
from perception.synth.labels import EgoState, ObjectLabel

__all__ = [
    "CLASSES",
    "CLASS_IDS",
    "CLASS_SIZES",
    "DriveConfig",
    "EgoState",
    "ObjectLabel",
    "SensorConfig",
    "SynthFrame",
    "SyntheticDrive",
    "TrafficConfig",
]
