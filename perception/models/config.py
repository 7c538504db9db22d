"""The hyper-parameters of a hybrid DPT network, as one typed, serialisable dataclass.

A :class:`ModelConfig` is everything needed to rebuild a network's structure: checkpoints store it
as JSON (``perception.models.checkpoint``), the named variants (``perception.models.registry``)
are functions returning one. Image-space facts live here too (input size, normalisation, class
names) so that a checkpoint describes itself completely.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")

StemKind = Literal["resnetv2", "light"]
Readout = Literal["project", "add", "ignore"]
DepthOutput = Literal["metric", "inverse_relative"]
DepthUpsample = Literal["features", "output"]

#: Output strides of the four pyramid levels the neck fuses (DPT: 1/4, 1/8, 1/16, 1/32).
PYRAMID_STRIDES: tuple[int, int, int, int] = (4, 8, 16, 32)


@dataclass(frozen=True)
class ModelConfig:
    """Structure of a :class:`~perception.models.hybrid_dpt.HybridDPT` network.

    Tap layout (DPT-Hybrid): two CNN-stem stages give the high-resolution pyramid levels (1/4 and
    1/8), two transformer blocks give the low-resolution ones (1/16 and 1/32), so the stem runs
    once and the ViT sees few tokens.
    """

    name: str
    # -- CNN stem ---------------------------------------------------------------------------
    stem: StemKind
    stem_layers: tuple[int, ...]
    """Blocks per stem stage (resnetv2: bottlenecks, e.g. (3, 4, 9) = R50 cut to 3 stages)."""
    stem_channels: tuple[int, ...] = ()
    """light stem only: width of the stride-2 input conv, then of each stage."""
    stem_taps: tuple[int, int] = (0, 1)
    """Stem stages tapped for pyramid levels 1 (1/4) and 2 (1/8)."""
    # -- ViT ----------------------------------------------------------------------------------
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 1
    """Patch size on the stem's output map (token stride = stem stride * patch size)."""
    vit_taps: tuple[int, int] = (8, 11)
    """Transformer blocks tapped (before any final norm) for pyramid levels 3 and 4."""
    pos_embed_hw: tuple[int, int] = (384, 384)
    """Input size (pixels) the learned position-embedding grid is laid out for; other input
    sizes resample it bilinearly, as DPT does."""
    timm_name: str | None = None
    """timm model whose backbone weights map 1:1 onto this one (for importing), if any."""
    drop_path_rate: float = 0.0
    # -- neck ---------------------------------------------------------------------------------
    readout: Readout = "project"
    reassemble_channels: tuple[int, int, int, int] = (256, 512, 768, 768)
    """Channels of the four reassembled maps (stem taps: the stage widths, unchanged)."""
    neck_channels: tuple[int, int, int, int] = (256, 256, 256, 256)
    """Fusion width per pyramid level (DPT: 256 everywhere)."""
    lateral_kernel: int = 3
    """Kernel of the lateral convs mapping reassembled maps to the fusion width (DPT: 3)."""
    depthwise: bool = False
    """Depthwise-separable convs in the fusion units and heads (cheap on CPUs)."""
    # -- depth head -----------------------------------------------------------------------------
    depth_head_channels: tuple[int, int] = (128, 32)
    depth_upsample: DepthUpsample = "features"
    """'features': the neck ends at 1/2 and the head upsamples its features x2 between its convs
    (DPT); 'output': the neck ends at 1/4, the head's convs run there and only the one-channel
    prediction is upsampled x4 (cheap on CPUs)."""
    depth_output: DepthOutput = "metric"
    """'metric': log-depth in metres; 'inverse_relative': MiDaS-style affine-invariant inverse
    depth (imported weights), which needs a scale and shift to become depth."""
    init_depth_m: float = 10.0
    min_depth_m: float = 0.1
    max_depth_m: float = 300.0
    # -- detection head -------------------------------------------------------------------------
    classes: tuple[str, ...] = DEFAULT_CLASSES
    det_stride: Literal[4, 8] = 4
    det_head_channels: int = 64
    max_detections: int = 100
    """Heatmap peaks the decoder keeps per image (top-K), before any score threshold."""
    # -- image ----------------------------------------------------------------------------------
    input_hw: tuple[int, int] = (384, 640)
    """Default network input (height, width); any multiple of 32 works."""
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Normalisation of RGB values scaled to [0, 1]."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes that travel with the config (never read by the builder)."""

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"model config {self.name!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        if self.stem not in ("resnetv2", "light"):
            out.append(f"stem must be 'resnetv2' or 'light', not {self.stem!r}")
        if self.stem == "light" and len(self.stem_channels) != len(self.stem_layers) + 1:
            out.append("light stem needs one channel count for the input conv plus one per stage")
        if not all(0 <= t < len(self.stem_layers) for t in self.stem_taps):
            out.append(f"stem_taps {self.stem_taps} outside the {len(self.stem_layers)} stages")
        if not all(0 <= t < self.depth for t in self.vit_taps) or self.vit_taps != tuple(
            sorted(self.vit_taps)
        ):
            out.append(f"vit_taps {self.vit_taps} must be increasing blocks of 0..{self.depth - 1}")
        if self.embed_dim % self.num_heads:
            out.append("embed_dim must be divisible by num_heads")
        if self.readout not in ("project", "add", "ignore"):
            out.append(f"unknown readout {self.readout!r}")
        if self.depth_output not in ("metric", "inverse_relative"):
            out.append(f"unknown depth_output {self.depth_output!r}")
        if self.depth_upsample not in ("features", "output"):
            out.append(f"unknown depth_upsample {self.depth_upsample!r}")
        if self.det_stride not in (4, 8):
            out.append("det_stride must be 4 or 8")
        if not self.classes:
            out.append("at least one class is needed")
        if len(set(self.classes)) != len(self.classes):
            out.append("class names must be unique")
        if any(s % 32 for s in self.input_hw) or min(self.input_hw) <= 0:
            out.append(f"input_hw {self.input_hw} must be positive multiples of 32")
        if not 0 < self.min_depth_m < self.init_depth_m < self.max_depth_m:
            out.append("need 0 < min_depth_m < init_depth_m < max_depth_m")
        if self.lateral_kernel not in (1, 3):
            out.append("lateral_kernel must be 1 or 3")
        return out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def log_depth_range(self) -> tuple[float, float]:
        return math.log(self.min_depth_m), math.log(self.max_depth_m)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming unknown or bad fields."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, val in data.items():
            kwargs[key] = _tuplify(val) if isinstance(val, list) else val
        try:
            return cls(**kwargs)
        except TypeError as exc:  # missing required fields
            raise ValueError(str(exc)) from exc


def _tuplify(value: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuplify(v) if isinstance(v, list) else v for v in value)
