"""The inference engine: BGR frames in, ``Detections`` and ``DepthMap`` messages out.

One :class:`Engine` owns one network on one device. :meth:`Engine.infer` takes one frame or a
list of frames (several cameras, any sizes: batched into one forward) and, per frame, returns a
:class:`FrameResult` whose messages have their data fields filled in source-image pixels; the
caller (the detector node) fills the envelope (``seq``, ``stamp_ns``, ``frame_id``, ``valid``).

Stages, all on the network's device, vectorised (no Python loop over pixels or boxes):

1. **pre**: letterbox each frame into the input size (keep aspect ratio, bilinear with
   antialiasing, centred, border = mean), BGR -> RGB, normalise;
2. **forward**: the network, in ``torch.inference_mode``; fp32 on CPU, bf16 autocast on CUDA,
   channels-last memory; optionally replayed from a captured CUDA graph and/or
   ``torch.compile``-d for fixed shapes;
3. **post**: CenterNet decoding (max-pool peaks, top-K, no NMS), boxes mapped back through the
   letterbox exactly, dense depth cropped to the image area; one copy to the host per frame.

Per-stage wall times of the last call are in :attr:`Engine.last_timings` (for node status).
"""

from __future__ import annotations

import os

# Sleep instead of spinning in OpenMP barriers; read by libgomp when torch loads, so set it
# before importing torch (why: perception/models/__init__.py). The environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import ctypes
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from perception.errors import UserError
from perception.models.checkpoint import CheckpointInfo, load_checkpoint
from perception.models.config import ModelConfig
from perception.models.decode import decode_detections, dense_depth_m
from perception.models.hybrid_dpt import HybridDPT
from perception.models.letterbox import Letterbox, letterbox_into
from perception.models.registry import create_model
from perception.models.stem import fold_batchnorm_
from perception.msgs import DepthMap, Detections

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]

_GLIBC_M_TRIM_THRESHOLD = -1
_GLIBC_M_MMAP_THRESHOLD = -3


def default_checkpoint() -> Path:
    """The packaged default network (``perception/weights/nano.safetensors``)."""
    return Path(__file__).resolve().parent / "weights" / "nano.safetensors"


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA if present, else Apple MPS, else CPU; otherwise the named device."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise UserError(f"bad device {name!r}: {exc}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"device {name!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    PyTorch's CPU tensors come from ``malloc``; glibc serves large blocks with fresh ``mmap``s
    and trims the heap eagerly, so every forward page-faults its activations in again. On the
    2-core reference machine that cost ~30% of the nano forward. Raising the mmap and trim
    thresholds keeps the pages mapped. Process-wide, harmless; returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok_mmap = libc.mallopt(_GLIBC_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        ok_trim = libc.mallopt(_GLIBC_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
    except (OSError, AttributeError):
        return False
    return bool(ok_mmap and ok_trim)


@dataclass(frozen=True)
class EngineConfig:
    """How to run a network (what network: the checkpoint)."""

    device: str = "auto"
    """'auto' (cuda > mps > cpu) or a torch device string such as 'cuda:1'."""
    input_hw: tuple[int, int] | None = None
    """Network input (height, width), multiples of 32; None: the checkpoint's input size."""
    score_threshold: float = 0.3
    """Detections below this heatmap score are dropped."""
    top_k: int | None = None
    """Peaks kept per frame before thresholding; None: the network's ``max_detections``."""
    class_agnostic: bool = True
    """One detection per heatmap cell (its best class); False: one per class and cell, as
    plain CenterNet (an object can then come out twice with different labels)."""
    precision: Precision = "auto"
    """'auto': fp32 on CPU/MPS, bf16 autocast on CUDA."""
    channels_last: bool = True
    cuda_graph: bool = False
    """Capture the forward per batch size as a CUDA graph and replay it (CUDA only)."""
    compile: bool = False
    """``torch.compile`` the network for fixed shapes (first call per shape is slow)."""
    inverse_depth_affine: tuple[float, float] | None = None
    """(scale, shift) turning an inverse-relative (MiDaS) output into metres:
    depth = 1 / (scale * output + shift). Required for such checkpoints, unused otherwise."""
    threads: int | None = None
    """CPU threads for torch (process-wide); None leaves torch's default."""
    tune_cpu_allocator: bool = True
    """See :func:`tune_cpu_allocator`."""

    def __post_init__(self) -> None:
        if self.input_hw is not None and (
            len(self.input_hw) != 2 or any(s <= 0 or s % 32 for s in self.input_hw)
        ):
            raise UserError(f"input size {self.input_hw}: need two positive multiples of 32")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise UserError(f"score threshold {self.score_threshold} outside [0, 1]")
        if self.top_k is not None and self.top_k < 1:
            raise UserError("top_k must be at least 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise UserError(f"unknown precision {self.precision!r}")


@dataclass(frozen=True)
class StageTimings:
    """Wall time of each stage of one :meth:`Engine.infer` call, milliseconds."""

    pre_ms: float = 0.0
    forward_ms: float = 0.0
    post_ms: float = 0.0
    batch: int = 0

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.forward_ms + self.post_ms

    def as_dict(self) -> dict[str, float]:
        return {"pre": self.pre_ms, "forward": self.forward_ms, "post": self.post_ms}


@dataclass
class FrameResult:
    """The messages for one frame (envelope fields left for the caller)."""

    detections: Detections
    depth: DepthMap


class _Clock:
    """Stage boundaries: CUDA events on CUDA (no stalls), perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        """Call after the device is synchronised (post ends with host copies)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]
        return [(b - a) * 1e3 for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]


class Engine:
    """Runs a :class:`HybridDPT` on frames. Build with :meth:`from_checkpoint` (a trained
    network) or :meth:`from_config` (random weights, for benchmarks and tests).

    The engine takes ownership of the network it is given: it moves it to the device, puts it
    in eval mode and folds its BatchNorm layers into the convs (pass a copy to keep training).
    """

    def __init__(
        self,
        model: HybridDPT,
        config: EngineConfig | None = None,
        info: CheckpointInfo | None = None,
    ) -> None:
        config = config or EngineConfig()
        self.config = config
        self.info = info
        self.model_config: ModelConfig = model.config
        if config.tune_cpu_allocator:
            tune_cpu_allocator()
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = select_device(config.device)
        hw = config.input_hw or model.config.input_hw
        self.input_hw: tuple[int, int] = (int(hw[0]), int(hw[1]))
        if model.config.depth_output == "inverse_relative" and config.inverse_depth_affine is None:
            raise UserError(
                f"network {model.config.name!r} predicts inverse relative depth (MiDaS): give "
                "inverse_depth_affine=(scale, shift) to turn it into metres (docs/models.md)"
            )
        self.dtype = self._resolve_precision(config.precision)
        model = model.eval()
        fold_batchnorm_(model)
        model = model.to(self.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._forward: Callable[[torch.Tensor], dict[str, torch.Tensor]] = self._run_model
        if config.compile:
            mode = "reduce-overhead" if config.cuda_graph else "max-autotune-no-cudagraphs"
            self._compiled = torch.compile(model, dynamic=False, mode=mode)
            self._forward = self._run_compiled
        elif config.cuda_graph:
            if self.device.type != "cuda":
                raise UserError("cuda_graph needs a CUDA device")
            self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, dict]] = {}
            self._forward = self._run_graphed
        mean = torch.tensor(model.config.mean, dtype=torch.float32)
        std = torch.tensor(model.config.std, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        self.last_timings = StageTimings()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, config: EngineConfig | None = None
    ) -> Engine:
        """Load a checkpoint (default: :func:`default_checkpoint`)."""
        if path is None:
            path = default_checkpoint()
            if not path.is_file():
                raise UserError(
                    f"the default network {path} is not installed (it ships with a trained "
                    "release); pass a checkpoint path, or use a random config for benchmarks"
                )
        model, info = load_checkpoint(path, device="cpu")
        return cls(model, config, info)

    @classmethod
    def from_config(
        cls, name: str | ModelConfig, config: EngineConfig | None = None, **overrides: Any
    ) -> Engine:
        """A randomly initialised network of a named size (benchmarks, tests)."""
        return cls(create_model(name, **overrides), config)

    def _resolve_precision(self, precision: Precision) -> torch.dtype:
        if precision == "auto":
            return torch.bfloat16 if self.device.type == "cuda" else torch.float32
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if dtype != torch.float32 and self.device.type == "cpu":
            raise UserError("reduced precision is for GPUs; use fp32 on CPU")
        return dtype

    @property
    def class_names(self) -> list[str]:
        return list(self.model_config.classes)

    # -- forward variants -------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=False)

    def _run_model(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._autocast():
            return self.model(x)

    def _run_compiled(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self._autocast():
            return self._compiled(x)

    def _run_graphed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Replay a CUDA graph captured for this input shape (captured on first use)."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm up kernels / autotuning outside the capture
                    self._run_model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._run_model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    @contextlib.contextmanager
    def _one_cpu_thread(self, torch_too: bool) -> Iterator[None]:
        """Run pre-processing on one CPU thread (OpenCV, and torch when ``torch_too``).

        It is a pass or two per frame (~0.7 ms at 384x640) that gains nothing from a second
        thread, while a parallel region waits for every thread: when another process held a
        core, the 2-thread pre-processing took 3-8 ms in the detector node, 1.7 ms on one.
        Torch's work here is resizing, padding and reordering; asking for and setting its
        thread count costs ~0.08 ms when cold, so frames that need none of it skip that.
        """
        if self.device.type != "cpu":
            yield
            return
        threads = torch.get_num_threads() if torch_too else 0
        cv_threads = cv2.getNumThreads()
        if torch_too:
            torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            yield
        finally:
            if torch_too:
                torch.set_num_threads(threads)
            cv2.setNumThreads(cv_threads)

    # -- the three stages -------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Frames (H x W x 3 uint8 BGR) -> normalised input batch and each frame's letterbox.

        The batch is filled in channels-last memory (what the convs want) and returned as a
        logical NCHW tensor.
        """
        batch = torch.empty((len(frames), *self.input_hw, 3), device=self.device)
        boxes = [Letterbox.fit(frame.shape[:2], self.input_hw) for frame in frames]
        # Torch works here when it resizes, pads or reorders the batch; not for frames that
        # are the input exactly, going into the channels-last batch.
        torch_works = not self.config.channels_last or any(
            box.src_hw != self.input_hw for box in boxes
        )
        with self._one_cpu_thread(torch_too=torch_works):
            for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
                image = torch.from_numpy(np.ascontiguousarray(frame))
                image = image.to(self.device, non_blocking=True)
                letterbox_into(batch[i], image, box, self._scale, self._shift, bgr=True)
            nchw = batch.permute(0, 3, 1, 2)
            return (nchw if self.config.channels_last else nchw.contiguous()), boxes

    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        boxes: list[Letterbox],
        cameras: Sequence[str],
    ) -> list[FrameResult]:
        cfg = self.model_config
        log_range = cfg.log_depth_range
        top_k = self.config.top_k or cfg.max_detections
        threshold = self.config.score_threshold
        decoded = decode_detections(
            outputs,
            cfg.det_stride,
            top_k,
            log_range,
            class_agnostic=self.config.class_agnostic,
            min_score=threshold,
        )
        depth = dense_depth_m(outputs, log_range, self.config.inverse_depth_affine)

        results = []
        for i, (dec, box, camera) in enumerate(zip(decoded, boxes, cameras, strict=True)):
            keep = dec.scores >= threshold  # the exact cut: decoding keeps a hair more
            # Boxes back to the source image (x_src = a * x_in + b), clipped to it.
            sx, ox, sy, oy = box.affine_to_source()
            scale = np.array([sx, sy, sx, sy], np.float32)
            offset = np.array([ox, oy, ox, oy], np.float32)
            limits = np.array([box.src_hw[1], box.src_hw[0]] * 2, np.float32) - 0.5
            src_boxes = np.minimum(np.maximum(dec.boxes_xyxy[keep] * scale + offset, -0.5), limits)
            detections = Detections(
                camera=camera,
                image_width=box.src_hw[1],
                image_height=box.src_hw[0],
                class_names=list(cfg.classes),
                boxes_xyxy=np.ascontiguousarray(src_boxes, dtype=np.float32),
                scores=dec.scores[keep],
                class_ids=dec.class_ids[keep].astype(np.int32),
                depth_m=dec.depth_m[keep],
            )
            results.append(FrameResult(detections, self._depth_message(depth[i, 0], box, camera)))
        return results

    def _depth_message(self, depth: torch.Tensor, box: Letterbox, camera: str) -> DepthMap:
        """Crop the image area of one depth map and say how its pixels map to the source."""
        factor_y = self.input_hw[0] / depth.shape[0]
        factor_x = self.input_hw[1] / depth.shape[1]
        top = int(box.pad_top // factor_y)
        left = int(box.pad_left // factor_x)
        bottom = int(-(-(box.pad_top + box.resized_hw[0]) // factor_y))
        right = int(-(-(box.pad_left + box.resized_hw[1]) // factor_x))
        half = depth[top:bottom, left:right].to(torch.float16)
        crop = half.numpy() if half.device.type == "cpu" else half.cpu().numpy()
        sx, ox, sy, oy = box.affine_to_source()
        # depth pixel u sits at input x = (u + left + 0.5) * factor - 0.5
        return DepthMap(
            camera=camera,
            image_width=box.src_hw[1],
            image_height=box.src_hw[0],
            scale_x=sx * factor_x,
            scale_y=sy * factor_y,
            offset_x=sx * ((left + 0.5) * factor_x - 0.5) + ox,
            offset_y=sy * ((top + 0.5) * factor_y - 0.5) + oy,
            depth_m=np.ascontiguousarray(crop),
        )

    # -- public --------------------------------------------------------------------------------
    def infer(
        self,
        frames: np.ndarray | Sequence[np.ndarray],
        cameras: Sequence[str] | None = None,
    ) -> list[FrameResult]:
        """Run on one BGR frame or a list of them (one forward for the whole list).

        Each frame is an ``H x W x 3`` uint8 array in BGR order, any size. ``cameras`` names
        each frame (default ``camera``, ``camera1``, ...); it goes into the messages.
        """
        if isinstance(frames, np.ndarray):
            frames = [frames]
        if not frames:
            return []
        for i, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
                raise ValueError(f"frame {i}: need a uint8 numpy array")
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
                raise ValueError(f"frame {i}: need H x W x 3 (BGR), got shape {frame.shape}")
        if cameras is None:
            cameras = ["camera" if i == 0 else f"camera{i}" for i in range(len(frames))]
        elif len(cameras) != len(frames):
            raise ValueError("one camera name per frame")
        clock = _Clock(self.device)
        with torch.inference_mode():
            clock.mark()
            batch, boxes = self.preprocess(frames)
            clock.mark()
            outputs = self._forward(batch)
            clock.mark()
            results = self.postprocess(outputs, boxes, cameras)
            clock.mark()
        pre, fwd, post = clock.intervals_ms()
        self.last_timings = StageTimings(pre, fwd, post, batch=len(frames))
        return results

    def warmup(self, batch: int = 1, iterations: int = 2) -> None:
        """Run a few dummy frames (allocations, cuDNN autotune, graph capture, compilation)."""
        frame = np.zeros((*self.input_hw, 3), np.uint8)
        for _ in range(iterations):
            self.infer([frame] * batch)
