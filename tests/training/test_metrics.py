"""The metric code itself: perfect predictions score perfectly, known errors score as computed
by hand, ignore regions cost nothing."""

from __future__ import annotations

import numpy as np
import pytest

from perception.training.metrics import (
    DepthEvaluator,
    DetectionEvaluator,
    DifficultyRule,
    FrameTruth,
)

CLASSES = ["car", "truck", "pedestrian", "cyclist"]


def _frames(rng: np.random.Generator, n: int = 5) -> list[FrameTruth]:
    out = []
    for _ in range(n):
        k = 6
        x0 = rng.uniform(0, 500, k)
        y0 = rng.uniform(0, 250, k)
        w = rng.uniform(30, 120, k)
        h = rng.uniform(30, 120, k)
        boxes = np.column_stack([x0, y0, x0 + w, y0 + h]).astype(np.float32)
        out.append(FrameTruth(boxes, rng.integers(0, 4, k), np.ones(k, bool)))
    return out


def test_perfect_detections_give_ap_one() -> None:
    ev = DetectionEvaluator(CLASSES)
    for t in _frames(np.random.default_rng(0)):
        ev.add(t, t.boxes_xyxy, np.full(len(t.boxes_xyxy), 0.9), t.class_ids, (384, 640))
    m = ev.compute()
    assert m["map50"] == pytest.approx(1.0)
    assert m["map70"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in m["ap50"].values() if v is not None)


def test_no_detections_give_ap_zero_and_absent_class_is_none() -> None:
    ev = DetectionEvaluator(CLASSES)
    t = FrameTruth(np.array([[10, 10, 60, 60]], np.float32), np.array([0]), np.array([True]))
    ev.add(t, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), (384, 640))
    m = ev.compute()
    assert m["ap50"]["car"] == 0.0
    assert m["ap50"]["truck"] is None  # no ground truth: left out of the mean
    assert m["map50"] == 0.0


def test_iou_between_thresholds_counts_at_05_only() -> None:
    # A detection shifted so IoU = 0.6: a hit at 0.5, a miss (and a false positive) at 0.7.
    gt = np.array([[100, 100, 200, 200]], np.float32)
    shift = 25.0  # IoU = (100-25)*100 / (2*100*100 - 75*100) = 7500 / 12500 = 0.6
    det = gt + np.array([shift, 0, shift, 0], np.float32)
    ev = DetectionEvaluator(CLASSES)
    ev.add(
        FrameTruth(gt, np.array([0]), np.array([True])),
        det,
        np.array([0.8]),
        np.array([0]),
        (384, 640),
    )
    m = ev.compute()
    assert m["ap50"]["car"] == pytest.approx(1.0)
    assert m["ap70"]["car"] == 0.0


def test_wrong_class_is_a_miss() -> None:
    gt = np.array([[100, 100, 200, 200]], np.float32)
    ev = DetectionEvaluator(CLASSES)
    ev.add(
        FrameTruth(gt, np.array([0]), np.array([True])),
        gt,
        np.array([0.9]),
        np.array([1]),
        (384, 640),
    )
    assert ev.compute()["ap50"]["car"] == 0.0


def test_ignored_objects_and_regions_cost_nothing() -> None:
    gt = np.array([[100, 100, 200, 200], [300, 100, 310, 110]], np.float32)
    truth = FrameTruth(
        gt,
        np.array([0, 0]),
        np.array([True, False]),  # the second is too small: an ignore region
        ignore_boxes_xyxy=np.array([[400, 200, 500, 300]], np.float32),  # DontCare
    )
    dets = np.array([[100, 100, 200, 200], [300, 100, 310, 110], [410, 210, 480, 280]], np.float32)
    ev = DetectionEvaluator(CLASSES)
    # detections on the ignored object and on the DontCare region score higher than the hit
    ev.add(truth, dets, np.array([0.5, 0.9, 0.95]), np.array([0, 0, 2]), (384, 640))
    m = ev.compute()
    assert m["gt_counts"]["car"] == 1
    assert m["ap50"]["car"] == pytest.approx(1.0)
    # the same detections without the ignore rules: two false positives outrank the hit
    ev2 = DetectionEvaluator(CLASSES)
    ev2.add(
        FrameTruth(gt[:1], np.array([0]), np.array([True])),
        dets,
        np.array([0.5, 0.9, 0.95]),
        np.array([0, 0, 0]),
        (384, 640),
    )
    assert ev2.compute()["ap50"]["car"] < 0.5


def test_difficulty_rule_is_kitti_moderate() -> None:
    rule = DifficultyRule()
    boxes = np.array([[0, 0, 10, 30], [0, 0, 10, 24], [0, 0, 10, 40], [0, 0, 10, 40]], np.float32)
    ok = rule.evaluated(boxes, np.array([1, 0, 2, 0]), np.array([0.0, 0.0, 0.0, 0.5]))
    assert ok.tolist() == [True, False, False, False]


def test_depth_perfect_prediction() -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(2, 120, (48, 64)).astype(np.float32)
    gt[:10] = 0  # unknown (sky)
    ev = DepthEvaluator()
    ev.add(gt.copy(), gt)
    m = ev.compute()
    assert m["abs_rel"] == pytest.approx(0.0)
    assert m["rmse"] == pytest.approx(0.0)
    assert m["delta1"] == pytest.approx(1.0)


def test_depth_known_errors() -> None:
    gt = np.array([[10.0, 20.0, 0.0, 90.0]], np.float32)  # 0 and >= 80 m do not count
    pred = np.array([[12.0, 15.0, 5.0, 1.0]], np.float32)
    ev = DepthEvaluator()
    m = ev.add(pred, gt)
    assert m is not None
    assert m["abs_rel"] == pytest.approx((0.2 + 0.25) / 2)
    assert m["sq_rel"] == pytest.approx((4 / 10 + 25 / 20) / 2)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 25) / 2))
    assert m["rmse_log"] == pytest.approx(np.sqrt((np.log(1.2) ** 2 + np.log(0.75) ** 2) / 2))
    # ratios 12/10 = 1.2 and 20/15 = 1.33: only the first is within 1.25
    assert m["delta1"] == pytest.approx(0.5)
    assert m["delta2"] == pytest.approx(1.0)


def test_depth_clips_predictions_and_skips_empty_frames() -> None:
    ev = DepthEvaluator()
    assert ev.add(np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)) is None
    m = ev.add(np.full((1, 1), 500.0, np.float32), np.full((1, 1), 40.0, np.float32))
    assert m is not None and m["abs_rel"] == pytest.approx(1.0)  # prediction capped at 80 m
