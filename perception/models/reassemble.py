"""DPT's *reassemble* stage: transformer tokens back to image-like maps at pyramid strides.

Ranftl et al., "Vision Transformers for Dense Prediction" (https://arxiv.org/abs/2103.13413),
section 3: read out the class token (here: ``project`` = concatenate it to every patch token,
Linear + GELU), reshape the tokens to their grid, 1x1 conv to the level's width, then resample
to the level's stride (stride-2 3x3 conv down, transposed conv up, identity when equal). Stem
taps are already maps and pass through unchanged (as in DPT-Hybrid).
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectReadout(nn.Module):
    """Concatenate the class token to each patch token and project back to ``dim`` (DPT)."""

    def __init__(self, dim: int, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, self.num_prefix_tokens :]
        readout = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat([patches, readout], dim=-1))


class AddReadout(nn.Module):
    """Add the class token to each patch token."""

    def __init__(self, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.num_prefix_tokens :] + tokens[:, :1]


class IgnoreReadout(nn.Module):
    """Drop the class token."""

    def __init__(self, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.num_prefix_tokens :]


def make_readout(kind: str, dim: int) -> nn.Module:
    if kind == "project":
        return ProjectReadout(dim)
    if kind == "add":
        return AddReadout()
    if kind == "ignore":
        return IgnoreReadout()
    raise ValueError(f"unknown readout {kind!r}")


def make_resample(channels: int, from_stride: int, to_stride: int) -> nn.Module:
    """Conv that takes a map from ``from_stride`` to ``to_stride`` (powers of two apart)."""
    if from_stride == to_stride:
        return nn.Identity()
    if to_stride == 2 * from_stride:
        return nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
    if from_stride % to_stride == 0:
        factor = from_stride // to_stride
        return nn.ConvTranspose2d(channels, channels, kernel_size=factor, stride=factor)
    raise ValueError(f"cannot resample from stride {from_stride} to {to_stride}")


class TokenReassemble(nn.Module):
    """Tokens ``(B, 1 + h*w, D)`` -> map ``(B, out_chs, H, W)`` at ``to_stride``."""

    def __init__(
        self,
        dim: int,
        out_chs: int,
        token_stride: int,
        to_stride: int,
        readout: str = "project",
    ) -> None:
        super().__init__()
        self.readout = make_readout(readout, dim)
        self.proj = nn.Conv2d(dim, out_chs, kernel_size=1)
        self.resample = make_resample(out_chs, token_stride, to_stride)

    def forward(self, tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        patches = self.readout(tokens)
        b, _, d = patches.shape
        maps = patches.transpose(1, 2).reshape(b, d, grid_hw[0], grid_hw[1])
        return self.resample(self.proj(maps))
