"""Scoring a checkpoint on a drive: ``perception eval [--checkpoint FILE] DATA``.

DATA is one of

* a drive folder written by ``perception synth -o DIR`` or any folder in KITTI layout
  (``image_2/``, ``label_2/``, optional ``depth/`` 16-bit PNGs, ``calib.txt``);
* ``synthetic:SEED:FRAMES[:STRIDE]``: frames 0, STRIDE, 2*STRIDE, ... (FRAMES of them, STRIDE
  default 1) of the synthetic drive SEED, rendered on the fly through the default synthetic
  camera (``calibration/synthetic_front.yaml``).

Every frame goes through the same :class:`perception.inference.Engine` the detector node uses
(letterbox, forward, CenterNet decoding, boxes mapped back to the source image), with a low
score threshold (0.01) so the precision-recall curve is complete. The dense depth map is resized
back to the source image and compared with the ground truth there. See
:mod:`perception.training.metrics` for the metric and difficulty definitions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.camera import CameraModel
from perception.data import KittiDriveDataset, to_kitti
from perception.data.kitti import DEFAULT_TYPE_MAP, KittiObject, dont_care
from perception.errors import UserError
from perception.inference import Engine, EngineConfig
from perception.msgs import DepthMap
from perception.paths import resolve_data_path
from perception.synth import SyntheticDrive
from perception.training.metrics import (
    DEPTH_KEYS,
    DepthEvaluator,
    DetectionEvaluator,
    DifficultyRule,
    FrameTruth,
)

DEFAULT_CALIBRATION = "calibration/synthetic_front.yaml"
EVAL_SCORE_THRESHOLD = 0.01


@dataclass
class EvalFrame:
    image_bgr: np.ndarray
    depth_m: np.ndarray | None  # (H, W) metres, 0 = unknown; None: no depth ground truth
    objects: list[KittiObject]


def parse_synthetic_spec(spec: str) -> tuple[int, int, int]:
    """``synthetic:SEED:FRAMES[:STRIDE]`` -> (seed, frames, stride)."""
    parts = spec.split(":")
    if parts[0] != "synthetic" or len(parts) not in (3, 4):
        raise UserError(f"bad data spec {spec!r}: want synthetic:SEED:FRAMES[:STRIDE]")
    try:
        seed, frames = int(parts[1]), int(parts[2])
        stride = int(parts[3]) if len(parts) == 4 else 1
    except ValueError:
        raise UserError(f"bad data spec {spec!r}: SEED, FRAMES, STRIDE must be integers") from None
    if frames < 1 or stride < 1:
        raise UserError(f"bad data spec {spec!r}: FRAMES and STRIDE must be positive")
    return seed, frames, stride


def synthetic_frames(
    seed: int, frames: int, stride: int = 1, calibration: str = DEFAULT_CALIBRATION
) -> Iterator[EvalFrame]:
    camera = CameraModel.load(resolve_data_path(calibration))
    drive = SyntheticDrive(seed, camera)
    for k in range(frames):
        f = drive.frame(k * stride)
        objects = [to_kitti(o, camera) for o in f.objects] + [
            dont_care(o.box_xyxy) for o in f.ignored
        ]
        yield EvalFrame(f.image_bgr, f.depth_m, objects)


def folder_frames(root: str | Path) -> tuple[int, Iterator[EvalFrame]]:
    """(number of frames, frames) of a KITTI-layout folder."""
    ds = KittiDriveDataset(root)

    def gen() -> Iterator[EvalFrame]:
        for i in range(len(ds)):
            raw = ds.raw(i)
            has_depth = bool((raw.depth_m > 0).any())
            yield EvalFrame(
                raw.image_bgr, raw.depth_m if has_depth else None, ds.labels(ds.images[i].stem)
            )

    return len(ds), gen()


def open_data(spec: str) -> tuple[int, Iterator[EvalFrame]]:
    """(frame count, frames) for a DATA argument."""
    if spec.startswith("synthetic:"):
        seed, frames, stride = parse_synthetic_spec(spec)
        return frames, synthetic_frames(seed, frames, stride)
    path = Path(spec)
    if not path.is_dir():
        raise UserError(f"{spec}: not a folder and not a synthetic:SEED:FRAMES spec")
    return folder_frames(path)


def frame_truth(
    objects: list[KittiObject], class_names: list[str], rule: DifficultyRule
) -> FrameTruth:
    """Labels -> evaluated boxes per class and ignore regions (types we do not detect)."""
    boxes, cls, occ, trunc, ignore = [], [], [], [], []
    for o in objects:
        name = DEFAULT_TYPE_MAP.get(o.type, o.type.lower())
        if name is None or name not in class_names:
            ignore.append(o.bbox_xyxy)
            continue
        boxes.append(o.bbox_xyxy)
        cls.append(class_names.index(name))
        occ.append(o.occluded)
        trunc.append(o.truncated)
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return FrameTruth(
        boxes_xyxy=b,
        class_ids=np.array(cls, np.int64),
        evaluated=rule.evaluated(b, np.array(occ, np.int64), np.array(trunc, np.float32)),
        ignore_boxes_xyxy=np.array(ignore, np.float32).reshape(-1, 4),
    )


def depth_in_source(msg: DepthMap) -> np.ndarray:
    """A DepthMap resampled onto its source image's pixel grid (bilinear)."""
    d = msg.depth_m.astype(np.float32)
    h, w = msg.image_height, msg.image_width
    # source pixel u -> depth pixel (u - offset_x) / scale_x (pixel centres at integers)
    M = np.array(
        [
            [1.0 / msg.scale_x, 0.0, -msg.offset_x / msg.scale_x],
            [0.0, 1.0 / msg.scale_y, -msg.offset_y / msg.scale_y],
        ],
        np.float64,
    )
    return cv2.warpAffine(
        d,
        M,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def evaluate(
    engine: Engine,
    frames: Iterator[EvalFrame],
    total: int | None = None,
    rule: DifficultyRule | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``engine`` on every frame and score it; returns the metrics as a JSON-ready dict."""
    from tqdm import tqdm

    rule = rule or DifficultyRule()
    names = engine.class_names
    det = DetectionEvaluator(names)
    depth = DepthEvaluator()
    t_net = 0.0
    n = 0
    for frame in tqdm(frames, total=total, desc="evaluating", disable=not progress):
        t0 = time.perf_counter()
        result = engine.infer(frame.image_bgr)[0]
        t_net += time.perf_counter() - t0
        n += 1
        d = result.detections
        det.add(
            frame_truth(frame.objects, names, rule),
            d.boxes_xyxy,
            d.scores,
            d.class_ids,
            frame.image_bgr.shape[:2],
        )
        if frame.depth_m is not None:
            depth.add(depth_in_source(result.depth), frame.depth_m)
    if n == 0:
        raise UserError("no frames to evaluate")
    out: dict[str, Any] = {"frames": n}
    out.update(det.compute())
    out["depth"] = depth.compute()
    out["depth_frames"] = len(depth.frames)
    out["ms_per_frame"] = round(1e3 * t_net / n, 2)
    out["input_hw"] = list(engine.input_hw)
    out["difficulty"] = {
        "min_height_px": rule.min_height_px,
        "max_occlusion_level": rule.max_occlusion_level,
        "max_truncation": rule.max_truncation,
    }
    return out


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    data: str,
    device: str = "auto",
    input_hw: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint (default: the shipped one) and score it on DATA."""
    engine = Engine.from_checkpoint(
        checkpoint,
        EngineConfig(device=device, input_hw=input_hw, score_threshold=EVAL_SCORE_THRESHOLD),
    )
    total, frames = open_data(data)
    out = evaluate(engine, frames, total, progress=progress)
    out["checkpoint"] = str(engine.info.path) if engine.info and engine.info.path else None
    out["data"] = data
    return out


def format_table(m: dict[str, Any]) -> str:
    """The metrics as a plain-text table."""

    def f(v: float | None, pct: bool = True) -> str:
        if v is None:
            return "   -  "
        return f"{100 * v:6.1f}" if pct else f"{v:6.3f}"

    lines = [f"checkpoint: {m.get('checkpoint')}", f"data: {m.get('data')} ({m['frames']} frames)"]
    lines.append("")
    lines.append(f"{'class':<12}{'GT':>6}{'AP@0.5':>9}{'AP@0.7':>9}")
    for name, count in m["gt_counts"].items():
        lines.append(f"{name:<12}{count:>6}{f(m['ap50'][name]):>9}{f(m['ap70'][name]):>9}")
    lines.append(f"{'mean':<12}{'':>6}{f(m['map50']):>9}{f(m['map70']):>9}")
    lines.append("")
    dep = m["depth"]
    head = "".join(f"{k:>10}" for k in DEPTH_KEYS)
    vals = "".join(f"{f(dep[k], pct=False):>10}" for k in DEPTH_KEYS)
    lines.append(f"depth ({m['depth_frames']} frames, GT < 80 m)")
    lines.append(head)
    lines.append(vals)
    lines.append("")
    lines.append(f"network {m['input_hw'][0]}x{m['input_hw'][1]}: {m['ms_per_frame']} ms/frame")
    return "\n".join(lines)
