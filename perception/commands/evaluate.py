"""`perception eval [--checkpoint FILE] DATA [--json]`: detection AP and depth metrics."""

from __future__ import annotations

import argparse
import json


def _input_hw(text: str) -> tuple[int, int]:
    from perception.errors import UserError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--input-size {text!r}: want HEIGHTxWIDTH, e.g. 384x640") from None
    return h, w


def cmd_eval(args: argparse.Namespace) -> int:
    from perception.training.evaluate import evaluate_checkpoint, format_table

    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        device=args.device,
        input_hw=_input_hw(args.input_size) if args.input_size else None,
        progress=not args.json and not args.no_progress,
    )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=1)
    print(json.dumps(metrics) if args.json else format_table(metrics))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a network: detection AP and depth metrics",
        description="Run a checkpoint (default: the shipped nano network) over a drive "
        "through the inference engine and score it: detection AP at IoU 0.5 and 0.7 per "
        "class and their mean (COCO-style, pycocotools; KITTI-moderate objects are "
        "evaluated, smaller / more occluded / truncated ones and DontCare regions are "
        "ignored), and depth AbsRel, SqRel, RMSE, RMSE log, delta < 1.25, 1.25^2, 1.25^3 "
        "(KITTI/Eigen, ground truth under 80 m). See docs/training.md.",
    )
    p.add_argument(
        "data",
        metavar="DATA",
        help="a drive folder (perception synth -o DIR), a KITTI-layout folder (image_2/, "
        "label_2/, depth/, calib.txt), or synthetic:SEED:FRAMES[:STRIDE] to render frames "
        "0, STRIDE, 2*STRIDE, ... of a synthetic drive on the fly",
    )
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="a .safetensors checkpoint (default: perception/weights/nano.safetensors)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--output", metavar="FILE", help="also write the metrics (JSON) to FILE")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ... (default auto)")
    p.add_argument(
        "--input-size",
        metavar="HxW",
        help="network input size, e.g. 384x640 (default: the checkpoint's)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)
