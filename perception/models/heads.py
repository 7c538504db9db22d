"""Prediction heads: dense depth (DPT) and CenterNet-style detection with per-object depth.

Depth: DPT's head (conv3x3, x2 upsample, conv3x3, ReLU, conv1x1) on the stride-2 fused map,
giving one value per input pixel. In ``metric`` mode that value is log-depth in metres (exp keeps
depth positive; the last bias starts at ``log(init_depth_m)``, so an untrained network already
says "roughly 10 m everywhere"); in ``inverse_relative`` mode it is MiDaS's
non-negative affine-invariant inverse depth (ReLU), only meaningful with an external scale/shift.

Detection: Zhou et al., "Objects as Points" (CenterNet, https://arxiv.org/abs/1904.07850). Two
branches on the stride-4 (or 8) fused map: a class heatmap (logits, bias -2.19 so that
sigmoid = 0.1 at start, as the focal-loss papers do) and a regression branch with box size
(log of width/height in units of the stride), sub-cell centre offset and object log-depth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.models.neck import conv3x3, upsample2x

HEATMAP_PRIOR = 0.1
HEATMAP_BIAS = -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)  # -2.197


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias


class DepthHead(nn.Module):
    """conv3x3 -> (x2) -> conv3x3 -> ReLU -> conv1x1: one channel at full resolution.

    ``upsample='features'`` (DPT): the input is at stride 2 and the features are upsampled x2
    between the convs. ``upsample='output'``: the input is at stride 4, all convs run there and
    only the one-channel output is upsampled x4 (bilinear): far cheaper on a CPU.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int = 128,
        hidden_chs: int = 32,
        upsample: str = "features",
        output: str = "metric",
        init_depth_m: float = 10.0,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chs, mid_chs, depthwise)
        self.conv2 = conv3x3(mid_chs, hidden_chs, depthwise)
        self.conv3 = nn.Conv2d(hidden_chs, 1, kernel_size=1)
        self.upsample_features = upsample == "features"
        self.inverse_relative = output == "inverse_relative"
        if not self.inverse_relative:
            with torch.no_grad():
                _bias(self.conv3).fill_(math.log(init_depth_m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.upsample_features:
            x = upsample2x(x)
        x = self.conv3(torch.relu(self.conv2(x)))
        if not self.upsample_features:
            # Half-pixel mapping: output pixel centres land where they are in the input image.
            x = F.interpolate(x, scale_factor=4.0, mode="bilinear", align_corners=False)
        return torch.relu(x) if self.inverse_relative else x


class CenterNetHead(nn.Module):
    """Heatmap logits (C), log box size (2), centre offset (2), object log-depth (1)."""

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        head_chs: int = 64,
        init_depth_m: float = 10.0,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        cls_out = nn.Conv2d(head_chs, num_classes, kernel_size=1)
        reg_out = nn.Conv2d(head_chs, 5, kernel_size=1)
        with torch.no_grad():
            _bias(cls_out).fill_(HEATMAP_BIAS)
            reg_out.weight.mul_(0.1)
            bias = torch.tensor([math.log(4.0)] * 2 + [0.5] * 2 + [math.log(init_depth_m)])
            _bias(reg_out).copy_(bias)  # boxes 4 cells wide and high, centred mid-cell, 10 m
        self.cls = nn.Sequential(
            conv3x3(in_chs, head_chs, depthwise), nn.ReLU(inplace=True), cls_out
        )
        self.reg = nn.Sequential(
            conv3x3(in_chs, head_chs, depthwise), nn.ReLU(inplace=True), reg_out
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        reg = self.reg(x)
        return {
            "heatmap": self.cls(x),
            "log_size": reg[:, 0:2],
            "offset": reg[:, 2:4],
            "obj_log_depth": reg[:, 4:5],
        }
