"""Deterministic random weights for generated checkpoints (fast: no init, no download)."""

from __future__ import annotations

import math

import timm
import torch
from torch import nn


def fill_random_(module: nn.Module, seed: int) -> None:
    """Deterministic random weights that keep activations in range through deep stacks."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and "pos_embed" not in name and "cls_token" not in name:
                std = 1.0 / math.sqrt(p[0].numel())
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif name.endswith("weight") and "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def random_timm(name: str, seed: int) -> nn.Module:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    model = model.to_empty(device="cpu")
    fill_random_(model, seed)
    return model.eval()
