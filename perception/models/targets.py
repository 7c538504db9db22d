"""Training targets for the CenterNet head, from boxes in network-input pixels.

Each object becomes a Gaussian peak on its class's heatmap at the cell holding its centre, plus
regression targets read at that cell: log box size in stride units, the centre's offset within
the cell, and the log of its depth. Gaussians are elliptical with sigma = alpha * size / 6
(TTFNet, Liu et al., https://arxiv.org/abs/1909.00700), peak exactly 1 at the centre cell, which
is what the penalty-reduced focal loss treats as positive.

Coordinates as in :mod:`perception.models.decode` (pixel centres at integers; cell ``j`` spans
input pixels ``j*s .. j*s + s - 1``). Everything is vectorised over objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

GAUSSIAN_ALPHA = 0.54
MIN_SIGMA_CELLS = 0.3


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype).detach().cpu() if x is not None else torch.zeros(0)


def encode_targets(
    boxes_xyxy: Any,
    class_ids: Any,
    depth_m: Any,
    num_classes: int,
    input_hw: tuple[int, int],
    stride: int,
    max_objects: int = 128,
) -> dict[str, torch.Tensor]:
    """CenterNet targets for one image.

    Args:
        boxes_xyxy: ``(N, 4)`` boxes in network-input pixels (after any letterbox).
        class_ids: ``(N,)`` class indices in ``[0, num_classes)``.
        depth_m: ``(N,)`` object depth in metres; ``<= 0`` or NaN where unknown (no depth loss).
        num_classes, input_hw, stride: the network's classes, input (height, width) and
            detection stride.
        max_objects: slots per image; objects beyond are dropped (in input order).

    Returns:
        ``heatmap`` ``(C, h, w)``; per slot (``M = max_objects``): ``indices`` ``(M,)`` flat
        cell index ``y * w + x``, ``mask`` ``(M,)`` bool, ``class_ids`` ``(M,)``, ``log_size``
        ``(M, 2)``, ``offset`` ``(M, 2)``, ``obj_log_depth`` ``(M,)``, ``depth_mask`` ``(M,)``.
        Boxes are clipped to the image; empty ones after clipping are dropped.
    """
    h, w = input_hw[0] // stride, input_hw[1] // stride
    boxes = _as_tensor(boxes_xyxy, torch.float32).reshape(-1, 4)
    classes = _as_tensor(class_ids, torch.int64).reshape(-1)
    depth = _as_tensor(depth_m, torch.float32).reshape(-1)
    if depth.numel() == 0 and len(boxes):
        depth = torch.zeros(len(boxes))
    if not len(boxes) == len(classes) == len(depth):
        raise ValueError("boxes_xyxy, class_ids and depth_m need the same length")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"class_ids outside [0, {num_classes})")

    lo = torch.tensor([-0.5, -0.5, -0.5, -0.5])
    hi = torch.tensor([input_hw[1] - 0.5, input_hw[0] - 0.5] * 2)
    boxes = torch.maximum(torch.minimum(boxes, hi), lo)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (bw > 0.5) & (bh > 0.5) & torch.isfinite(boxes).all(dim=1)
    boxes, classes, depth, bw, bh = (t[keep][:max_objects] for t in (boxes, classes, depth, bw, bh))
    n = len(boxes)

    # Centre in cell units (edge convention: cell j spans [j, j + 1)).
    gx = ((boxes[:, 0] + boxes[:, 2]) / 2 + 0.5) / stride
    gy = ((boxes[:, 1] + boxes[:, 3]) / 2 + 0.5) / stride
    cx = gx.floor().clamp(0, w - 1)
    cy = gy.floor().clamp(0, h - 1)

    heatmap = torch.zeros(num_classes, h * w)
    if n:
        sx = (GAUSSIAN_ALPHA * bw / stride / 6).clamp(min=MIN_SIGMA_CELLS)
        sy = (GAUSSIAN_ALPHA * bh / stride / 6).clamp(min=MIN_SIGMA_CELLS)
        xs = torch.arange(w, dtype=torch.float32)
        ys = torch.arange(h, dtype=torch.float32)
        gauss_x = torch.exp(-((xs[None] - cx[:, None]) ** 2) / (2 * sx[:, None] ** 2))
        gauss_y = torch.exp(-((ys[None] - cy[:, None]) ** 2) / (2 * sy[:, None] ** 2))
        gauss = (gauss_y[:, :, None] * gauss_x[:, None, :]).reshape(n, h * w)
        index = classes[:, None].expand(-1, h * w)
        heatmap.scatter_reduce_(0, index, gauss, reduce="amax")

    m = max_objects
    out = {
        "heatmap": heatmap.reshape(num_classes, h, w),
        "indices": torch.zeros(m, dtype=torch.int64),
        "mask": torch.zeros(m, dtype=torch.bool),
        "class_ids": torch.zeros(m, dtype=torch.int64),
        "log_size": torch.zeros(m, 2),
        "offset": torch.zeros(m, 2),
        "obj_log_depth": torch.zeros(m),
        "depth_mask": torch.zeros(m, dtype=torch.bool),
    }
    out["indices"][:n] = (cy * w + cx).long()
    out["mask"][:n] = True
    out["class_ids"][:n] = classes
    out["log_size"][:n] = torch.stack([bw / stride, bh / stride], dim=1).log()
    out["offset"][:n] = torch.stack([gx - cx, gy - cy], dim=1)
    has_depth = torch.isfinite(depth) & (depth > 0)
    out["obj_log_depth"][:n] = torch.where(has_depth, depth, torch.ones_like(depth)).log()
    out["depth_mask"][:n] = has_depth
    return out


def stack_targets(targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch per-image targets from :func:`encode_targets` (same classes, size, stride)."""
    return {key: torch.stack([t[key] for t in targets]) for key in targets[0]}
