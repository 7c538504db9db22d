"""`perception export onnx CHECKPOINT -o model.onnx`: the network for TensorRT and friends.

Registration only: torch loads when the command runs (`perception --help` stays fast).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-3  # largest |onnx - torch| accepted by the verification


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH, e.g. 384x640") from exc
    return h, w


def _run_export_onnx(args: argparse.Namespace) -> int:
    from perception.models.export import run_export_onnx

    return run_export_onnx(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a network checkpoint to another format (ONNX)",
        description="Export a network checkpoint for deployment outside PyTorch.",
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx_parser = formats.add_parser(
        "onnx",
        help="ONNX with a dynamic batch axis (for TensorRT, onnxruntime, ...)",
        description=(
            "Export CHECKPOINT to ONNX. Input 'images': normalised RGB (batch, 3, H, W) float32, "
            "batch dynamic, H x W fixed. Outputs: the raw heads (heatmap, log_size, offset, "
            "obj_log_depth, log_depth or inverse_depth); the model config (classes, "
            "mean/std, strides) is stored in the ONNX metadata as 'perception.config'. The "
            "file is then compared with PyTorch on random frames (needs onnxruntime)."
        ),
    )
    onnx_parser.add_argument("checkpoint", type=Path, help="a .safetensors network checkpoint")
    onnx_parser.add_argument(
        "-o", "--output", type=Path, required=True, help="where to write the .onnx file"
    )
    onnx_parser.add_argument(
        "--input-size",
        type=_parse_hw,
        default=None,
        metavar="HxW",
        help="network input HEIGHTxWIDTH, multiples of 32 (default: the checkpoint's)",
    )
    onnx_parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    onnx_parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the onnxruntime-vs-PyTorch check (it is skipped anyway without onnxruntime)",
    )
    onnx_parser.add_argument(
        "--tolerance",
        type=float,
        default=PARITY_TOLERANCE,
        help=f"largest allowed |onnx - torch| on any output (default {PARITY_TOLERANCE})",
    )
    onnx_parser.set_defaults(func=_run_export_onnx)
