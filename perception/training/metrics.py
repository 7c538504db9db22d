"""Evaluation metrics: COCO-style detection AP (pycocotools) and the KITTI/Eigen depth metrics.

Detection (:class:`DetectionEvaluator`): average precision at IoU 0.5 and 0.7, per class and
their mean, computed by pycocotools' ``COCOeval`` (101-point interpolated precision, one area
range, up to 100 detections per image). Which ground truth counts, following KITTI's
*moderate* difficulty:

* an object is **evaluated** when its box is at least ``min_height_px`` (25) pixels high, its
  KITTI occlusion level is at most 1 (less than half hidden) and its truncation at most 0.3;
* every other labelled object, and every DontCare region (objects too small to label, types
  we do not detect), is an **ignore region**: it is passed to COCOeval as a crowd box, for
  every class, so a detection on it is neither a true nor a false positive, and missing it
  costs nothing.

Depth (:class:`DepthEvaluator`): AbsRel, SqRel, RMSE, RMSE log and the δ < 1.25, 1.25², 1.25³
accuracies (Eigen et al. 2014, as on the KITTI Eigen split): only pixels with ground truth in
(``min_depth_m``, ``max_depth_m``) = (1e-3, 80) m count, predictions are clipped to the same
range, each frame's metrics are averaged over its valid pixels and the frames are averaged.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
IOU_THRESHOLDS = (0.5, 0.7)


@dataclass(frozen=True)
class DifficultyRule:
    """Which labelled objects are evaluated (the rest become ignore regions): KITTI moderate."""

    min_height_px: float = 25.0
    max_occlusion_level: int = 1
    max_truncation: float = 0.3

    def evaluated(
        self, boxes_xyxy: np.ndarray, occlusion_levels: np.ndarray, truncation: np.ndarray
    ) -> np.ndarray:
        height = boxes_xyxy[:, 3] - boxes_xyxy[:, 1]
        return (
            (height >= self.min_height_px)
            & (occlusion_levels <= self.max_occlusion_level)
            & (truncation <= self.max_truncation)
        )


@dataclass
class FrameTruth:
    """Ground truth of one frame for detection scoring (source-image pixels)."""

    boxes_xyxy: np.ndarray  # (N, 4)
    class_ids: np.ndarray  # (N,)
    evaluated: np.ndarray  # (N,) bool: False = ignore region of its class
    ignore_boxes_xyxy: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 4), np.float32)
    )  # DontCare regions: ignored for every class


def _xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


class DetectionEvaluator:
    """Collects frames of ground truth and detections, then runs COCOeval once."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.images: list[dict[str, Any]] = []
        self.gts: list[dict[str, Any]] = []
        self.dets: list[dict[str, Any]] = []

    def add(
        self,
        truth: FrameTruth,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        image_hw: tuple[int, int],
    ) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": image_hw[0], "width": image_hw[1]})
        for (x, y, w, h), c, ok in zip(
            _xywh(truth.boxes_xyxy), truth.class_ids, truth.evaluated, strict=True
        ):
            self._gt(image_id, int(c), x, y, w, h, crowd=not bool(ok))
        for x, y, w, h in _xywh(truth.ignore_boxes_xyxy):
            for c in range(len(self.class_names)):
                self._gt(image_id, c, x, y, w, h, crowd=True)
        for (x, y, w, h), s, c in zip(_xywh(boxes_xyxy), scores, class_ids, strict=True):
            if w > 0 and h > 0:
                self.dets.append(
                    {
                        "image_id": image_id,
                        "category_id": int(c) + 1,
                        "bbox": [float(x), float(y), float(w), float(h)],
                        "score": float(s),
                    }
                )

    def _gt(
        self, image_id: int, c: int, x: float, y: float, w: float, h: float, crowd: bool
    ) -> None:
        if w <= 0 or h <= 0:
            return
        self.gts.append(
            {
                "id": len(self.gts) + 1,
                "image_id": image_id,
                "category_id": c + 1,
                "bbox": [float(x), float(y), float(w), float(h)],
                "area": float(w * h),
                "iscrowd": int(crowd),
            }
        )

    def counts(self) -> dict[str, int]:
        """Evaluated ground-truth objects per class."""
        out = dict.fromkeys(self.class_names, 0)
        for g in self.gts:
            if not g["iscrowd"]:
                out[self.class_names[g["category_id"] - 1]] += 1
        return out

    def compute(self) -> dict[str, Any]:
        """``{"ap50": {class: AP or None}, "ap70": {...}, "map50", "map70", "gt_counts"}``.

        A class without evaluated ground truth has AP None and is left out of the means.
        """
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        counts = self.counts()
        result: dict[str, Any] = {"gt_counts": counts, "frames": len(self.images)}
        gt = COCO()
        gt.dataset = {
            "images": self.images,
            "annotations": self.gts,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(self.dets) if self.dets else COCO()
            if not self.dets:
                dt.dataset = {"images": self.images, "annotations": [], "categories": []}
                dt.createIndex()
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.iouThrs = np.array(IOU_THRESHOLDS)
            ev.params.areaRng = [[0.0, 1e10]]
            ev.params.areaRngLbl = ["all"]
            ev.params.maxDets = [100]
            ev.evaluate()
            ev.accumulate()
        precision = ev.eval["precision"]  # (T, R, K, A, M)
        for t, thr in enumerate(IOU_THRESHOLDS):
            key = f"ap{round(thr * 100)}"
            per_class: dict[str, float | None] = {}
            for k, name in enumerate(self.class_names):
                p = precision[t, :, k, 0, 0]
                per_class[name] = (
                    float(p[p > -1].mean()) if counts[name] and (p > -1).any() else None
                )
            result[key] = per_class
            valid = [v for v in per_class.values() if v is not None]
            result[f"m{key}"] = float(np.mean(valid)) if valid else None
        return result


class DepthEvaluator:
    """Per-frame Eigen metrics, averaged over frames."""

    def __init__(self, min_depth_m: float = 1e-3, max_depth_m: float = 80.0) -> None:
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m
        self.frames: list[dict[str, float]] = []

    def add(self, pred_m: np.ndarray, gt_m: np.ndarray) -> dict[str, float] | None:
        """Score one frame (same shape); returns its metrics, None when it has no valid GT."""
        if pred_m.shape != gt_m.shape:
            raise ValueError(f"prediction {pred_m.shape} and ground truth {gt_m.shape} differ")
        valid = np.isfinite(gt_m) & (gt_m > self.min_depth_m) & (gt_m < self.max_depth_m)
        if not valid.any():
            return None
        gt = gt_m[valid].astype(np.float64)
        pred = np.clip(
            np.nan_to_num(pred_m[valid].astype(np.float64)), self.min_depth_m, self.max_depth_m
        )
        ratio = np.maximum(gt / pred, pred / gt)
        diff = gt - pred
        m = {
            "abs_rel": float(np.mean(np.abs(diff) / gt)),
            "sq_rel": float(np.mean(diff**2 / gt)),
            "rmse": float(math.sqrt(np.mean(diff**2))),
            "rmse_log": float(math.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
            "delta1": float(np.mean(ratio < 1.25)),
            "delta2": float(np.mean(ratio < 1.25**2)),
            "delta3": float(np.mean(ratio < 1.25**3)),
        }
        self.frames.append(m)
        return m

    def compute(self) -> dict[str, float | None]:
        if not self.frames:
            return dict.fromkeys(DEPTH_KEYS)
        return {k: float(np.mean([f[k] for f in self.frames])) for k in DEPTH_KEYS}
