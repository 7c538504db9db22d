"""DPT's fusion neck: RefineNet-style top-down fusion of the four reassembled maps.

Ranftl et al., "Vision Transformers for Dense Prediction" (https://arxiv.org/abs/2103.13413),
after Lin et al., "RefineNet" (https://arxiv.org/abs/1611.06612). Each level: a lateral conv to
the fusion width (``layer{i}_rn`` in DPT), then a fusion block: residual conv unit on the lateral
map, add the coarser path, a second residual conv unit, x2 bilinear upsampling
(``align_corners=True``) and a 1x1 output conv.

One deliberate difference: the 1x1 output conv runs *before* the upsampling. Both are linear and
bilinear weights sum to one, so the result is the same function (up to float rounding) at a
quarter of the cost, which matters at the finest level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_chs: int, out_chs: int, depthwise: bool = False, bias: bool = True) -> nn.Module:
    """A 3x3 conv, or its depthwise-separable version (3x3 depthwise + 1x1 pointwise)."""
    if not depthwise:
        return nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=bias)
    return nn.Sequential(
        nn.Conv2d(in_chs, in_chs, kernel_size=3, padding=1, groups=in_chs, bias=False),
        nn.Conv2d(in_chs, out_chs, kernel_size=1, bias=bias),
    )


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    """ReLU-conv-ReLU-conv plus identity (DPT's ``ResidualConvUnit_custom`` without BN)."""

    def __init__(self, chs: int, depthwise: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(chs, chs, depthwise)
        self.conv2 = conv3x3(chs, chs, depthwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FusionBlock(nn.Module):
    """Fuse a coarser path with this level's lateral map, then go up one level (x2)."""

    def __init__(
        self,
        chs: int,
        out_chs: int,
        has_lateral: bool = True,
        depthwise: bool = False,
        upsample: bool = True,
    ) -> None:
        super().__init__()
        # The coarsest block gets its lateral map as the path itself (no second input).
        self.rcu1 = ResidualConvUnit(chs, depthwise) if has_lateral else None
        self.rcu2 = ResidualConvUnit(chs, depthwise)
        self.out_conv = nn.Conv2d(chs, out_chs, kernel_size=1)
        self.upsample = upsample

    def forward(self, path: torch.Tensor, lateral: torch.Tensor | None = None) -> torch.Tensor:
        if lateral is not None:
            assert self.rcu1 is not None
            path = path + self.rcu1(lateral)
        path = self.out_conv(self.rcu2(path))
        return upsample2x(path) if self.upsample else path


class DPTNeck(nn.Module):
    """Lateral convs + four fusion blocks; returns the fused maps at strides 2, 4, 8, 16.

    ``in_chs`` are the reassembled maps' widths (strides 4, 8, 16, 32), ``chs`` the fusion width
    per level; the output of level ``i`` has ``chs[i - 1]`` channels (``chs[0]`` for level 1).
    With ``finest_upsample=False`` the finest block stays at stride 4 (strides 4, 4, 8, 16):
    cheaper, for heads that upsample their own small outputs.
    """

    def __init__(
        self,
        in_chs: tuple[int, int, int, int],
        chs: tuple[int, int, int, int],
        lateral_kernel: int = 3,
        depthwise: bool = False,
        finest_upsample: bool = True,
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(
            nn.Conv2d(i, c, lateral_kernel, padding=lateral_kernel // 2, bias=False)
            for i, c in zip(in_chs, chs, strict=True)
        )
        out_chs = (chs[0], *chs[:-1])
        self.fusion = nn.ModuleList(
            FusionBlock(
                c,
                o,
                has_lateral=level < 3,
                depthwise=depthwise,
                upsample=finest_upsample or level > 0,
            )
            for level, (c, o) in enumerate(zip(chs, out_chs, strict=True))
        )
        self.out_chs = out_chs
        self.out_strides = (2 if finest_upsample else 4, 4, 8, 16)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Maps at strides (4, 8, 16, 32) -> fused paths at :attr:`out_strides`."""
        laterals = [conv(m) for conv, m in zip(self.lateral, maps, strict=True)]
        path = self.fusion[3](laterals[3])
        paths = [path]
        for level in (2, 1, 0):
            path = self.fusion[level](path, laterals[level])
            paths.append(path)
        return paths[::-1]
