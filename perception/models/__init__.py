"""The hybrid CNN-stem ViT for detection and depth (DPT-Hybrid layout + CenterNet head).

Public API: :class:`HybridDPT`, :class:`ModelConfig`, :func:`create_model`, :func:`get_config`,
:func:`list_configs`, :func:`save_checkpoint`, :func:`load_checkpoint`. See docs/models.md.
"""

import os

# OpenMP threads that spin while they wait are a disaster on a shared CPU (measured on the
# 2-core VM under load: nano at 0.7 frames/s spinning vs 16 frames/s sleeping). libgomp reads
# this once, when torch is first imported, so it only helps if nothing imported torch before;
# entry points (CLI, nodes) should set it before importing torch too. The environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from perception.models.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from perception.models.config import DEFAULT_CLASSES, ModelConfig
from perception.models.hybrid_dpt import HybridDPT
from perception.models.registry import create_model, get_config, list_configs

__all__ = [
    "DEFAULT_CLASSES",
    "CheckpointInfo",
    "HybridDPT",
    "ModelConfig",
    "create_model",
    "get_config",
    "list_configs",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
]
