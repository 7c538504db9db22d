"""CNN stems that feed the ViT: timm's ResNetV2 (DPT-Hybrid) and a light conv stem for CPUs.

Both expose the same small interface that :class:`~perception.models.backbone.HybridBackbone`
relies on, the one timm's ``ResNetV2`` already has: ``stem`` (input convs), ``stages`` (an
``nn.Sequential`` of downsampling stages, each tappable), ``norm`` and ``feature_info`` (a list of
``dict(num_chs, reduction, module)``, first entry the stem, then one per stage).

References: He et al., "Identity Mappings in Deep Residual Networks" (ResNetV2,
https://arxiv.org/abs/1603.05027); Dosovitskiy et al., "An Image is Worth 16x16 Words"
(the R50 hybrid, https://arxiv.org/abs/2010.11929).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from torch import nn


def resnetv2_stem(layers: tuple[int, ...], in_chans: int = 3) -> ResNetV2:
    """The ResNetV2 stem of timm's ``vit_*_r*`` hybrids (so their weights map 1:1).

    Non pre-activation bottlenecks, weight-standardised convs with TF 'same' padding and
    GroupNorm, as the original R50+ViT-B/16 (and so DPT-Hybrid) was trained.
    """
    return ResNetV2(
        layers=list(layers),
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        preact=False,
        stem_type="same",
        conv_layer=partial(StdConv2dSame, eps=1e-8),
    )


class ConvBnAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU: the one op oneDNN runs fastest on CPUs."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: bool = True,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.bn = norm_layer(out_chs)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut (ResNet basic block)."""

    def __init__(self, chs: int, norm_layer: type[nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(chs, chs, 3, norm_layer=norm_layer)
        self.conv2 = ConvBnAct(chs, chs, 3, act=False, norm_layer=norm_layer)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class LightStem(nn.Module):
    """A plain conv stem: a stride-2 conv, then stride-2 stages of basic blocks.

    With ``channels=(16, 32, 64, 128)`` it reaches 1/16 with 128 channels in a few hundred
    MMACs at 384x640: the ViT on top then sees only a few hundred tokens. Stage ``i`` is a
    stride-2 3x3 conv followed by ``layers[i]`` basic blocks.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        layers: tuple[int, ...] = (0, 1, 1),
        in_chans: int = 3,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(channels) != len(layers) + 1:
            raise ValueError("LightStem needs len(channels) == len(layers) + 1")
        self.stem = ConvBnAct(in_chans, channels[0], 3, stride=2, norm_layer=norm_layer)
        self.feature_info = [dict(num_chs=channels[0], reduction=2, module="stem")]
        self.stages = nn.Sequential()
        reduction = 2
        for i, (out_chs, depth) in enumerate(zip(channels[1:], layers, strict=True)):
            reduction *= 2
            blocks: list[nn.Module] = [
                ConvBnAct(channels[i], out_chs, 3, stride=2, norm_layer=norm_layer)
            ]
            blocks += [BasicBlock(out_chs, norm_layer=norm_layer) for _ in range(depth)]
            self.stages.add_module(str(i), nn.Sequential(*blocks))
            self.feature_info.append(
                dict(num_chs=out_chs, reduction=reduction, module=f"stages.{i}")
            )
        self.norm = nn.Identity()
        self.num_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(x)))


def build_stem(kind: str, layers: tuple[int, ...], channels: tuple[int, ...]) -> nn.Module:
    """Stem for a :class:`~perception.models.config.ModelConfig` (``stem``, ``stem_layers``,
    ``stem_channels``)."""
    if kind == "resnetv2":
        return resnetv2_stem(layers)
    if kind == "light":
        return LightStem(channels=channels, layers=layers)
    raise ValueError(f"unknown stem {kind!r}")


def fold_batchnorm_(model: nn.Module) -> int:
    """Fold the BatchNorm of every :class:`ConvBnAct` into its conv, in place (inference only).

    Saves one full pass over each activation map on CPUs. Returns how many were folded. The
    model must be in eval mode (running statistics are what gets folded).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in model.modules():
        if isinstance(module, ConvBnAct) and isinstance(module.bn, nn.BatchNorm2d):
            if module.bn.training or module.conv.training:
                raise ValueError("fold_batchnorm_ needs a model in eval mode")
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
            folded += 1
    return folded
