"""HybridDPT: one network for 2D detection and dense metric depth.

A CNN stem feeding a ViT (timm ``VisionTransformer`` + ``HybridEmbed``), DPT's reassemble and
fusion neck, a DPT depth head and a CenterNet detection head. The layout follows DPT-Hybrid:

* Ranftl, Bochkovskiy, Koltun, "Vision Transformers for Dense Prediction", ICCV 2021,
  https://arxiv.org/abs/2103.13413 (DPT, taps and neck);
* Zhou, Wang, Krähenbühl, "Objects as Points", 2019, https://arxiv.org/abs/1904.07850
  (the detection head and its decoding).

::

    image ─ stem ─┬─ stage a (1/4) ───────────────── lateral ─ fusion1 ─ (1/2) ─ depth head
                  ├─ stage b (1/8) ───────────────── lateral ─ fusion2 ─ (1/4) ─ CenterNet head
                  └─ ... ─ proj ─ tokens ─ ViT ─┬─ block i ─ reassemble (1/16) ─ fusion3
                                                └─ block j ─ reassemble (1/32) ─ fusion4

The named sizes (``nano``, ``small``, ``base``) live in :mod:`perception.models.registry`.
"""

from __future__ import annotations

import torch
from torch import nn

from perception.models.backbone import HybridBackbone
from perception.models.config import PYRAMID_STRIDES, ModelConfig
from perception.models.heads import CenterNetHead, DepthHead
from perception.models.neck import DPTNeck
from perception.models.reassemble import TokenReassemble
from perception.models.stem import build_stem


class HybridDPT(nn.Module):
    """The network. ``forward(images)`` takes normalised RGB ``(B, 3, H, W)``, H and W multiples
    of 32, and returns a dict of raw outputs:

    * ``heatmap`` ``(B, C, H/s, W/s)``: class logits (s = ``config.det_stride``);
    * ``log_size`` ``(B, 2, H/s, W/s)``: log of box width, height in units of s;
    * ``offset`` ``(B, 2, H/s, W/s)``: box centre within its cell, in cells;
    * ``obj_log_depth`` ``(B, 1, H/s, W/s)``: log of the object's depth in metres;
    * ``log_depth`` ``(B, 1, H, W)``: log of metric depth (``depth_output='metric'``), or
      ``inverse_depth`` ``(B, 1, H, W)``: MiDaS-style inverse relative depth
      (``depth_output='inverse_relative'``).

    :mod:`perception.models.decode` turns these into boxes and metres.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        stem = build_stem(config.stem, config.stem_layers, config.stem_channels)
        self.backbone = HybridBackbone(
            stem,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            patch_size=config.patch_size,
            pos_embed_hw=config.pos_embed_hw,
            stem_taps=config.stem_taps,
            vit_taps=config.vit_taps,
            drop_path_rate=config.drop_path_rate,
        )
        bb = self.backbone
        if bb.stem_strides != PYRAMID_STRIDES[:2]:
            raise ValueError(f"stem taps are at strides {bb.stem_strides}, need (4, 8)")
        if tuple(config.reassemble_channels[:2]) != bb.stem_channels:
            raise ValueError(
                f"reassemble_channels[:2] {config.reassemble_channels[:2]} must equal the "
                f"tapped stem widths {bb.stem_channels}"
            )
        self.reassemble = nn.ModuleList([nn.Identity(), nn.Identity()])
        for level in (2, 3):
            self.reassemble.append(
                TokenReassemble(
                    bb.embed_dim,
                    config.reassemble_channels[level],
                    token_stride=bb.token_stride,
                    to_stride=PYRAMID_STRIDES[level],
                    readout=config.readout,
                )
            )
        self.neck = DPTNeck(
            config.reassemble_channels,
            config.neck_channels,
            lateral_kernel=config.lateral_kernel,
            depthwise=config.depthwise,
            finest_upsample=config.depth_upsample == "features",
        )
        self.depth_head = DepthHead(
            self.neck.out_chs[0],
            mid_chs=config.depth_head_channels[0],
            hidden_chs=config.depth_head_channels[1],
            upsample=config.depth_upsample,
            output=config.depth_output,
            init_depth_m=config.init_depth_m,
            depthwise=config.depthwise,
        )
        # The finest fused map at the detection stride (level 1 when the neck stops at 1/4).
        self._det_level = self.neck.out_strides.index(config.det_stride)
        self.det_head = self.make_detection_head()

    def make_detection_head(self) -> CenterNetHead:
        """A freshly initialised detection head for this network (also used by importers of
        depth-only weights, which leave it untrained)."""
        config = self.config
        return CenterNetHead(
            self.neck.out_chs[self._det_level],
            num_classes=config.num_classes,
            head_chs=config.det_head_channels,
            init_depth_m=config.init_depth_m,
            depthwise=config.depthwise,
        )

    @property
    def depth_key(self) -> str:
        """Name of the dense depth output: ``log_depth`` or ``inverse_depth``."""
        return "inverse_depth" if self.config.depth_output == "inverse_relative" else "log_depth"

    def output_names(self) -> tuple[str, ...]:
        """Names of :meth:`forward`'s outputs, in a fixed order (for export)."""
        return ("heatmap", "log_size", "offset", "obj_log_depth", self.depth_key)

    @classmethod
    def from_state_dict(cls, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> HybridDPT:
        """Build without initialising (on the meta device) and take ``tensors`` as the weights.

        Much faster than ``HybridDPT(config)`` + ``load_state_dict`` for big networks (random
        init of ``base`` costs ~10 s on a small CPU). ``tensors`` must match exactly.
        """
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(tensors, strict=True, assign=True)
        leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if leftover:
            raise RuntimeError(f"tensors left uninitialised: {leftover[:5]}")
        return model

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input {h}x{w}: height and width must be multiples of 32")
        stem_maps, vit_tokens, grid_hw = self.backbone(images)
        maps = [self.reassemble[i](m) for i, m in enumerate(stem_maps)]
        maps += [self.reassemble[2 + i](tokens, grid_hw) for i, tokens in enumerate(vit_tokens)]
        paths = self.neck(maps)  # strides self.neck.out_strides
        out = self.det_head(paths[self._det_level])
        out[self.depth_key] = self.depth_head(paths[0])
        return out
