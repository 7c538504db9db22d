"""The demo: the whole stack on the built-in synthetic drive, then a review video and a summary.

``run_demo`` launches ``launch/demo.yaml`` (camera on the synthetic drive, detector with the
shipped network, tracker, recorder, live Foxglove view) under the launcher (the detector and
tracker composed in one process, the others each in their own) for a bounded time, then reads
the recording back and writes into the output folder:

- ``demo.mcap``: the recording (lossless bus channels + Foxglove view channels);
- ``review.mp4``: frames with boxes, classes, track ids, distances, velocities, and depth;
- ``summary.json``: frames in and processed, drops, rates, latency per stage and end to end,
  and detection and depth quality against the drive's ground truth.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import UserError
from perception.launcher import Launcher, LaunchFile, apply_overrides
from perception.msgs import CameraFrame, DepthMap, Detections, NodeStatus, TrackedObjects
from perception.paths import resolve_data_path
from perception.stats import StageMedians, median_p99

DEMO_LAUNCH = "launch/demo.yaml"


@dataclass
class DemoOptions:
    duration_s: float = 30.0
    out_dir: Path = Path("out")
    launch_file: str = DEMO_LAUNCH
    overrides: tuple[str, ...] = ()
    render: bool = True
    quality: bool = True  # score against the synthetic drive's ground truth
    table_period_s: float = 10.0


def summarize_recording(path: Path, camera_params: dict[str, Any]) -> dict[str, Any]:
    """Counts, rates, drops, stage and end-to-end latency, and ground-truth quality."""
    from perception.recording.mcap_io import RecordingReader

    reader = RecordingReader(path)
    counts: dict[str, int] = defaultdict(int)
    first_ns: dict[str, int] = {}
    last_ns: dict[str, int] = {}
    frame_seq: dict[int, int] = {}  # stamp_ns -> the camera's frame number
    latency_ms: dict[str, list[float]] = defaultdict(list)
    stages = StageMedians()
    last_status: dict[str, NodeStatus] = {}
    detections: dict[int, Detections] = {}
    depths: dict[int, DepthMap] = {}
    tracks_seen: set[int] = set()
    for rec in reader.messages():
        if not rec.channel.lossless:
            continue
        msg = rec.decode()
        topic = rec.channel.bus_topic
        counts[topic] += 1
        first_ns.setdefault(topic, rec.log_time_ns)
        last_ns[topic] = rec.log_time_ns
        if isinstance(msg, CameraFrame):
            frame_seq[msg.stamp_ns] = msg.seq
        elif isinstance(msg, Detections):
            latency_ms["capture_to_detections"].append((rec.log_time_ns - msg.stamp_ns) / 1e6)
            detections[msg.stamp_ns] = msg
        elif isinstance(msg, DepthMap):
            depths[msg.stamp_ns] = msg
        elif isinstance(msg, TrackedObjects):
            latency_ms["capture_to_tracks"].append((rec.log_time_ns - msg.stamp_ns) / 1e6)
            tracks_seen.update(int(i) for i in msg.ids[msg.states == 1])
        elif isinstance(msg, NodeStatus):
            last_status[msg.node] = msg
            stages.add(msg)
    rates = {
        t: round((counts[t] - 1) / ((last_ns[t] - first_ns[t]) / 1e9), 2)
        for t in counts
        if counts[t] > 1 and last_ns[t] > first_ns[t]
    }
    drops = {
        node: {
            topic: {k: entry.get(k, 0) for k in ("dropped", "stale_dropped", "rejected")}
            for topic, entry in status.inputs.items()
        }
        for node, status in last_status.items()
        if status.inputs
    }
    summary: dict[str, Any] = {
        "recording": str(path),
        "frames_in": counts.get("camera/frames", 0),
        "frames_processed": counts.get("perception/detections", 0),
        "frames_tracked": counts.get("perception/tracks", 0),
        "confirmed_tracks": len(tracks_seen),
        "rates_hz": rates,
        "drops": drops,
        "latency_ms": {k: median_p99(v) for k, v in latency_ms.items()},
        "stage_latency_ms": stages.all(),
    }
    if camera_params.get("source", "synthetic") == "synthetic" and detections:
        summary["quality"] = ground_truth_quality(camera_params, frame_seq, detections, depths)
    return summary


def ground_truth_quality(
    camera_params: dict[str, Any],
    frame_seq: dict[int, int],
    detections: dict[int, Detections],
    depths: dict[int, DepthMap],
    max_frames: int = 60,
) -> dict[str, Any]:
    """Score the processed frames against the synthetic drive they came from (frame number =
    the camera's seq; a restarted camera starts its drive again, so seq stays the frame)."""
    from perception.camera import CameraModel
    from perception.data import to_kitti
    from perception.data.kitti import dont_care
    from perception.synth import SyntheticDrive
    from perception.synth.config import DriveConfig
    from perception.training.evaluate import depth_in_source, frame_truth
    from perception.training.metrics import DepthEvaluator, DetectionEvaluator, DifficultyRule

    camera = CameraModel.load(
        resolve_data_path(camera_params.get("calibration", "calibration/synthetic_front.yaml"))
    )
    drive = SyntheticDrive(
        int(camera_params.get("seed", 0)), camera, DriveConfig(fps=camera_params.get("fps") or 10.0)
    )
    stamps = sorted(s for s in detections if s in frame_seq)
    if len(stamps) > max_frames:  # rendering ground truth costs ~0.1 s a frame: sample evenly
        stamps = [stamps[i] for i in np.linspace(0, len(stamps) - 1, max_frames).astype(int)]
    names = detections[stamps[0]].class_names if stamps else []
    det_eval, depth_eval = DetectionEvaluator(names), DepthEvaluator()
    rule = DifficultyRule()
    for stamp in stamps:
        truth = drive.frame(frame_seq[stamp])
        objects = [to_kitti(o, camera) for o in truth.objects]
        objects += [dont_care(o.box_xyxy) for o in truth.ignored]
        d = detections[stamp]
        det_eval.add(
            frame_truth(objects, names, rule),
            d.boxes_xyxy,
            d.scores,
            d.class_ids,
            truth.image_bgr.shape[:2],
        )
        if stamp in depths:
            depth_eval.add(depth_in_source(depths[stamp]), truth.depth_m)
    out: dict[str, Any] = {"frames_scored": len(stamps)}
    if stamps:
        out.update(det_eval.compute())
        out["depth"] = depth_eval.compute()
    return out


def _camera_params(launch: LaunchFile) -> dict[str, Any]:
    for spec in launch.nodes:
        if spec.node == "camera":
            return dict(spec.params)
    return {}


def run_demo(options: DemoOptions) -> int:
    """Run the demo; 0 when every stage produced its output."""
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    recording = (out / "demo.mcap").resolve()
    launch = LaunchFile.load(resolve_data_path(options.launch_file))
    apply_overrides(launch, [*options.overrides, f"recorder.output={recording}"])
    namespace = os.environ.get("PERCEPTION_NAMESPACE") or f"demo{os.getpid()}"
    print(
        f"demo: running {options.launch_file} for {options.duration_s:.0f} s "
        f"(namespace {namespace}); Ctrl-C stops early",
        flush=True,
    )
    for spec in launch.nodes:
        if spec.node == "foxglove_bridge":
            port = spec.params.get("port", 8765)
            print(
                f"demo: live view: open Foxglove, 'Open connection', ws://127.0.0.1:{port}",
                flush=True,
            )
    status = Launcher(launch, namespace=namespace, table_period_s=options.table_period_s).run(
        duration_s=options.duration_s
    )
    failures = [] if status == 0 else ["a required node failed (see the log above)"]
    if not recording.is_file():
        raise UserError(f"the recorder wrote no {recording}: nothing to summarise")
    summary = summarize_recording(recording, _camera_params(launch) if options.quality else {})
    if options.render:
        from perception.recording.render import render

        try:
            result = render(recording, out / "review.mp4")
            summary["review_video"] = str(result.path)
        except UserError as exc:
            failures.append(f"render: {exc}")
    for key, what in (
        ("frames_in", "camera frames"),
        ("frames_processed", "detections"),
        ("frames_tracked", "tracks"),
    ):
        if not summary[key]:
            failures.append(f"no {what} were recorded")
    summary["failures"] = failures
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"demo: outputs in {out}/ (demo.mcap, review.mp4, summary.json)")
    return 1 if failures else 0


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        "",
        f"frames in {s['frames_in']}, processed {s['frames_processed']}, "
        f"tracked {s['frames_tracked']}, confirmed tracks {s['confirmed_tracks']}",
        "rates (Hz): " + ", ".join(f"{k} {v}" for k, v in sorted(s["rates_hz"].items())),
    ]
    for name, lat in s["latency_ms"].items():
        if lat:
            lines.append(f"{name}: median {lat['median']} ms, p99 {lat['p99']} ms")
    for node, st in s["stage_latency_ms"].items():
        lines.append(f"{node} stages (median ms): " + ", ".join(f"{k} {v}" for k, v in st.items()))
    for node, inputs in s["drops"].items():
        for topic, d in inputs.items():
            lines.append(
                f"{node} <- {topic}: dropped {d['dropped']}, stale skipped "
                f"{d['stale_dropped']}, rejected {d['rejected']}"
            )
    q = s.get("quality")
    if q and q.get("frames_scored"):
        ap = q.get("ap50", {})
        depth = q.get("depth", {})
        lines.append(
            f"quality on {q['frames_scored']} frames vs ground truth: "
            f"AP@0.5 {json.dumps(ap)}; depth {json.dumps(depth)}"
        )
    for f in s.get("failures", []):
        lines.append(f"FAILED: {f}")
    return "\n".join(lines)
