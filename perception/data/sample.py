"""`Sample`: one training item, as numpy arrays (the trainer encodes its own targets)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Sample:
    """An image with its boxes, classes, per-object depth and dense depth.

    * ``boxes_xyxy``: (N, 4) float32 pixels, pixel centres at integer coordinates; KITTI's
      convention: an object whose pixels span columns u0..u1 and rows v0..v1 has the box
      [u0, v0, u1, v1].
    * ``object_depth_m``: (N,) float32, z of the 3D box centre in the camera frame (for KITTI
      labels: the z of the location, which for a level camera equals the centre's z).
    * ``depth_m``: (H, W) float32 metres along the optical axis, 0 = unknown.
    * ``K``: (3, 3) intrinsics that map this sample's camera-frame points to its pixels; with
      augmentation ``depth_mode="rescale"`` the scene is the original one seen at depth / s.
    """

    image_bgr: np.ndarray
    boxes_xyxy: np.ndarray
    class_ids: np.ndarray  # (N,) int64, index into the dataset's classes
    object_depth_m: np.ndarray
    track_ids: np.ndarray  # (N,) int64, -1 where unknown
    depth_m: np.ndarray
    K: np.ndarray
    ignore_boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    instance_map: np.ndarray | None = None  # (H, W) int32 track id per pixel (synthetic only)
    stamp_ns: int = 0
    index: int = 0

    @property
    def height(self) -> int:
        return int(self.image_bgr.shape[0])

    @property
    def width(self) -> int:
        return int(self.image_bgr.shape[1])

    def select(self, keep: np.ndarray) -> Sample:
        """The same sample with only the objects where `keep` is true."""
        return replace(
            self,
            boxes_xyxy=self.boxes_xyxy[keep],
            class_ids=self.class_ids[keep],
            object_depth_m=self.object_depth_m[keep],
            track_ids=self.track_ids[keep],
        )

    def check(self) -> None:
        """Assert that the arrays agree in type and shape (used by tests and debug runs)."""
        n = len(self.boxes_xyxy)
        h, w = self.height, self.width
        assert self.image_bgr.dtype == np.uint8 and self.image_bgr.shape == (h, w, 3)
        assert self.boxes_xyxy.dtype == np.float32 and self.boxes_xyxy.shape == (n, 4)
        assert self.class_ids.dtype == np.int64 and self.class_ids.shape == (n,)
        assert self.object_depth_m.dtype == np.float32 and self.object_depth_m.shape == (n,)
        assert self.track_ids.shape == (n,)
        assert self.depth_m.dtype == np.float32 and self.depth_m.shape == (h, w)
        assert self.K.shape == (3, 3)
        if self.instance_map is not None:
            assert self.instance_map.shape == (h, w)
