"""From raw network outputs to boxes, scores and metres, on the network's device, vectorised.

CenterNet decoding (Zhou et al., https://arxiv.org/abs/1904.07850): sigmoid heatmap, a 3x3
max-pool keeps only local peaks (this replaces NMS), top-K over classes and cells together,
then size, offset and depth are read at the peaks.

Coordinates: continuous pixel coordinates of the network input with pixel centres at integers
(as :class:`perception.msgs.DepthMap`). Cell ``(i, j)`` at stride ``s`` covers input pixels
``j*s .. j*s + s - 1``; a centre at cell ``j`` with offset ``o`` is at ``(j + o) * s - 0.5``
(the inverse of :func:`perception.models.targets.encode_targets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DecodedBatch:
    """Top-K candidates per image (sorted by score), in network-input pixels; tensors on the
    network's device. Rows below any score threshold are still here: filter on ``scores``."""

    boxes_xyxy: torch.Tensor  # (B, K, 4) float32
    scores: torch.Tensor  # (B, K) float32
    class_ids: torch.Tensor  # (B, K) int64
    depth_m: torch.Tensor  # (B, K) float32


def max_pool3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max filter, stride 1, -inf padding: ``F.max_pool2d(x, 3, 1, 1)`` exactly.

    Written as two separable passes of elementwise maxima because PyTorch's CPU max-pool
    kernel (it computes indices internally) took ~2 ms on a 4x96x160 heatmap, this ~0.1 ms.
    """
    p = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def decode_detections(
    outputs: dict[str, torch.Tensor],
    stride: int,
    top_k: int = 100,
    log_depth_range: tuple[float, float] = (-2.3, 5.7),
    class_agnostic: bool = False,
) -> DecodedBatch:
    """Peaks of the heatmap as boxes. ``log_depth_range`` clamps object depth (log metres).

    ``class_agnostic``: one candidate per cell (its best class) instead of one per class and
    cell, so that an object whose heatmap peaks in two classes gives one box, not two
    identical boxes with different labels (what a tracker wants).
    """
    heat = torch.sigmoid(outputs["heatmap"].float())
    b, _, h, w = heat.shape
    best_class = None
    if class_agnostic:
        heat, best_class = heat.max(dim=1, keepdim=True)
    heat = heat * (max_pool3x3(heat) == heat)
    k = min(top_k, heat.shape[1] * h * w)
    scores, flat = heat.reshape(b, -1).topk(k, dim=1)
    if best_class is None:
        class_ids = torch.div(flat, h * w, rounding_mode="floor")
        cell = flat - class_ids * (h * w)
    else:
        cell = flat
        class_ids = best_class.reshape(b, -1).gather(1, cell)
    ys = torch.div(cell, w, rounding_mode="floor")
    xs = cell - ys * w

    def gather(name: str) -> torch.Tensor:  # (B, ch, h, w) -> (B, K, ch)
        t = outputs[name].float()
        idx = cell.unsqueeze(1).expand(-1, t.shape[1], -1)
        return t.reshape(b, t.shape[1], h * w).gather(2, idx).transpose(1, 2)

    offset = gather("offset")
    size = torch.exp(gather("log_size").clamp(max=8.0)) * stride
    cx = (xs.float() + offset[..., 0]) * stride - 0.5
    cy = (ys.float() + offset[..., 1]) * stride - 0.5
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
    depth = torch.exp(gather("obj_log_depth")[..., 0].clamp(*log_depth_range))
    return DecodedBatch(boxes_xyxy=boxes, scores=scores, class_ids=class_ids, depth_m=depth)


def dense_depth_m(
    outputs: dict[str, torch.Tensor],
    log_depth_range: tuple[float, float] = (-2.3, 5.7),
    inverse_affine: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Dense depth in metres ``(B, 1, H, W)`` float32; 0 where unknown.

    Metric models: ``exp(log_depth)`` clamped to ``log_depth_range``. Inverse-relative models
    (MiDaS): ``1 / (scale * inverse_depth + shift)`` with ``inverse_affine = (scale, shift)``,
    which must come from outside the network (ground truth, a known ground plane, ...);
    pixels where that is not positive get 0.
    """
    if "log_depth" in outputs:
        return torch.exp(outputs["log_depth"].float().clamp(*log_depth_range))
    if inverse_affine is None:
        raise ValueError("an inverse-relative depth output needs inverse_affine=(scale, shift)")
    scale, shift = inverse_affine
    disparity = outputs["inverse_depth"].float() * scale + shift
    positive = disparity > 0
    depth = 1.0 / torch.where(positive, disparity, torch.ones_like(disparity))
    lo, hi = math.exp(log_depth_range[0]), math.exp(log_depth_range[1])
    return torch.where(positive, depth.clamp(lo, hi), torch.zeros_like(depth))
