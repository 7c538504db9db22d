"""Datasets and file formats: KITTI labels/depth/calib/timestamps, drive folders, synthetic
frames on the fly, and geometry-consistent augmentation.

The dataset classes import torch; they load on first use so that file tools stay light.
"""

from typing import Any

from perception.data.augment import Augment, AugmentConfig, colour_jitter, hflip, scale_crop
from perception.data.drive import DriveWriter, camera_from_drive, read_drive_info, to_kitti
from perception.data.sample import Sample

_LAZY = {"KittiDriveDataset", "SyntheticDataset", "sample_from_frame"}

__all__ = [
    "Augment",
    "AugmentConfig",
    "DriveWriter",
    "KittiDriveDataset",
    "Sample",
    "SyntheticDataset",
    "camera_from_drive",
    "colour_jitter",
    "hflip",
    "read_drive_info",
    "sample_from_frame",
    "scale_crop",
    "to_kitti",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from perception.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'perception.data' has no attribute {name!r}")
