"""Named network sizes, timm style: each a tiny function holding only hyper-parameters.

* ``base``: exactly DPT-Hybrid's backbone (timm ``vit_base_r50_s16_384``: ResNetV2-50 cut to
  3 stages, ViT-B/16, taps [0, 1, 8, 11], neck width 256), so the MiDaS DPT-Hybrid checkpoint
  maps 1:1. About 125M parameters; a GPU model.
* ``small``: R26 + ViT-S/32 (timm ``vit_small_r26_s32_384``), tokens at 1/32, neck 128.
* ``nano``: for real time on two CPU cores at 384x640: a light conv stem to 1/16, patch 2 on it
  (tokens at 1/32: 240 tokens at 384x640), a narrow shallow ViT, depthwise-separable neck and
  heads, depth predicted at 1/2 and upsampled.

The table :data:`CONFIGS` is the registry; :func:`get_config` and :func:`create_model` read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from perception.errors import UserError
from perception.models.config import ModelConfig
from perception.models.hybrid_dpt import HybridDPT


def base() -> ModelConfig:
    """DPT-Hybrid: R50 (3 stages) + ViT-B/16 at 384, taps [0, 1, 8, 11], neck 256."""
    return ModelConfig(
        name="base",
        stem="resnetv2",
        stem_layers=(3, 4, 9),
        embed_dim=768,
        depth=12,
        num_heads=12,
        vit_taps=(8, 11),
        pos_embed_hw=(384, 384),
        timm_name="vit_base_r50_s16_384",
        reassemble_channels=(256, 512, 768, 768),
        neck_channels=(256, 256, 256, 256),
        depth_head_channels=(128, 32),
        det_head_channels=128,
    )


def small() -> ModelConfig:
    """R26 + ViT-S/32 at 384, taps [0, 1, 8, 11], neck 128."""
    return ModelConfig(
        name="small",
        stem="resnetv2",
        stem_layers=(2, 2, 2, 2),
        embed_dim=384,
        depth=12,
        num_heads=6,
        vit_taps=(8, 11),
        pos_embed_hw=(384, 384),
        timm_name="vit_small_r26_s32_384",
        reassemble_channels=(256, 512, 384, 384),
        neck_channels=(128, 128, 128, 128),
        depth_head_channels=(64, 32),
        det_head_channels=64,
    )


def nano() -> ModelConfig:
    """Light conv stem 16..128 to 1/16, patch 2 (tokens at 1/32), ViT 192 x 4, neck 32..96."""
    return ModelConfig(
        name="nano",
        stem="light",
        stem_layers=(0, 1, 0),
        stem_channels=(16, 32, 64, 128),
        embed_dim=192,
        depth=4,
        num_heads=3,
        patch_size=2,
        vit_taps=(1, 3),
        pos_embed_hw=(384, 640),
        reassemble_channels=(32, 64, 96, 192),
        neck_channels=(32, 48, 64, 96),
        lateral_kernel=1,
        depthwise=True,
        depth_head_channels=(16, 16),
        depth_upsample="output",
        det_head_channels=48,
    )


CONFIGS: Mapping[str, Callable[[], ModelConfig]] = MappingProxyType(
    {"nano": nano, "small": small, "base": base}
)


def list_configs() -> list[str]:
    return list(CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The named config with some fields replaced (e.g. ``classes=("car",)``)."""
    if name not in CONFIGS:
        raise UserError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}")
    config = CONFIGS[name]()
    if not overrides:
        return config
    try:
        return dataclasses.replace(config, **overrides)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad override for config {name!r}: {exc}") from exc


def create_model(config: str | ModelConfig, **overrides: Any) -> HybridDPT:
    """A randomly initialised network from a config or a config name."""
    if isinstance(config, str):
        config = get_config(config, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return HybridDPT(config)
