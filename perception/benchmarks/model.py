"""``perception bench model``: speed of the whole engine (pre + forward + post) per config.

Prints one JSON object per batch size: config, device, batch, parameters, GFLOPs per frame
(counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward: multiply-adds
count 2), the median milliseconds of each stage over the timed runs, and frames per second
through :meth:`perception.inference.Engine.infer` (batch / median wall time of a call).
Random weights: speed does not depend on them. Frames are random BGR images of
``--frame-height`` x ``--frame-width`` (default 720p), letterboxed into the input size.
"""

from __future__ import annotations

import os

# Sleep instead of spinning in OpenMP barriers; read by libgomp when torch loads, so set it
# before importing torch (why: perception/models/__init__.py). The environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from perception.inference import Engine, EngineConfig
from perception.models.config import ModelConfig
from perception.models.hybrid_dpt import HybridDPT
from perception.models.registry import list_configs


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Time the inference engine (pre-processing, forward, post-processing) for a network "
        "config with random weights; print one JSON line per batch size."
    )
    parser.add_argument(
        "--config", default="nano", choices=list_configs(), help="network config (default nano)"
    )
    parser.add_argument(
        "--device", default="auto", help="'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', ..."
    )
    parser.add_argument(
        "--batch",
        type=int,
        action="append",
        help="frames per forward (cameras batched); repeat for several (default: 1 and 6)",
    )
    parser.add_argument("--height", type=int, default=384, help="network input height (px)")
    parser.add_argument("--width", type=int, default=640, help="network input width (px)")
    parser.add_argument(
        "--frame-height", type=int, default=720, help="height of the source frames (px)"
    )
    parser.add_argument(
        "--frame-width", type=int, default=1280, help="width of the source frames (px)"
    )
    parser.add_argument("--runs", type=int, default=20, help="timed calls per batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="'auto': fp32 on CPU, bf16 autocast on CUDA",
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="replay captured CUDA graphs (CUDA only)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )


def count_gflops(config: ModelConfig, input_hw: tuple[int, int]) -> float:
    """GFLOPs of one forward on one frame (multiply-add = 2 FLOPs).

    Counted on the meta device: no memory, no time, and attention runs as plain matmuls there,
    which the counter sees (fused CPU attention kernels it would miss).
    """
    with torch.device("meta"):
        model = HybridDPT(config).eval()
        x = torch.zeros(1, 3, *input_hw)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 1e9


def run(args: argparse.Namespace) -> int:
    engine = Engine.from_config(
        args.config,
        EngineConfig(
            device=args.device,
            input_hw=(args.height, args.width),
            precision=args.precision,
            cuda_graph=args.cuda_graph,
            compile=args.compile,
            threads=args.threads,
        ),
    )
    params = sum(p.numel() for p in engine.model.parameters())
    gflops = count_gflops(engine.model_config, engine.input_hw)
    rng = np.random.default_rng(0)
    for batch in args.batch or [1, 6]:
        frames = [
            rng.integers(0, 256, (args.frame_height, args.frame_width, 3), dtype=np.uint8)
            for _ in range(batch)
        ]
        engine.warmup(batch, iterations=max(1, args.warmup))
        walls, stages = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            engine.infer(frames)
            walls.append((time.perf_counter() - start) * 1e3)
            stages.append(engine.last_timings)
        wall = statistics.median(walls)
        result: dict[str, Any] = {
            "bench": "model",
            "config": args.config,
            "device": str(engine.device),
            "device_name": _device_name(engine.device),
            "precision": str(engine.dtype).replace("torch.", ""),
            "batch": batch,
            "input": f"{args.height}x{args.width}",
            "frame": f"{args.frame_height}x{args.frame_width}",
            "params": params,
            "gflops_per_frame": round(gflops, 3),
            "pre_ms": round(statistics.median(s.pre_ms for s in stages), 2),
            "forward_ms": round(statistics.median(s.forward_ms for s in stages), 2),
            "post_ms": round(statistics.median(s.post_ms for s in stages), 2),
            "total_ms": round(wall, 2),
            "fps": round(batch * 1e3 / wall, 2),
            "runs": args.runs,
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "cuda_graph": bool(args.cuda_graph),
            "compile": bool(args.compile),
            "torch": torch.__version__,
        }
        print(json.dumps(result), flush=True)
    return 0


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
