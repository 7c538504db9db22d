"""``perception export onnx CHECKPOINT -o model.onnx``: the network as ONNX, for TensorRT & co.

The graph takes ``images``: normalised RGB ``(batch, 3, H, W)`` float32 (batch dynamic, H x W
fixed at export; normalisation = the checkpoint's mean/std, stored in the model's metadata) and
returns the raw network outputs by name (``heatmap``, ``log_size``, ``offset``,
``obj_log_depth``, and ``log_depth`` or ``inverse_depth``): decode them as
:mod:`perception.models.decode` does. After export, the file is checked against PyTorch on
random frames with onnxruntime when it is installed (an optional extra).
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception.commands.export import DEFAULT_OPSET
from perception.errors import UserError
from perception.models.checkpoint import load_checkpoint
from perception.models.hybrid_dpt import HybridDPT
from perception.models.letterbox import Letterbox, letterbox_into


class _TupleOutputs(nn.Module):
    """ONNX wants positional outputs: the model's dict in :meth:`HybridDPT.output_names` order."""

    def __init__(self, model: HybridDPT) -> None:
        super().__init__()
        self.model = model
        self.names = model.output_names()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(images)
        return tuple(outputs[name] for name in self.names)


@dataclass(frozen=True)
class ParityReport:
    """Largest |onnxruntime - PyTorch| per output over the random frames checked."""

    max_abs_diff: dict[str, float]
    batches: tuple[int, ...]

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


def export_onnx(
    model: HybridDPT,
    path: str | Path,
    input_hw: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hw = input_hw or model.config.input_hw
    if any(s <= 0 or s % 32 for s in hw):
        raise UserError(f"input size {hw[0]}x{hw[1]}: need positive multiples of 32")
    wrapper = _TupleOutputs(model.eval()).eval()
    example = torch.zeros(2, 3, *hw)
    names = list(wrapper.names)
    dynamic = {"images": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constant shapes (H, W are fixed)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["images"],
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    model.eval()  # the exporter restores the wrapper's (train) mode recursively
    _add_metadata(path, model, hw)
    return path


def _add_metadata(path: Path, model: HybridDPT, hw: tuple[int, int]) -> bool:
    """Store the config in the file (needs the ``onnx`` package; skipped without it)."""
    try:
        import onnx
    except ImportError:
        return False
    proto = onnx.load(str(path))
    config = dict(model.config.to_dict(), input_hw=list(hw))
    for key, value in {
        "perception.config": json.dumps(config),
        "perception.input": "images: RGB, (x / 255 - mean) / std, NCHW float32",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return True


def random_frames_batch(
    model: HybridDPT, batch: int, hw: tuple[int, int], seed: int = 0
) -> torch.Tensor:
    """Random BGR frames of odd sizes, letterboxed and normalised as the engine does."""
    rng = np.random.default_rng(seed)
    cfg = model.config
    mean = torch.tensor(cfg.mean)
    std = torch.tensor(cfg.std)
    out = torch.zeros(batch, 3, *hw)
    for i in range(batch):
        src_hw = (
            int(rng.integers(hw[0] // 2, hw[0] * 2)),
            int(rng.integers(hw[1] // 2, hw[1] * 2)),
        )
        frame = torch.from_numpy(rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8))
        box = Letterbox.fit(src_hw, hw)
        letterbox_into(out[i].permute(1, 2, 0), frame, box, 1 / (255 * std), -mean / std)
    return out


def check_parity(
    model: HybridDPT, path: str | Path, batches: tuple[int, ...] = (1, 3)
) -> ParityReport:
    """Run the ONNX file with onnxruntime and PyTorch on the same random frames."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UserError("onnxruntime is not installed (pip install onnxruntime)") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hw = tuple(session.get_inputs()[0].shape[2:4])
    names = [o.name for o in session.get_outputs()]
    worst = dict.fromkeys(names, 0.0)
    model = model.eval()
    for seed, batch in enumerate(batches):
        images = random_frames_batch(model, batch, (int(hw[0]), int(hw[1])), seed=seed)
        ort_out = session.run(None, {"images": images.numpy()})
        with torch.inference_mode():
            ref = model(images)
        for name, got in zip(names, ort_out, strict=True):
            diff = float(np.abs(got - ref[name].float().numpy()).max())
            worst[name] = max(worst[name], diff)
    return ParityReport(max_abs_diff=worst, batches=batches)


def run_export_onnx(args: argparse.Namespace) -> int:
    model, info = load_checkpoint(args.checkpoint)
    path = export_onnx(model, args.output, input_hw=args.input_size, opset=args.opset)
    print(f"wrote {path} ({info.config.name}, input {args.input_size or info.input_hw})")
    if args.no_verify:
        return 0
    try:
        report = check_parity(model, path)
    except UserError as exc:
        print(f"not verified: {exc}")
        return 0
    for name, diff in report.max_abs_diff.items():
        print(f"  {name}: max |onnx - torch| = {diff:.3g}")
    if report.worst > args.tolerance:
        print(f"error: ONNX output differs from PyTorch by {report.worst:.3g} > {args.tolerance}")
        return 1
    print(f"verified against PyTorch on random frames, batches {list(report.batches)}")
    return 0
