"""The hybrid backbone: a CNN stem feeding a timm ``VisionTransformer`` through ``HybridEmbed``.

The ViT is timm's own (``VisionTransformer`` with ``embed_layer=HybridEmbed``,
``dynamic_img_size=True``), built exactly like timm's ``vit_*_r*`` hybrids so their weights load
unchanged. Only the forward is ours: DPT-Hybrid taps two stem stages *and* two transformer
blocks, and timm's ``forward_intermediates`` would have to run the stem a second time to give the
stem stages. So :meth:`HybridBackbone.forward` walks the same modules once, in the same order as
``VisionTransformer.forward_features`` (stem, projection, class token + position embedding,
blocks), keeping the tapped outputs.

The position embedding is resampled to the input's token grid bilinearly without antialiasing,
as DPT does (timm's default is bicubic), so imported DPT weights see what they were trained with.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.layers import HybridEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class HybridBackbone(nn.Module):
    """CNN stem + ViT returning ``len(stem_taps) + len(vit_taps)`` feature maps.

    Stem taps come back as NCHW maps at the stem's resolution; transformer taps come back as
    token sequences ``(B, 1 + h*w, D)`` (class token first) with their grid size, for the
    reassemble stage to turn into maps.
    """

    def __init__(
        self,
        stem: nn.Module,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        patch_size: int = 1,
        pos_embed_hw: tuple[int, int] = (384, 384),
        stem_taps: tuple[int, ...] = (0, 1),
        vit_taps: tuple[int, ...] = (8, 11),
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.vit = VisionTransformer(
            img_size=pos_embed_hw,
            patch_size=patch_size,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
            embed_layer=partial(HybridEmbed, backbone=stem),
        )  # timm's defaults otherwise (LayerNorm eps 1e-6, GELU, qkv bias), as its hybrids
        # Blocks after the last tap, the final norm and the classifier never reach an output.
        self.vit.prune_intermediate_layers(list(vit_taps), prune_norm=True, prune_head=True)
        self.stem_taps = tuple(stem_taps)
        self.vit_taps = tuple(vit_taps)
        info: list[dict[str, Any]] = list(stem.feature_info)  # type: ignore[arg-type]
        self.stem_channels = tuple(int(info[1 + i]["num_chs"]) for i in stem_taps)
        self.stem_strides = tuple(int(info[1 + i]["reduction"]) for i in stem_taps)
        self.token_stride = int(info[-1]["reduction"]) * patch_size
        self.embed_dim = embed_dim

    @property
    def stem(self) -> Any:
        """The CNN stem (``stem``, ``stages``, ``norm``, ``feature_info``)."""
        return self.vit.patch_embed.backbone

    def _pos_embed(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        return resample_abs_pos_embed(
            self.vit.pos_embed,
            new_size=list(grid_hw),
            old_size=list(self.vit.patch_embed.grid_size),
            num_prefix_tokens=self.vit.num_prefix_tokens,
            interpolation="bilinear",
            antialias=False,
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], tuple[int, int]]:
        """Returns (stem maps, transformer token sequences, token grid (h, w))."""
        stem = self.stem
        stem_maps = []
        y = stem.stem(x)
        for i, stage in enumerate(stem.stages):
            y = stage(y)
            if i in self.stem_taps:
                stem_maps.append(y)
        y = self.vit.patch_embed.proj(stem.norm(y))
        grid_hw = (int(y.shape[-2]), int(y.shape[-1]))
        tokens = y.flatten(2).transpose(1, 2)
        assert self.vit.cls_token is not None
        cls = self.vit.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self._pos_embed(grid_hw)
        tokens = self.vit.norm_pre(self.vit.patch_drop(self.vit.pos_drop(tokens)))
        vit_tokens = []
        for i, block in enumerate(self.vit.blocks):
            tokens = block(tokens)
            if i in self.vit_taps:
                vit_tokens.append(tokens)
        return stem_maps, vit_tokens, grid_hw
