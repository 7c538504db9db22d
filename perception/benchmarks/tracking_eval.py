"""Benchmark: tracking quality (MOTA, IDF1, HOTA, ID switches) and 3D accuracy, by peer
libraries.

Detections are ground-truth boxes with noise, 10% dropouts, false positives and scores that
fall with occlusion and range, on two sources:

- ``sim``: :mod:`perception.tracking.sim`, geometry only (fast; what the tests use);
- ``synth``: rendered drives of :mod:`perception.synth` (its labels and per-pixel depth, made
  noisy: a per-object, per-frame relative error plus per-pixel noise and holes).

(``model`` runs the shipped network on the rendered drives instead.) 3D lifting runs on the
(noisy) depth map, the tracker on the result; CLEAR-MOT and identity metrics come from
py-motmetrics (not our code), given our own IoU distance matrix (its ``iou_matrix`` fails on
numpy 2); HOTA, DetA and AssA from TrackEval's HOTA class when the ``trackeval`` package is
installed (the same IoU matrix and don't-care filtering; null otherwise). Ground truth less
visible than ``--min-visibility`` is a "don't care" region, as KITTI and MOTChallenge do: a
track on it is neither a hit nor a false positive, and missing it is not a miss. Prints one
JSON line per source and seed, then all seeds evaluated together.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perception.camera import CameraModel
from perception.msgs import DepthMap
from perception.tracking import Tracker, TrackerConfig, lift_detections, load_tracker_config
from perception.tracking.matching import iou_matrix_xyxy, linear_assignment

IOU_THRESHOLD = 0.5
CAR_RANGE_M = 40.0  # 3D position error is measured on car tracks within this range
VELOCITY_AFTER_S = 1.0  # velocity error is measured on tracks at least this old


@dataclass
class EvalFrame:
    """Ground truth and detections of one frame."""

    stamp_ns: int
    gt_ids: np.ndarray  # (K,)
    gt_boxes_xyxy: np.ndarray  # (K, 4)
    gt_class_names: list[str]
    gt_positions: np.ndarray  # (K, 3) object centres, vehicle frame
    gt_velocities: np.ndarray  # (K, 3) relative to the ego
    gt_visibility: np.ndarray  # (K,) 1 - occlusion
    boxes_xyxy: np.ndarray  # (N, 4) detections
    scores: np.ndarray
    class_ids: np.ndarray
    det_depth_m: np.ndarray
    depth: DepthMap | None
    dont_care_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


@dataclass
class DetectionNoise:
    """How ground truth is turned into detections."""

    box_noise_rel: float = 0.03
    dropout: float = 0.1
    false_positives_per_frame: float = 0.5
    wrong_class: float = 0.1
    depth_noise_rel: float = 0.03  # per object and frame
    depth_pixel_noise_rel: float = 0.02
    depth_holes: float = 0.05


def detection_scores(
    visibility: np.ndarray, range_m: np.ndarray, far_m: float, rng: np.random.Generator
) -> np.ndarray:
    """Confidence falling with occlusion and range, as a detector's does."""
    base = 0.95 - 0.7 * (1.0 - visibility) - 0.25 * (range_m / far_m) ** 2
    return np.clip(base + rng.normal(0.0, 0.05, len(base)), 0.05, 1.0)


def noisy_detections(
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    scores: np.ndarray,
    num_classes: int,
    width: int,
    height: int,
    noise: DetectionNoise,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, scores, class ids and the source gt index (-1: false positive)."""
    keep = np.flatnonzero(rng.random(len(gt_boxes)) >= noise.dropout)
    b = gt_boxes[keep].astype(np.float64)
    wh = np.tile(b[:, 2:] - b[:, :2], 2)
    b = b + rng.normal(0.0, noise.box_noise_rel, b.shape) * wh
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 2.0)
    cls = gt_classes[keep].copy()
    wrong = rng.random(len(cls)) < noise.wrong_class
    cls[wrong] = (cls[wrong] + rng.integers(1, max(num_classes, 2), wrong.sum())) % num_classes
    n_fp = rng.poisson(noise.false_positives_per_frame)
    wh_fp = rng.uniform([15, 15], [120, 100], (n_fp, 2))
    xy = rng.uniform([0, 0.3 * height], [width, height], (n_fp, 2)) - wh_fp / 2
    fp = np.concatenate([xy, xy + wh_fp], axis=1)
    return (
        np.concatenate([b, fp]),
        np.concatenate([scores[keep], rng.uniform(0.1, 0.75, n_fp)]),
        np.concatenate([cls, rng.integers(0, num_classes, n_fp)]),
        np.concatenate([keep, -np.ones(n_fp, np.int64)]),
    )


# -- sources ---------------------------------------------------------------------------------
def sim_frames(
    camera: CameraModel, seed: int, duration_s: float, frame_drop: float = 0.0
) -> Iterator[EvalFrame]:
    """Frames of the geometric simulation; `frame_drop` leaves out that share of frames."""
    from perception.tracking.sim import CLASS_NAMES, SimConfig, TrackingSimulation

    sim_cfg = SimConfig(seed=seed, duration_s=duration_s, min_visible=0.0, frame_drop=frame_drop)
    sim = TrackingSimulation(camera, sim_cfg)
    for f in sim.frames():
        yield EvalFrame(
            stamp_ns=f.stamp_ns,
            gt_ids=f.gt_ids,
            gt_boxes_xyxy=f.gt_boxes_xyxy,
            gt_class_names=[CLASS_NAMES[c] for c in f.gt_class_ids],
            gt_positions=f.gt_positions,
            gt_velocities=f.gt_velocities,
            gt_visibility=f.gt_visible,
            boxes_xyxy=f.boxes_xyxy,
            scores=f.scores,
            class_ids=f.class_ids,
            det_depth_m=f.det_depth_m,
            depth=f.depth,
        )


def synth_frames(
    camera: CameraModel, seed: int, duration_s: float, noise: DetectionNoise
) -> Iterator[EvalFrame]:
    """Rendered drive frames with detections made from their labels."""
    from perception.synth import CLASSES, SyntheticDrive

    drive = SyntheticDrive(seed, camera)
    rng = np.random.default_rng(1000 + seed)
    far = drive.config.far_m
    n = round(duration_s * drive.config.fps)
    for f in drive.frames(0, n):
        objs = f.objects
        k = len(objs)
        vis = np.array([1.0 - o.occlusion for o in objs])
        pos = np.array([o.center_vehicle for o in objs]).reshape(k, 3)
        cls = np.array([CLASSES.index(o.class_name) for o in objs], np.int64)
        gt_boxes = f.boxes_xyxy.astype(np.float64)
        scores = detection_scores(vis, np.linalg.norm(pos[:, :2], axis=1), far, rng)
        boxes, sc, cl, src = noisy_detections(
            gt_boxes, cls, scores, len(CLASSES), camera.width, camera.height, noise, rng
        )
        # Depth: a relative error per object (via the instance map) and frame, per-pixel noise.
        depth = f.depth_m.copy()
        if f.instance_map is not None and k:
            bias = np.ones(int(f.instance_map.max()) + 1, np.float32)
            ids = np.array([o.track_id for o in objs])
            bias[ids[ids < len(bias)]] += rng.normal(
                0, noise.depth_noise_rel, (ids < len(bias)).sum()
            )
            depth *= bias[f.instance_map]
        depth *= 1.0 + rng.normal(0, noise.depth_pixel_noise_rel, depth.shape).astype(np.float32)
        depth[rng.random(depth.shape) < noise.depth_holes] = 0.0
        det_depth = np.array(
            [objs[s].depth_m if s >= 0 else rng.uniform(5, 50) for s in src], np.float64
        ) * (1.0 + rng.normal(0, 2 * noise.depth_noise_rel, len(src)))
        yield EvalFrame(
            stamp_ns=f.stamp_ns,
            gt_ids=f.track_ids,
            gt_boxes_xyxy=gt_boxes,
            gt_class_names=[o.class_name for o in objs],
            gt_positions=pos,
            gt_velocities=np.array([o.relative_velocity_vehicle for o in objs]).reshape(k, 3),
            gt_visibility=vis,
            boxes_xyxy=boxes,
            scores=sc,
            class_ids=cl,
            det_depth_m=det_depth,
            depth=DepthMap(
                stamp_ns=f.stamp_ns,
                camera=camera.name,
                image_width=camera.width,
                image_height=camera.height,
                depth_m=np.clip(depth, 0, 65000).astype(np.float16),
            ),
            dont_care_xyxy=np.array([o.box_xyxy for o in f.ignored], np.float64).reshape(-1, 4),
        )


def model_frames(
    camera: CameraModel, seed: int, duration_s: float, engine: Any
) -> Iterator[EvalFrame]:
    """Rendered drive frames with detections and depth from a network (the shipped one)."""
    from perception.synth import SyntheticDrive

    drive = SyntheticDrive(seed, camera)
    for f in drive.frames(0, round(duration_s * drive.config.fps)):
        objs = f.objects
        k = len(objs)
        result = engine.infer(f.image_bgr, cameras=[camera.name])[0]
        d = result.detections
        yield EvalFrame(
            stamp_ns=f.stamp_ns,
            gt_ids=f.track_ids,
            gt_boxes_xyxy=f.boxes_xyxy.astype(np.float64),
            gt_class_names=[o.class_name for o in objs],
            gt_positions=np.array([o.center_vehicle for o in objs]).reshape(k, 3),
            gt_velocities=np.array([o.relative_velocity_vehicle for o in objs]).reshape(k, 3),
            gt_visibility=np.array([1.0 - o.occlusion for o in objs]),
            boxes_xyxy=d.boxes_xyxy.astype(np.float64),
            scores=d.scores.astype(np.float64),
            class_ids=d.class_ids.astype(np.int64),
            det_depth_m=d.depth_m.astype(np.float64),
            depth=result.depth,
            dont_care_xyxy=np.array([o.box_xyxy for o in f.ignored], np.float64).reshape(-1, 4),
        )


# -- evaluation ------------------------------------------------------------------------------
def load_hota() -> Any:
    """TrackEval's HOTA metric (Luiten et al., IJCV 2021), or None when `trackeval` is not
    installed. (Importing it prints a note about optional dependencies: kept off stdout, where
    the JSON lines go.)"""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from trackeval.metrics import HOTA
    except ImportError:
        return None
    return HOTA()


@dataclass
class HotaSequence:
    """One sequence in TrackEval's input layout: per frame the ground-truth and tracker ids
    and their similarity (IoU); ids are renumbered 0.. when the sequence is evaluated."""

    gt_ids: list[np.ndarray] = field(default_factory=list)
    tracker_ids: list[np.ndarray] = field(default_factory=list)
    similarity: list[np.ndarray] = field(default_factory=list)

    def add(self, gt_ids: np.ndarray, tracker_ids: np.ndarray, iou: np.ndarray) -> None:
        self.gt_ids.append(np.asarray(gt_ids))
        self.tracker_ids.append(np.asarray(tracker_ids))
        self.similarity.append(np.asarray(iou, np.float64))

    def data(self) -> dict[str, Any]:
        def renumber(ids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
            flat = np.concatenate([np.zeros(0, np.int64), *[i.astype(np.int64) for i in ids]])
            uniq = np.unique(flat)
            return [np.searchsorted(uniq, i).astype(int) for i in ids], len(uniq)

        gt, n_gt = renumber(self.gt_ids)
        tr, n_tr = renumber(self.tracker_ids)
        return {
            "num_timesteps": len(gt),
            "num_gt_ids": n_gt,
            "num_tracker_ids": n_tr,
            "num_gt_dets": int(sum(len(g) for g in gt)),
            "num_tracker_dets": int(sum(len(t) for t in tr)),
            "gt_ids": gt,
            "tracker_ids": tr,
            "similarity_scores": self.similarity,
        }


def hota_summary(metric: Any, sequences: list[HotaSequence]) -> dict[str, float | None]:
    """HOTA, DetA, AssA (each averaged over the localisation thresholds 0.05..0.95, as
    TrackEval reports them) over all sequences together; None without trackeval."""
    if metric is None or not sequences:
        return {"hota": None, "deta": None, "assa": None}
    per_seq = {str(i): metric.eval_sequence(s.data()) for i, s in enumerate(sequences)}
    res = metric.combine_sequences(per_seq)
    return {k.lower(): round(float(np.mean(res[k])), 4) for k in ("HOTA", "DetA", "AssA")}


def evaluate(
    sequences: Iterable[Iterable[EvalFrame]],
    camera: CameraModel,
    class_names: list[str],
    config: TrackerConfig | None = None,
    min_visibility: float = 0.5,
    car_class: str = "car",
) -> dict[str, Any]:
    """Run lifting and a fresh tracker over each sequence of frames; MOT metrics by
    py-motmetrics over all sequences together, and 3D errors of car tracks: position within
    CAR_RANGE_M as a fraction of range, velocity once tracked for VELOCITY_AFTER_S."""
    import motmetrics as mm

    cfg = config or load_tracker_config()
    accs = []
    pos_err: list[float] = []
    vel_err: list[float] = []
    times: list[float] = []
    frames_seen = 0
    hota_metric = load_hota()
    hota_sequences: list[HotaSequence] = []
    for frames in sequences:
        tracker = Tracker(cfg)
        acc = mm.MOTAccumulator(auto_id=True)
        accs.append(acc)
        hota = HotaSequence() if hota_metric is not None else None
        if hota is not None:
            hota_sequences.append(hota)
        for f in frames:
            frames_seen += 1
            lifted = lift_detections(
                camera,
                f.boxes_xyxy,
                f.depth,
                f.det_depth_m,
                cfg.lifting,
                f.class_ids,
                class_names,
            )
            t0 = time.perf_counter()
            tracks = tracker.update(
                f.stamp_ns,
                f.boxes_xyxy,
                f.scores,
                f.class_ids,
                lifted.positions_vehicle,
                lifted.covariances_vehicle,
                lifted.sizes_m,
                image_size=camera.size,
            )
            times.append(time.perf_counter() - t0)
            matched = _accumulate(acc, f, tracks, min_visibility, hota)
            _errors_3d(f, tracks, matched, min_visibility, car_class, pos_err, vel_err)
    names = [
        "mota",
        "idf1",
        "num_switches",
        "num_false_positives",
        "num_misses",
        "num_objects",
        "mostly_tracked",
        "num_unique_objects",
        "num_fragmentations",
    ]
    summary = mm.metrics.create().compute_many(
        accs, metrics=names, names=[str(i) for i in range(len(accs))], generate_overall=True
    )
    row = summary.loc["OVERALL"]

    def med(x: list[float]) -> float | None:
        return round(float(np.median(x)), 4) if x else None

    return {
        "sequences": len(accs),
        "frames": frames_seen,
        "mota": round(float(row["mota"]), 4),
        "idf1": round(float(row["idf1"]), 4),
        "id_switches": int(row["num_switches"]),
        "false_positives": int(row["num_false_positives"]),
        "misses": int(row["num_misses"]),
        "gt_boxes": int(row["num_objects"]),
        "gt_tracks": int(row["num_unique_objects"]),
        "mostly_tracked": int(row["mostly_tracked"]),
        "fragmentations": int(row["num_fragmentations"]),
        **hota_summary(hota_metric, hota_sequences),
        "car_position_error_median_rel": med(pos_err),
        "car_position_samples": len(pos_err),
        "car_velocity_error_median_mps": med(vel_err),
        "car_velocity_error_p90_mps": (
            round(float(np.percentile(vel_err, 90)), 3) if vel_err else None
        ),
        "car_velocity_samples": len(vel_err),
        "update_median_ms": round(1e3 * float(np.median(times)), 3) if times else None,
    }


def _accumulate(
    acc: Any, f: EvalFrame, tracks: Any, min_visibility: float, hota: HotaSequence | None = None
) -> np.ndarray:
    """Add one frame to a motmetrics accumulator (and to `hota`); return the (gt row in the
    frame, track row) pairs matched at IoU >= IOU_THRESHOLD. Tracks on don't-care ground truth
    are dropped."""
    care = f.gt_visibility >= min_visibility
    ignore_boxes = np.concatenate([f.gt_boxes_xyxy[~care], f.dont_care_xyxy])
    hyp = np.arange(len(tracks))
    iou = iou_matrix_xyxy(f.gt_boxes_xyxy[care], tracks.boxes_xyxy)
    matched, _, free = linear_assignment(1.0 - iou, 1.0 - IOU_THRESHOLD)
    if len(ignore_boxes) and len(free):
        on_ignored = (iou_matrix_xyxy(ignore_boxes, tracks.boxes_xyxy[free]) >= 0.5).any(0)
        hyp = np.setdiff1d(hyp, free[on_ignored])
    iou_h = iou[:, hyp]
    acc.update(
        f.gt_ids[care].tolist(),
        tracks.ids[hyp].tolist(),
        np.where(iou_h >= IOU_THRESHOLD, 1.0 - iou_h, np.nan),
    )
    if hota is not None:
        hota.add(f.gt_ids[care], tracks.ids[hyp], iou_h)
    matched[:, 0] = np.flatnonzero(care)[matched[:, 0]]
    return matched


def _errors_3d(
    f: EvalFrame,
    tracks: Any,
    matched: np.ndarray,
    min_visibility: float,
    car_class: str,
    pos_err: list[float],
    vel_err: list[float],
) -> None:
    """3D errors of car tracks matched to a detection in this frame."""
    for g, h in matched:
        if f.gt_class_names[g] != car_class or tracks.time_since_seen_s[h] > 0:
            continue
        p = tracks.positions_m[h]
        if not np.isfinite(p).all():
            continue
        rng_m = float(np.linalg.norm(f.gt_positions[g][:2]))
        if rng_m <= CAR_RANGE_M:
            pos_err.append(float(np.linalg.norm(p - f.gt_positions[g])) / rng_m)
        if tracks.ages_s[h] >= VELOCITY_AFTER_S:
            vel_err.append(
                float(np.linalg.norm(tracks.velocities_mps[h][:2] - f.gt_velocities[g][:2]))
            )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=["sim", "synth", "both", "model"],
        default="both",
        help="sim: geometric simulation; synth: rendered synthetic drives with noisy ground "
        "truth; model: rendered drives through the network (detections and depth)",
    )
    parser.add_argument(
        "--checkpoint", default="", help="network for --source model (default: the shipped one)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds per drive (sim; synth renders ~0.1 s per frame)",
    )
    parser.add_argument(
        "--synth-duration",
        type=float,
        default=20.0,
        help="seconds per synthetic drive (default 20)",
    )
    parser.add_argument(
        "--camera", default="calibration/synthetic_front.yaml", help="camera calibration file"
    )
    parser.add_argument("--config", default=None, help="tracker YAML (default: packaged)")
    parser.add_argument(
        "--min-visibility",
        type=float,
        default=0.5,
        help="ground truth less visible than this is don't-care (default 0.5)",
    )


def run(args: argparse.Namespace) -> int:
    from perception.synth import CLASSES
    from perception.tracking.sim import CLASS_NAMES

    camera = CameraModel.load(args.camera)
    cfg = load_tracker_config(args.config)
    sources = ["sim", "synth"] if args.source == "both" else [args.source]
    engine = None
    if "model" in sources:
        from perception.inference import Engine, EngineConfig

        # a low threshold: ByteTrack's second stage uses the low-score detections
        engine = Engine.from_checkpoint(args.checkpoint or None, EngineConfig(score_threshold=0.1))
    for source in sources:
        names = CLASS_NAMES if source == "sim" else list(CLASSES)
        if engine is not None and source == "model":
            names = list(engine.class_names)

        def frames(seed: int, source: str = source) -> Iterable[EvalFrame]:
            if source == "sim":
                return sim_frames(camera, seed, args.duration)
            if source == "model":
                return model_frames(camera, seed, args.synth_duration, engine)
            return synth_frames(camera, seed, args.synth_duration, DetectionNoise())

        for seed in args.seeds:
            res = evaluate([frames(seed)], camera, names, cfg, args.min_visibility)
            print(json.dumps({"bench": "tracking_eval", "source": source, "seed": seed, **res}))
        if len(args.seeds) > 1:
            # All seeds as one evaluation (CLEAR-MOT over every sequence); renders again.
            res = evaluate([frames(s) for s in args.seeds], camera, names, cfg, args.min_visibility)
            out = {"bench": "tracking_eval", "source": source, "seed": "all"}
            print(json.dumps({**out, "seeds": list(args.seeds), **res}))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    configure(p)
    raise SystemExit(run(p.parse_args()))
