"""The hybrid CNN-stem ViT for detection and depth (DPT-Hybrid layout + CenterNet head).

Public API: :class:`HybridDPT`, :class:`ModelConfig`, :func:`create_model`, :func:`get_config`,
:func:`list_configs`, :func:`save_checkpoint`, :func:`load_checkpoint`. See docs/models.md.
"""

# OMP_WAIT_POLICY=PASSIVE is set in perception/__init__.py, before torch can load.
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
