"""Training losses for detection and depth.

* Heatmap: the penalty-reduced pixel-wise focal loss of CornerNet/CenterNet (Law & Deng,
  https://arxiv.org/abs/1808.01244; Zhou et al., https://arxiv.org/abs/1904.07850), with
  alpha = 2, beta = 4, normalised by the number of objects.
* Box size (log, stride units), centre offset and object log-depth: L1 at object centres.
* Dense depth: scale-invariant log loss (SILog, Eigen et al., https://arxiv.org/abs/1406.2283)
  plus L1 on log depth, over valid pixels (ground truth > 0) only, so sparse LiDAR works.

All terms come back in one dict with a weighted ``total``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossWeights:
    heatmap: float = 1.0
    size: float = 1.0
    offset: float = 1.0
    obj_depth: float = 1.0
    depth_silog: float = 1.0
    depth_l1: float = 0.5


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """Penalty-reduced focal loss; ``target`` holds Gaussian peaks, 1 exactly at centres."""
    logits = logits.float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    pos = target.eq(1).float()
    pos_loss = -((1 - p) ** alpha) * log_p * pos
    neg_loss = -((1 - target) ** beta) * (p**alpha) * log_not_p * (1 - pos)
    num_pos = pos.sum().clamp(min=1.0)
    return (pos_loss.sum() + neg_loss.sum()) / num_pos


def _gather(pred: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B, ch, h, w) at flat cell indices (B, M) -> (B, M, ch)."""
    b, ch = pred.shape[:2]
    idx = indices.unsqueeze(1).expand(-1, ch, -1)
    return pred.float().reshape(b, ch, -1).gather(2, idx).transpose(1, 2)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the masked slots (0 when none); pred/target ``(B, M)`` or ``(B, M, ch)``."""
    if pred.dim() == mask.dim():
        pred, target = pred.unsqueeze(-1), target.unsqueeze(-1)
    m = mask.unsqueeze(-1).float()
    return ((pred - target).abs() * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


def silog_loss(
    log_pred: torch.Tensor, log_gt: torch.Tensor, valid: torch.Tensor, lam: float = 0.85
) -> torch.Tensor:
    """sqrt(mean(d^2) - lam * mean(d)^2) with d = log_pred - log_gt over valid pixels."""
    d = (log_pred - log_gt)[valid]
    if d.numel() == 0:
        return log_pred.sum() * 0.0
    var = (d**2).mean() - lam * d.mean() ** 2
    return torch.sqrt(var.clamp(min=1e-8))


class DetectionDepthLoss(nn.Module):
    """``loss(outputs, targets, depth_gt) -> dict`` with every term and ``total``.

    ``outputs``: :class:`~perception.models.hybrid_dpt.HybridDPT` outputs (a metric model:
    ``log_depth`` present). ``targets``: batched :func:`~perception.models.targets.encode_targets`
    (see :func:`~perception.models.targets.stack_targets`). ``depth_gt``: ``(B, H, W)`` or
    ``(B, 1, H, W)`` metres, ``<= 0`` where unknown, or ``None`` (no dense depth loss); if its
    size differs from the prediction, the prediction is resized to it (bilinear).
    """

    def __init__(self, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        depth_gt: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        wts = self.weights
        mask = targets["mask"]
        terms = {
            "heatmap": focal_loss(outputs["heatmap"], targets["heatmap"]),
            "size": masked_l1(
                _gather(outputs["log_size"], targets["indices"]), targets["log_size"], mask
            ),
            "offset": masked_l1(
                _gather(outputs["offset"], targets["indices"]), targets["offset"], mask
            ),
            "obj_depth": masked_l1(
                _gather(outputs["obj_log_depth"], targets["indices"])[..., 0],
                targets["obj_log_depth"],
                mask & targets["depth_mask"],
            ),
        }
        zero = outputs["heatmap"].sum() * 0.0
        terms["depth_silog"] = zero
        terms["depth_l1"] = zero
        if depth_gt is not None:
            if "log_depth" not in outputs:
                raise ValueError("dense depth loss needs a metric model (a log_depth output)")
            log_pred = outputs["log_depth"].float()
            gt = depth_gt.float()
            if gt.dim() == 3:
                gt = gt.unsqueeze(1)
            if gt.shape[-2:] != log_pred.shape[-2:]:
                log_pred = F.interpolate(
                    log_pred, size=gt.shape[-2:], mode="bilinear", align_corners=False
                )
            valid = torch.isfinite(gt) & (gt > 0)
            log_gt = torch.where(valid, gt, torch.ones_like(gt)).log()
            terms["depth_silog"] = silog_loss(log_pred, log_gt, valid)
            diff = (log_pred - log_gt).abs()[valid]
            terms["depth_l1"] = diff.mean() if diff.numel() else zero
        terms["total"] = (
            wts.heatmap * terms["heatmap"]
            + wts.size * terms["size"]
            + wts.offset * terms["offset"]
            + wts.obj_depth * terms["obj_depth"]
            + wts.depth_silog * terms["depth_silog"]
            + wts.depth_l1 * terms["depth_l1"]
        )
        return terms
