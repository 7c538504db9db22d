"""Target encoding, decoding and the losses, on generated boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.models.decode import decode_detections, dense_depth_m
from perception.models.losses import DetectionDepthLoss, focal_loss, silog_loss
from perception.models.targets import encode_targets, stack_targets

BOXES = torch.tensor(
    [
        [10.3, 20.7, 60.1, 50.2],  # car
        [100.0, 8.0, 118.5, 60.0],  # pedestrian, tall
        [150.2, 70.4, 190.0, 95.9],  # truck near the right edge
    ]
)
CLASSES = torch.tensor([0, 2, 1])
DEPTH = torch.tensor([12.5, 7.0, 40.0])
HW = (128, 192)


def _perfect_outputs(targets: dict[str, torch.Tensor], stride: int) -> dict[str, torch.Tensor]:
    """Network outputs that say exactly what the targets say (logits +-12 on the heatmap)."""
    _, h, w = targets["heatmap"].shape
    out = {
        "heatmap": torch.where(targets["heatmap"] == 1, 12.0, -12.0)[None],
        "log_size": torch.zeros(1, 2, h * w),
        "offset": torch.zeros(1, 2, h * w),
        "obj_log_depth": torch.zeros(1, 1, h * w),
    }
    idx = targets["indices"][targets["mask"]]
    out["log_size"][0, :, idx] = targets["log_size"][targets["mask"]].T
    out["offset"][0, :, idx] = targets["offset"][targets["mask"]].T
    out["obj_log_depth"][0, 0, idx] = targets["obj_log_depth"][targets["mask"]]
    for key in ("log_size", "offset", "obj_log_depth"):
        out[key] = out[key].reshape(1, -1, h, w)
    return out


@pytest.mark.parametrize(("stride", "class_agnostic"), [(4, False), (8, False), (4, True)])
def test_encode_then_decode_recovers_boxes(stride, class_agnostic):
    t = encode_targets(BOXES, CLASSES, DEPTH, num_classes=4, input_hw=HW, stride=stride)
    assert t["heatmap"].shape == (4, HW[0] // stride, HW[1] // stride)
    assert int(t["mask"].sum()) == 3 and t["depth_mask"][:3].all()
    assert (t["heatmap"] >= 0).all() and (t["heatmap"] <= 1).all()
    assert int((t["heatmap"] == 1).sum()) == 3  # one exact peak per object
    outputs = _perfect_outputs(t, stride)
    (dec,) = decode_detections(outputs, stride=stride, top_k=10, class_agnostic=class_agnostic)
    assert len(dec.scores) == 10 and np.all(np.diff(dec.scores) <= 0)  # best first
    found = dec.scores > 0.5
    assert int(found.sum()) == 3
    order = np.argsort(dec.boxes_xyxy[found, 0])
    np.testing.assert_allclose(dec.boxes_xyxy[found][order], BOXES.numpy(), atol=1e-3, rtol=0)
    assert dec.class_ids[found][order].tolist() == CLASSES.tolist()
    np.testing.assert_allclose(dec.depth_m[found][order], DEPTH.numpy(), rtol=1e-5, atol=0)
    # min_score drops the rest before reading them; the same three remain
    (strict,) = decode_detections(
        outputs, stride=stride, top_k=10, class_agnostic=class_agnostic, min_score=0.5
    )
    np.testing.assert_array_equal(strict.boxes_xyxy, dec.boxes_xyxy[:3])


def test_encode_handles_empty_clipped_and_unknown_depth():
    empty = encode_targets(torch.zeros(0, 4), [], [], num_classes=2, input_hw=HW, stride=4)
    assert not empty["mask"].any() and empty["heatmap"].sum() == 0
    t = encode_targets(
        [[-50.0, 10.0, 20.0, 40.0], [300.0, 0.0, 400.0, 10.0], [5.0, 5.0, 5.2, 30.0]],
        [0, 1, 1],
        [float("nan"), 5.0, 5.0],
        num_classes=2,
        input_hw=HW,
        stride=4,
    )
    # The first box is clipped to the image, the second is outside, the third is too thin.
    assert int(t["mask"].sum()) == 1
    assert not t["depth_mask"][0]
    assert t["log_size"][0, 0] == pytest.approx(math.log((20.0 + 0.5) / 4), rel=1e-5)
    with pytest.raises(ValueError, match="class_ids"):
        encode_targets([[0, 0, 10, 10]], [5], [1.0], num_classes=2, input_hw=HW, stride=4)


def test_focal_loss_prefers_the_right_heatmap():
    t = encode_targets(BOXES, CLASSES, DEPTH, num_classes=4, input_hw=HW, stride=4)
    good = _perfect_outputs(t, 4)["heatmap"]
    bad = -good
    assert focal_loss(good, t["heatmap"][None]) < 0.01
    assert focal_loss(bad, t["heatmap"][None]) > 10 * focal_loss(good, t["heatmap"][None])


def test_silog_is_scale_invariant_and_masks_invalid_pixels():
    gt = torch.rand(1, 1, 8, 8) * 50 + 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    log_gt = gt.log()
    assert silog_loss(log_gt + math.log(3.0), log_gt, valid, lam=1.0) < 1e-3
    assert silog_loss(log_gt, log_gt, valid) < 1e-3
    noisy = log_gt + 0.3 * torch.randn_like(log_gt)
    assert silog_loss(noisy, log_gt, valid) > 0.1
    # Pixels without ground truth (depth <= 0) do not count.
    loss = DetectionDepthLoss()
    t = stack_targets([encode_targets(BOXES, CLASSES, DEPTH, 4, HW, 4)])
    outputs = _perfect_outputs({k: v[0] for k, v in t.items()}, 4)
    outputs["log_depth"] = torch.full((1, 1, *HW), math.log(10.0))
    depth_gt = torch.full((1, *HW), 10.0)
    depth_gt[:, :, :50] = 0.0
    base = loss(outputs, t, depth_gt)
    outputs["log_depth"][..., :50] = 5.0  # change the prediction only where gt is invalid
    again = loss(outputs, t, depth_gt)
    assert base["depth_l1"] == pytest.approx(0.0, abs=1e-6)
    assert again["depth_l1"] == pytest.approx(0.0, abs=1e-6)
    assert again["depth_silog"] == pytest.approx(base["depth_silog"].item(), abs=1e-6)
    # Perfect detection outputs give near-zero detection terms.
    for key in ("heatmap", "size", "offset", "obj_depth"):
        assert base[key] < 0.01, key
    assert set(base) >= {"heatmap", "size", "offset", "obj_depth", "depth_silog", "total"}


def test_dense_depth_conversions():
    log_depth = torch.tensor([[[[0.0, math.log(20.0), 100.0]]]])
    d = dense_depth_m({"log_depth": log_depth}, log_depth_range=(math.log(0.1), math.log(300.0)))
    torch.testing.assert_close(d, torch.tensor([[[[1.0, 20.0, 300.0]]]]))
    inv = {"inverse_depth": torch.tensor([[[[0.0, 1.0, 4.0]]]])}
    with pytest.raises(ValueError, match="inverse_affine"):
        dense_depth_m(inv)
    d = dense_depth_m(inv, inverse_affine=(0.5, -0.1))
    torch.testing.assert_close(d, torch.tensor([[[[0.0, 1 / 0.4, 1 / 1.9]]]]))


def test_local_peaks_match_torch_max_pool():
    from perception.models.decode import local_peaks

    x = torch.randn(17, 23)
    x[3, 4] = x[3, 5] = 9.0  # a plateau: both cells are peaks, as with max_pool2d
    expected = torch.nn.functional.max_pool2d(x[None, None], 3, 1, 1)[0, 0] == x
    np.testing.assert_array_equal(local_peaks(x.numpy()), expected.numpy())


def test_class_agnostic_decoding_keeps_one_label_per_cell():
    logits = torch.full((1, 3, 8, 8), -10.0)
    logits[0, 0, 4, 4] = 2.0  # the same cell peaks in two classes
    logits[0, 2, 4, 4] = 1.0
    outputs = {
        "heatmap": logits,
        "log_size": torch.zeros(1, 2, 8, 8),
        "offset": torch.zeros(1, 2, 8, 8),
        "obj_log_depth": torch.zeros(1, 1, 8, 8),
    }
    (per_class,) = decode_detections(outputs, stride=4, top_k=5)
    assert (per_class.scores > 0.5).sum() == 2
    (agnostic,) = decode_detections(outputs, stride=4, top_k=5, class_agnostic=True)
    assert (agnostic.scores > 0.5).sum() == 1
    assert agnostic.class_ids[0] == 0
    assert agnostic.scores[0] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
