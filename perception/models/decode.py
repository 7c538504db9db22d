"""From raw network outputs to boxes, scores and metres.

CenterNet decoding (Zhou et al., https://arxiv.org/abs/1904.07850): a 3x3 max filter keeps only
local peaks of the heatmap (this replaces NMS), the best K over classes and cells together are
kept, then size, offset and depth are read at the peaks.

Detections are decoded on the host with NumPy and OpenCV from the small detection maps (a few
hundred kB, one copy from a GPU). Peaks are found on the logits (the sigmoid is monotonic) and
only cells above ``min_score`` are looked at, so the work after the peak filter is on tens of
cells, not the whole map; the other maps are read at those cells only (in place: the engine's
channels-last outputs hold a cell's channels side by side). Torch spent ~50 operator calls
here: 0.6 ms back to back but 2-11 ms on the 2-core reference VM when they ran cold after the
forward; this takes ~0.2 ms warm.

Coordinates: continuous pixel coordinates of the network input with pixel centres at integers
(as :class:`perception.msgs.DepthMap`). Cell ``(i, j)`` at stride ``s`` covers input pixels
``j*s .. j*s + s - 1``; a centre at cell ``j`` with offset ``o`` is at ``(j + o) * s - 0.5``
(the inverse of :func:`perception.models.targets.encode_targets`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

_WINDOW_3X3 = np.ones((3, 3), np.uint8)


@dataclass
class Decoded:
    """One image's detections, best score first, in network-input pixels (NumPy, host)."""

    boxes_xyxy: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64
    depth_m: np.ndarray  # (K,) float32


def _host(t: Any) -> np.ndarray:
    """A float32 NumPy view (CPU tensor) or copy (GPU tensor) of a network output."""
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.float32 and t.device.type == "cpu" and not t.requires_grad:
            return t.numpy()  # the usual case, without two more operator calls
        return t.detach().to("cpu", torch.float32).numpy()
    return np.asarray(t, np.float32)


def _channels_last(x: np.ndarray) -> np.ndarray:
    """(B, C, h, w) -> (B, h * w, C): a view when the network ran channels-last (the
    engine's default), a copy otherwise."""
    b, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(b, h * w, c)


def local_peaks(heat: np.ndarray) -> np.ndarray:
    """Where ``heat`` (h x w) equals its 3x3 maximum (outside the map counts as -inf)."""
    return heat == cv2.dilate(
        heat, _WINDOW_3X3, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf
    )


def decode_detections(
    outputs: Mapping[str, Any],
    stride: int,
    top_k: int = 100,
    log_depth_range: tuple[float, float] = (-2.3, 5.7),
    class_agnostic: bool = False,
    min_score: float = 0.0,
) -> list[Decoded]:
    """Peaks of the heatmap as boxes, per image. ``log_depth_range`` clamps object depth (log
    metres); ``min_score`` drops candidates below it before anything else is read.

    ``class_agnostic``: one candidate per cell (its best class) instead of one per class and
    cell, so that an object whose heatmap peaks in two classes gives one box, not two
    identical boxes with different labels (what a tracker wants).
    """
    heat_b = _host(outputs["heatmap"])  # (B, C, h, w) logits
    b, num_classes, h, w = heat_b.shape
    # Read as (B, cells, channels): only the candidates' rows are gathered from these.
    heat_all = _channels_last(heat_b)
    offset_all = _channels_last(_host(outputs["offset"]))
    log_size_all = _channels_last(_host(outputs["log_size"]))
    obj_depth_all = _channels_last(_host(outputs["obj_log_depth"]))
    if min_score <= 0.0:
        threshold = -np.inf
    elif min_score >= 1.0:
        threshold = np.inf
    else:  # the logit of min_score, a hair lower so rounding never loses a boundary score
        threshold = math.log(min_score / (1.0 - min_score)) - 1e-4
    results = []
    for i in range(b):
        heat = heat_all[i]  # (cells, C)
        if class_agnostic:
            best = heat[:, 0].copy()
            for c in range(1, num_classes):  # pairwise: a max over a short last axis is slow
                np.maximum(best, heat[:, c], out=best)
            best_map = best.reshape(h, w)
            cand = np.flatnonzero(local_peaks(best_map) & (best_map >= threshold))
            logits = best[cand]
            class_ids = heat[cand].argmax(axis=1)
        else:
            heat_maps = heat_b[i]  # (C, h, w)
            keep = [
                np.flatnonzero(local_peaks(heat_maps[c]) & (heat_maps[c] >= threshold))
                for c in range(num_classes)
            ]
            class_ids = np.concatenate([np.full(len(k), c) for c, k in enumerate(keep)])
            cand = np.concatenate(keep)
            logits = heat[cand, class_ids]
        if len(cand) > top_k:
            best_k = np.sort(np.argpartition(-logits, top_k - 1)[:top_k])  # ties: list order
            cand, logits, class_ids = cand[best_k], logits[best_k], class_ids[best_k]
        order = (-logits).argsort(kind="stable")
        cand, logits, class_ids = cand[order], logits[order], class_ids[order]
        ys, xs = np.divmod(cand, w)
        offset = offset_all[i, cand].T
        half = np.exp(np.minimum(log_size_all[i, cand], 8.0)) * (0.5 * stride)  # (K, 2)
        centre = np.empty(half.shape)
        centre[:, 0] = xs + offset[0]
        centre[:, 1] = ys + offset[1]
        centre *= stride
        centre -= 0.5
        boxes = np.empty((len(cand), 4), np.float32)
        np.subtract(centre, half, out=boxes[:, :2], casting="same_kind")
        np.add(centre, half, out=boxes[:, 2:], casting="same_kind")
        log_depth = np.maximum(obj_depth_all[i, cand, 0], log_depth_range[0])
        depth = np.exp(np.minimum(log_depth, log_depth_range[1], out=log_depth))
        results.append(
            Decoded(
                boxes_xyxy=boxes,
                scores=(1.0 / (1.0 + np.exp(-logits))).astype(np.float32),
                class_ids=class_ids.astype(np.int64),
                depth_m=depth.astype(np.float32),
            )
        )
    return results


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
    if "log_depth" in outputs:  # (one new tensor, exponentiated in place)
        return outputs["log_depth"].float().clamp(*log_depth_range).exp_()
    if inverse_affine is None:
        raise ValueError("an inverse-relative depth output needs inverse_affine=(scale, shift)")
    scale, shift = inverse_affine
    disparity = outputs["inverse_depth"].float() * scale + shift
    positive = disparity > 0
    depth = 1.0 / torch.where(positive, disparity, torch.ones_like(disparity))
    lo, hi = math.exp(log_depth_range[0]), math.exp(log_depth_range[1])
    return torch.where(positive, depth.clamp(lo, hi), torch.zeros_like(depth))
