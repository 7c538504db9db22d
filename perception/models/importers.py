"""Import published weights from local files (no downloads).

* :func:`import_midas_dpt_hybrid`: the DPT-Hybrid MiDaS depth checkpoints
  (``dpt_hybrid-midas-501f0c75.pt`` from isl-org/DPT, ``dpt_hybrid_384.pt`` from MiDaS v3) into
  the ``base`` network, key by key. MiDaS predicts **inverse relative depth** (disparity up to an
  unknown scale and shift, because it was trained on mixed datasets with an affine-invariant
  loss), so the imported network is marked ``depth_output='inverse_relative'``: it gives relative
  depth at once, and metres only with a scale and shift from elsewhere (``EngineConfig.
  inverse_depth_affine``; see docs/models.md). The detection head stays randomly initialised.
* :func:`import_timm_backbone`: ImageNet weights of the matching timm hybrid
  (``vit_base_r50_s16_384`` for ``base``, ``vit_small_r26_s32_384`` for ``small``) from a local
  file, through timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), into the backbone;
  neck and heads stay random. The usual start for training.

Every import accounts for every key of the file: mapped onto a parameter, or dropped because
the original network never used it either (listed in the report); anything else is an error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from perception.errors import UserError
from perception.models.checkpoint import check_state_dict
from perception.models.config import ModelConfig
from perception.models.hybrid_dpt import HybridDPT
from perception.models.registry import get_config

# DPT-Hybrid key -> our key, as (pattern, replacement) applied to the first matching pattern.
_MIDAS_RULES: tuple[tuple[str, str], ...] = (
    (r"^pretrained\.model\.", "backbone.vit."),
    (r"^pretrained\.act_postprocess([34])\.0\.project\.0\.", r"reassemble.{\1}.readout.project.0."),
    (r"^pretrained\.act_postprocess([34])\.3\.", r"reassemble.{\1}.proj."),
    (r"^pretrained\.act_postprocess4\.4\.", "reassemble.3.resample."),
    (r"^scratch\.layer([1-4])_rn\.", r"neck.lateral.{\1}."),
    (r"^scratch\.refinenet([1-4])\.resConfUnit([12])\.", r"neck.fusion.{\1}.rcu\2."),
    (r"^scratch\.refinenet([1-4])\.out_conv\.", r"neck.fusion.{\1}.out_conv."),
    (r"^scratch\.output_conv\.0\.", "depth_head.conv1."),
    (r"^scratch\.output_conv\.2\.", "depth_head.conv2."),
    (r"^scratch\.output_conv\.4\.", "depth_head.conv3."),
)
# Keys DPT-Hybrid stores but its forward never uses (the classifier, the final ViT norm whose
# output is discarded, and refinenet4's first residual unit, which has no lateral input).
_MIDAS_UNUSED = re.compile(
    r"^pretrained\.model\.(head|norm)\.|^scratch\.refinenet4\.resConfUnit1\."
)


@dataclass
class ImportReport:
    """What an import did with each key."""

    source: str
    mapped: dict[str, str] = field(default_factory=dict)  # file key -> network key
    dropped: list[str] = field(default_factory=list)  # file keys unused by design
    untouched: list[str] = field(default_factory=list)  # network keys left at init

    @property
    def consumed(self) -> set[str]:
        return set(self.mapped) | set(self.dropped)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def midas_key(key: str) -> str | None:
    """Our name for a DPT-Hybrid key; None if the key is unused by design; raises if unknown."""
    if _MIDAS_UNUSED.match(key):
        return None
    for pattern, replacement in _MIDAS_RULES:
        match = re.match(pattern, key)
        if match is None:
            continue
        new_prefix = match.expand(replacement)
        # Levels are 1-based in DPT (and act_postprocess3/4 are levels 3/4): make them 0-based.
        new_prefix = re.sub(r"\{(\d)\}", lambda m: str(int(m.group(1)) - 1), new_prefix)
        return new_prefix + key[match.end() :]
    raise KeyError(key)


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        data: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals: all mean "bad file"
        raise UserError(f"{path}: cannot read as a PyTorch weights file ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]  # training snapshots hold {"model": ..., "optimizer": ...}
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return data


def midas_config(**overrides: Any) -> ModelConfig:
    """``base`` marked as MiDaS's inverse-relative depth output."""
    return get_config("base", depth_output="inverse_relative", **overrides)


def import_midas_dpt_hybrid(
    path: str | Path, **config_overrides: Any
) -> tuple[HybridDPT, ImportReport]:
    """Load a DPT-Hybrid MiDaS checkpoint into a ``base`` network.

    ``config_overrides`` may change what the checkpoint does not fix (``classes``, ``input_hw``,
    ...). Returns the network (eval mode, CPU) and a report; ``provenance_for(report)`` gives
    what to store with it. Raises :class:`UserError` on a file that is not DPT-Hybrid.
    """
    path = Path(path)
    state = _torch_load(path)
    config = midas_config(**config_overrides)
    with torch.device("meta"):
        model = HybridDPT(config)  # a skeleton: names and shapes only
    report = ImportReport(source=str(path))
    tensors: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        try:
            new_key = midas_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new_key is None:
            report.dropped.append(key)
        else:
            report.mapped[key] = new_key
            tensors[new_key] = tensor
    if unknown:
        raise UserError(
            f"{path}: not a DPT-Hybrid (MiDaS) checkpoint: {len(unknown)} unknown keys, e.g. "
            + ", ".join(unknown[:5])
        )
    with torch.device("cpu"):
        det_head = model.make_detection_head()  # stays at its (random) init
    for key, tensor in det_head.state_dict().items():
        tensors[f"det_head.{key}"] = tensor
        report.untouched.append(f"det_head.{key}")
    check_state_dict(model, tensors, source=str(path))
    return HybridDPT.from_state_dict(config, tensors).eval(), report


def import_timm_backbone(
    model: HybridDPT, path: str | Path, timm_name: str | None = None
) -> ImportReport:
    """Load timm ImageNet weights of the matching hybrid ViT into ``model``'s backbone.

    Uses timm's loader on a local file (``.safetensors``, ``.pth``/``.bin`` or the original
    ``.npz``): it applies timm's own key and position-embedding filters. The classifier and the
    final norm (pruned from our backbone: nothing reads them) are reported as dropped.
    """
    import timm

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    cfg = model.config
    name = timm_name or cfg.timm_name
    if name is None:
        raise UserError(f"config {cfg.name!r} has no timm counterpart to import weights from")
    try:
        reference = timm.create_model(
            name,
            pretrained=True,
            pretrained_cfg_overlay=dict(
                file=str(path), source="", custom_load=path.suffix == ".npz"
            ),
            num_classes=0,
            img_size=cfg.pos_embed_hw,
        )
    except Exception as exc:  # timm raises RuntimeError/KeyError/ValueError on bad files
        raise UserError(f"{path}: timm could not load it as {name!r} weights ({exc})") from exc
    source = reference.state_dict()
    target = model.backbone.vit.state_dict()
    report = ImportReport(source=str(path))
    tensors = {}
    for key, tensor in source.items():
        if key in target:
            tensors[key] = tensor
            report.mapped[key] = f"backbone.vit.{key}"
        else:
            report.dropped.append(key)
    # timm's loader already removed the ImageNet classifier (we asked for num_classes=0).
    pretrained_cfg: dict[str, Any] = dict(getattr(reference, "pretrained_cfg", None) or {})
    classifier = str(pretrained_cfg.get("classifier", "head"))
    report.dropped += [f"{classifier}.weight", f"{classifier}.bias"]
    check_state_dict(model.backbone.vit, tensors, source=f"{path} ({name})")
    model.backbone.vit.load_state_dict(tensors, strict=True)
    prefix = "backbone.vit."
    report.untouched = sorted(k for k in model.state_dict() if not k.startswith(prefix))
    return report


def provenance_for(report: ImportReport, kind: str) -> dict[str, Any]:
    """Provenance block for :func:`~perception.models.checkpoint.save_checkpoint`."""
    path = Path(report.source)
    info: dict[str, Any] = {
        "source": kind,
        "imported_file": path.name,
        "sha256": sha256_file(path),
        "keys_mapped": len(report.mapped),
        "keys_dropped": report.dropped,
    }
    if kind == "midas-dpt-hybrid":
        info["depth"] = (
            "inverse relative depth (MiDaS, affine-invariant): needs a scale and shift for metres"
        )
        info["detection_head"] = "untrained (random init)"
    elif kind == "timm-backbone":
        info["trained_parts"] = "backbone (ImageNet); neck and heads random"
    return info
