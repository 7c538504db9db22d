"""Typed configuration of a training run, read from one YAML file (``perception train``).

A run is one or more *phases* trained one after the other on the same network. Each phase has
its own input size, batch size, number of optimiser steps and learning-rate schedule (linear
warm-up, then cosine decay to ``min_lr_ratio * lr``). The usual recipe is a long phase at a
low resolution (cheap) followed by a short fine-tune at the resolution the engine runs at.
The checkpoint's ``input_hw`` is the last phase's input size, so the engine runs the network
at the size it was trained for last.

Unknown keys are an error (a typo must not silently train something else).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from perception.errors import UserError

DataKind = Literal["synthetic", "kitti"]


@dataclass
class SyntheticData:
    """Synthetic drives rendered once into drive folders (KITTI layout) under ``cache_dir``."""

    seeds: list[int] = field(default_factory=lambda: list(range(1, 41)))
    frames_per_seed: int = 30
    frame_stride: int = 5
    """Frames between two kept frames (10 fps drives: 5 = one frame every 0.5 s)."""
    start_frame: int = 0
    calibration: str = "calibration/synthetic_front.yaml"
    """Camera the drives are rendered through (relative paths: from the working directory,
    then from the repository root)."""
    cache_dir: str = "cache/synth"
    """Where the rendered drives are kept (one folder per seed; reused when complete)."""
    workers: int = 2
    """Processes rendering the cache."""


@dataclass
class KittiData:
    """Folders in KITTI layout (``image_2/``, ``label_2/``, ``depth/``, ``calib.txt``)."""

    roots: list[str] = field(default_factory=list)
    type_map: dict[str, str | None] | None = None
    """KITTI type -> our class (None: ignore region); default perception.data.kitti's."""


@dataclass
class AugmentSettings:
    """Passed to :class:`perception.data.AugmentConfig` (after the letterbox to input size)."""

    hflip_p: float = 0.5
    scale_p: float = 0.3
    scale_range: tuple[float, float] = (0.9, 1.15)
    colour_p: float = 0.8


@dataclass
class DataConfig:
    kind: DataKind = "synthetic"
    synthetic: SyntheticData = field(default_factory=SyntheticData)
    kitti: KittiData = field(default_factory=KittiData)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    max_objects: int = 64
    """Object slots per image in the targets (more objects are dropped)."""
    loader_workers: int = 0
    """DataLoader worker processes (0: load in the training process)."""


@dataclass
class Phase:
    """One stretch of training at one input size."""

    input_hw: tuple[int, int] = (384, 640)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.02


@dataclass
class OptimConfig:
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip_norm: float = 5.0


@dataclass
class LossConfig:
    """Weights of :class:`perception.models.losses.DetectionDepthLoss`."""

    heatmap: float = 1.0
    size: float = 1.0
    offset: float = 1.0
    obj_depth: float = 1.0
    depth_silog: float = 1.0
    depth_l1: float = 0.5


@dataclass
class TrainConfig:
    model: str = "nano"
    """Registry name (perception.models.registry)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """ModelConfig fields to replace, e.g. ``{drop_path_rate: 0.1}``."""
    init_checkpoint: str | None = None
    """Start from these weights (fine-tuning) instead of a random network."""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    phases: list[Phase] = field(default_factory=lambda: [Phase()])
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/nano"
    checkpoint_every_s: float = 300.0
    """Write the checkpoint and resume state at least this often (and at each phase end)."""
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU, which trains in fp32)."""
    device: str = "auto"

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a mapping, recursing into dataclass fields; unknown keys are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown keys {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    hints = {name: _nested(cls, name) for name in fields}
    for key, value in data.items():
        sub = hints[key]
        if sub is not None and isinstance(value, dict):
            kwargs[key] = _build(sub, value, f"{where}.{key}")
        elif key == "phases":
            if not isinstance(value, list) or not value:
                raise UserError(f"{where}.phases: need a non-empty list")
            kwargs[key] = [_build(Phase, v, f"{where}.phases[{i}]") for i, v in enumerate(value)]
        elif isinstance(value, list) and key in ("input_hw", "scale_range", "betas"):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from exc


_NESTED: dict[tuple[type, str], type] = {}


def _nested(cls: type, name: str) -> type | None:
    return _NESTED.get((cls, name))


_NESTED.update(
    {
        (TrainConfig, "data"): DataConfig,
        (TrainConfig, "optim"): OptimConfig,
        (TrainConfig, "loss"): LossConfig,
        (DataConfig, "synthetic"): SyntheticData,
        (DataConfig, "kitti"): KittiData,
        (DataConfig, "augment"): AugmentSettings,
    }
)


def validate(config: TrainConfig) -> TrainConfig:
    """Raise :class:`UserError` for values no run can use."""
    if config.data.kind not in ("synthetic", "kitti"):
        raise UserError(f"data.kind must be 'synthetic' or 'kitti', not {config.data.kind!r}")
    if config.data.kind == "kitti" and not config.data.kitti.roots:
        raise UserError("data.kind is 'kitti' but data.kitti.roots is empty")
    syn = config.data.synthetic
    if config.data.kind == "synthetic" and (
        not syn.seeds or syn.frames_per_seed < 1 or syn.frame_stride < 1
    ):
        raise UserError("synthetic data needs seeds and positive frames_per_seed, frame_stride")
    for i, p in enumerate(config.phases):
        if len(p.input_hw) != 2 or any(s <= 0 or s % 32 for s in p.input_hw):
            raise UserError(f"phases[{i}].input_hw {p.input_hw}: need two multiples of 32")
        if p.steps < 1 or p.batch_size < 1 or p.lr <= 0 or p.warmup_steps < 0:
            raise UserError(f"phases[{i}]: steps, batch_size, lr must be positive")
        if not 0 <= p.min_lr_ratio <= 1:
            raise UserError(f"phases[{i}].min_lr_ratio must be in [0, 1]")
    if config.checkpoint_every_s <= 0:
        raise UserError("checkpoint_every_s must be positive")
    return config


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"training config not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from exc
    return validate(_build(TrainConfig, doc, str(path)))


def train_config_from_dict(doc: dict[str, Any], where: str = "config") -> TrainConfig:
    """The same as :func:`load_train_config` for an in-memory mapping (tests, provenance)."""
    return validate(_build(TrainConfig, doc, where))
