"""``perception import-weights``: turn published weights (local files) into our checkpoints.

* ``perception import-weights midas dpt_hybrid-midas-501f0c75.pt -o base-midas.safetensors``
  (also ``dpt_hybrid_384.pt``): the DPT-Hybrid MiDaS depth network as ``base``, output marked
  inverse relative depth; the detection head untrained.
* ``perception import-weights timm vit_base_r50_s16_384.safetensors -o base.safetensors``:
  ImageNet backbone weights of the matching timm hybrid; neck and heads random (a start for
  training).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _classes(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("need at least one class name")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-weights",
        help="convert published weights (local files) into a perception checkpoint",
        description=(
            "Convert published weights into a self-describing .safetensors checkpoint. "
            "'midas': a DPT-Hybrid MiDaS file (dpt_hybrid-midas-501f0c75.pt or "
            "dpt_hybrid_384.pt) into the 'base' network; it predicts inverse relative depth, "
            "which needs a scale and shift to become metres (see docs/models.md), and its "
            "detection head is untrained. 'timm': ImageNet weights of the timm hybrid matching "
            "--config (base: vit_base_r50_s16_384, small: vit_small_r26_s32_384) into the "
            "backbone; neck and heads stay random. Nothing is downloaded."
        ),
    )
    parser.add_argument("kind", choices=["midas", "timm"], help="what the file is")
    parser.add_argument("weights", type=Path, help="the published weights file")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="checkpoint to write (.safetensors)"
    )
    parser.add_argument(
        "--config",
        default="base",
        choices=["base", "small"],
        help="network for 'timm' weights (default base; 'midas' is always base)",
    )
    parser.add_argument(
        "--classes",
        type=_classes,
        default=None,
        help="comma-separated detection classes (default: car,truck,pedestrian,cyclist)",
    )
    parser.set_defaults(func=run_import_weights)


def run_import_weights(args: argparse.Namespace) -> int:
    from perception.models.checkpoint import save_checkpoint
    from perception.models.importers import (
        import_midas_dpt_hybrid,
        import_timm_backbone,
        provenance_for,
    )
    from perception.models.registry import create_model

    overrides = {"classes": args.classes} if args.classes else {}
    if args.kind == "midas":
        model, report = import_midas_dpt_hybrid(args.weights, **overrides)
        kind = "midas-dpt-hybrid"
    else:
        model = create_model(args.config, **overrides)
        report = import_timm_backbone(model, args.weights)
        kind = "timm-backbone"
    path = save_checkpoint(args.output, model, provenance=provenance_for(report, kind))
    print(
        f"wrote {path}: {len(report.mapped)} tensors imported, {len(report.dropped)} unused by "
        f"design ({', '.join(report.dropped[:4])}{', ...' if len(report.dropped) > 4 else ''}), "
        f"{len(report.untouched)} left at random init"
    )
    if args.kind == "midas":
        print(
            "note: depth is inverse relative (MiDaS); the engine needs inverse_depth_affine="
            "(scale, shift) for metres, and the detection head is untrained"
        )
    return 0
