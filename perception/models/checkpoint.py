"""Self-describing checkpoints: safetensors weights + the config that rebuilds the network.

A checkpoint is one ``.safetensors`` file (no pickle: loading it runs no code). Its metadata
holds one key, ``perception``, a JSON object::

    {"format": "perception.checkpoint", "format_version": 1,
     "architecture": "HybridDPT",
     "config": {... ModelConfig fields: name, hyper-parameters, classes, input_hw, mean, std ...},
     "provenance": {... free-form: source, dataset, epochs, git commit, imported file, ...}}

:func:`load_checkpoint` rebuilds the network from ``config`` and loads the tensors strictly:
a missing, unreadable, truncated or mismatched file gives one :class:`UserError` that says what
is wrong (for a mismatch: which keys are missing or unexpected and which shapes differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from perception.errors import UserError
from perception.models.config import ModelConfig
from perception.models.hybrid_dpt import HybridDPT

FORMAT = "perception.checkpoint"
FORMAT_VERSION = 1
ARCHITECTURE = "HybridDPT"
METADATA_KEY = "perception"
_MAX_LISTED = 8


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself."""

    config: ModelConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    format_version: int = FORMAT_VERSION

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.config.input_hw


def save_checkpoint(
    path: str | Path, model: HybridDPT, provenance: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s weights and config to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "config": model.config.to_dict(),
        "provenance": provenance or {},
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(header)})
    return path


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The config and provenance of a checkpoint, without loading its tensors."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors checkpoint ({exc})") from exc
    return _parse_metadata(path, metadata)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[HybridDPT, CheckpointInfo]:
    """Rebuild the network a checkpoint describes and load its weights (strictly).

    Returns ``(model in eval mode on device, info)``.
    """
    info = read_checkpoint_info(path)
    assert info.path is not None
    try:
        with safe_open(str(info.path), framework="pt", device="cpu") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{info.path}: truncated or corrupt checkpoint ({exc})") from exc
    try:
        with torch.device("meta"):
            skeleton = HybridDPT(info.config)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{info.path}: cannot build the network it describes: {exc}") from exc
    check_state_dict(skeleton, tensors, source=str(info.path))
    model = HybridDPT.from_state_dict(info.config, tensors)
    return model.to(device).eval(), info


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise a :class:`UserError` naming missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_listing(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches ({_listing(wrong)})")
    if problems:
        raise UserError(
            f"{source}: weights do not match the network it describes: " + "; ".join(problems)
        )


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def _parse_metadata(path: Path, metadata: dict[str, str]) -> CheckpointInfo:
    if METADATA_KEY not in metadata:
        raise UserError(
            f"{path}: a safetensors file without perception metadata (not written by "
            "save_checkpoint; to use foreign weights, import them: see docs/models.md)"
        )
    try:
        header = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: corrupt perception metadata ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"{path}: metadata is not a {FORMAT} header")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format version {version!r}; this code reads up to "
            f"{FORMAT_VERSION} (update perception)"
        )
    if header.get("architecture") != ARCHITECTURE:
        raise UserError(f"{path}: unknown architecture {header.get('architecture')!r}")
    try:
        config = ModelConfig.from_dict(header["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad model config in metadata: {exc}") from exc
    provenance = header.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise UserError(f"{path}: provenance must be a JSON object")
    return CheckpointInfo(config=config, provenance=provenance, path=path, format_version=version)
