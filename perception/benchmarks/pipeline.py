"""End-to-end latency of the launched stack: camera -> detector -> tracker.

By default the three share one process, linked in-process (``--compose all``, as
launch/camera.yaml runs a live camera); ``--compose detector+tracker`` keeps the camera apart (as
launch/demo.yaml), ``--compose none`` gives each its own process, linked over ipc.

Pre-rendered synthetic frames (rendered once, cached as uncompressed BMP) are played by a camera
node from an image folder at a fixed rate, so neither rendering nor image decompression competes
with the stack for the CPU: like a real camera, the source costs next to nothing. This process
subscribes to detections and tracks (not to the frames: taking a second copy of each 737 KB frame
would load the two cores while the detector works on it; the camera's status counts what it
sent) and reports, as one JSON object: capture ->
detections and capture -> tracks latency (median, p99), throughput, dropped frames, CPU use per
process, the detector's and tracker's per-stage medians, the median transit (send -> arrival) of
each hop, and ``overhead_ms``: the median per-frame time the stack adds beyond the network's
forward pass (each frame's capture -> tracks minus that frame's forward time).

The stack runs traced (``perception/tracing.py``): every message's send and arrival, and each
frame's stage times, so each frame is followed through every hop. ``split_ms`` gives the
median of each part of a frame's way; ``overhead_of_medians_ms`` is the median capture ->
tracks minus the median forward (the figure this benchmark reported before it traced frames:
two medians over different frames, so it moves with the forward's own spread).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import yaml
import zmq

from perception import tracing
from perception.bus import BusConfig, Subscriber
from perception.msgs import Detections, NodeStatus, TrackedObjects
from perception.paths import PROJECT_ROOT
from perception.stats import StageMedians, median_p99

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COMPOSE = {
    "all": ("camera", "detector", "tracker"),
    "detector+tracker": ("detector", "tracker"),
    "none": (),
}


def cached_frames(count: int, seed: int) -> Path:
    """A folder of ``count`` rendered frames of synthetic drive ``seed`` (rendered once)."""
    from perception.camera import CameraModel
    from perception.synth import SyntheticDrive

    folder = Path(tempfile.gettempdir()) / f"perception-bench-frames-{seed}-{count}-bmp"
    if len(list(folder.glob("*.bmp"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    camera = CameraModel.load(PROJECT_ROOT / "calibration" / "synthetic_front.yaml")
    drive = SyntheticDrive(seed, camera)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:06d}.bmp"), drive.frame(i).image_bgr)
    return folder


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=100, help="frames to send")
    parser.add_argument("--fps", type=float, default=10.0, help="camera rate")
    parser.add_argument("--checkpoint", default="", help="network (default: the shipped one)")
    parser.add_argument("--random-model", default="", help="nano|small|base, random weights")
    parser.add_argument("--device", default="auto", help="detector device")
    parser.add_argument("--seed", type=int, default=7, help="synthetic drive to render")
    parser.add_argument(
        "--compose",
        choices=COMPOSE,
        default="all",
        help="which nodes share one process, linked in-process: all (camera, detector and "
        "tracker, as launch/camera.yaml runs a live camera), detector+tracker (as "
        "launch/demo.yaml, whose synthetic camera renders in Python), none (a process each, "
        "linked over ipc)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY of the detector's process, as the launch files set it; '' leaves "
        "OpenMP's default (idle threads spin for a while)",
    )
    parser.add_argument(
        "--keep-trace",
        default="",
        metavar="DIR",
        help="copy the run's per-frame trace (one JSONL file per process, perception/tracing.py) "
        "into DIR, to look at single frames",
    )


def _launch(folder: Path, bus: BusConfig, *nodes: dict[str, Any]) -> subprocess.Popen[bytes]:
    """``perception launch`` of ``nodes`` in the benchmark's namespace, traced into
    ``folder/trace``."""
    launch_file = folder / f"{nodes[0]['name']}.yaml"
    launch_file.write_text(yaml.safe_dump({"nodes": list(nodes)}))
    cmd = [sys.executable, "-m", "perception.cli", "launch", "--table-period", "0"]
    env = {**os.environ, "PERCEPTION_NAMESPACE": bus.namespace, tracing.ENV: str(folder / "trace")}
    return subprocess.Popen(
        [*cmd, str(launch_file)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return _run(args, BusConfig(namespace=f"benchpipe{os.getpid()}"), Path(tmp))


def _run(args: argparse.Namespace, bus: BusConfig, folder: Path) -> int:
    frames_dir = cached_frames(args.frames, args.seed)
    detector: dict[str, Any] = {"device": args.device, "checkpoint": args.checkpoint}
    if args.random_model:
        detector["random_model"] = args.random_model
    detector_env = {"OMP_WAIT_POLICY": args.omp_wait_policy} if args.omp_wait_policy else {}
    nodes: list[dict[str, Any]] = [
        {
            "name": "camera",
            "node": "camera",
            "exit_on_finish": True,
            "params": {
                "source": str(frames_dir),
                "fps": args.fps,
                "calibration": "calibration/synthetic_front.yaml",
            },
        },
        {"name": "detector", "node": "detector", "params": detector, "env": detector_env},
        {"name": "tracker", "node": "tracker"},
    ]
    for node in nodes:
        if node["name"] in COMPOSE[args.compose]:
            node["process"] = "perception"
    camera_inside = "camera" in COMPOSE[args.compose]
    tracing.enable(folder / "trace")
    dets = Subscriber("perception/detections", bus, owner="bench")
    tracks = Subscriber("perception/tracks", bus, owner="bench")
    status = Subscriber("status", bus, instances=["camera", "detector", "tracker"])
    pids: dict[str, int] = {}
    stage_medians = StageMedians()
    if camera_inside:
        # the process holds the camera until the detector and tracker have set up
        stack = source = _launch(folder, bus, *nodes)
    else:
        stack = _launch(folder, bus, *nodes[1:])
        deadline = time.monotonic() + 120
        while not {"detector", "tracker"} <= set(pids) and time.monotonic() < deadline:
            for m in status.receive(timeout_ms=200):
                # the detector subscribes once its network is loaded: ready then
                if isinstance(m, NodeStatus) and (m.node == "tracker" or m.inputs):
                    pids[m.node] = m.pid
        if not {"detector", "tracker"} <= set(pids):
            stack.send_signal(signal.SIGINT)
            stack.wait(30)
            print(json.dumps({"bench": "pipeline", "error": "the stack did not start"}))
            return 1
        source = _launch(folder, bus, nodes[0])
    # pid -> (CPU seconds, time): when first seen, and at its newest status (a process that
    # ends with the run is gone by the time the loop ends)
    cpu0: dict[int, tuple[float, float]] = {}
    cpu1: dict[int, tuple[float, float]] = {}
    for pid in set(pids.values()):
        cpu0[pid] = (cpu_seconds(pid), time.monotonic())
    first_output: float | None = None
    frames_sent = 0  # what the camera's newest status says it published
    last_output = time.monotonic()
    to_dets: list[float] = []
    to_tracks: dict[int, float] = {}  # capture -> tracks per frame (its capture stamp)
    processed = 0
    transit: dict[str, float] = {}  # median send -> arrival per hop, from the nodes' status
    end = time.monotonic() + args.frames / args.fps + (180 if camera_inside else 60)
    poller = zmq.Poller()  # wake on any output, so its arrival time is not delayed
    for sub in (dets, tracks, status):
        poller.register(sub.socket, zmq.POLLIN)
    while time.monotonic() < end:
        # Only the inputs that have something (asking an empty one costs ~0.1 ms when idle),
        # outputs first: their arrival times are what is measured.
        ready = dict(poller.poll(50))
        if tracks.socket in ready:
            for t in tracks.receive():
                if isinstance(t, TrackedObjects):
                    to_tracks[t.stamp_ns] = (time.time_ns() - t.stamp_ns) / 1e6
                    processed += 1
                    last_output = time.monotonic()
                    first_output = first_output or last_output
        if dets.socket in ready:
            for d in dets.receive():
                if isinstance(d, Detections):
                    to_dets.append((time.time_ns() - d.stamp_ns) / 1e6)
        for m in status.receive() if status.socket in ready else []:
            if isinstance(m, NodeStatus):
                pids.setdefault(m.node, m.pid)
                reading = (cpu_seconds(m.pid), time.monotonic())
                if not math.isnan(reading[0]):  # the process is there
                    cpu0.setdefault(m.pid, reading)
                    cpu1[m.pid] = reading
                if m.node == "camera":
                    published = m.outputs.get("camera/frames", {}).get("published")
                    if isinstance(published, int):
                        frames_sent = max(frames_sent, published)
                stage_medians.add(m)
                for topic, report in m.inputs.items():
                    if isinstance(report, dict) and report.get("transit_ms") is not None:
                        transit[f"{topic} -> {m.node}"] = report["transit_ms"]
        if (
            source.poll() is not None
            # the camera plays every file; its status at exit says so
            and (args.frames <= frames_sent <= processed or time.monotonic() - last_output > 5)
        ):
            break
    now = time.monotonic()
    own_transit = tracks.stats.report()["transit_ms"]
    if isinstance(own_transit, float):
        transit["perception/tracks -> bench"] = own_transit
    cpu = {}  # per process: the names of the nodes it runs
    for pid, (seconds, since) in cpu0.items():
        final = (cpu_seconds(pid), now)
        last_seconds, last_at = cpu1.get(pid, (seconds, since)) if math.isnan(final[0]) else final
        names = "+".join(n for n in ("camera", "detector", "tracker") if pids.get(n) == pid)
        cpu[names] = round(100 * (last_seconds - seconds) / max(last_at - since, 1e-9), 1)
    for launch in {stack, source}:
        launch.send_signal(signal.SIGINT)
    for launch in {stack, source}:
        launch.wait(30)
    # throughput over the frames' span (a composed launch loads its network in the meantime)
    span = last_output - first_output if first_output is not None else 0.0

    stages, tracker_stages = stage_medians.of("detector"), stage_medians.of("tracker")
    forward = stages.get("forward") or 0.0
    to_tracks_stats = median_p99(list(to_tracks.values()))
    tracing.flush()
    overhead, split = frame_split(tracing.read(folder / "trace"), to_tracks)
    if args.keep_trace:
        shutil.copytree(folder / "trace", args.keep_trace, dirs_exist_ok=True)
    result = {
        "bench": "pipeline",
        "frames_sent": frames_sent,
        "frames_processed": processed,
        "dropped_frames": frames_sent - processed,
        "fps_in": args.fps,
        "throughput_fps": round((processed - 1) / span, 2) if span > 0 else 0.0,
        "capture_to_detections_ms": median_p99(to_dets),
        "capture_to_tracks_ms": to_tracks_stats,
        "detector_stages_ms": stages,
        "tracker_stages_ms": tracker_stages,
        "transit_ms": transit,
        "overhead_ms": overhead,
        "overhead_of_medians_ms": (
            round(to_tracks_stats["median"] - forward, 2) if to_tracks_stats else None
        ),
        "split_ms": split,
        "cpu_percent": cpu,
        "composed": "+".join(COMPOSE[args.compose]) or "none",
        "omp_wait_policy": args.omp_wait_policy or "default",
        "input": "640x384 synthetic frames",
    }
    print(json.dumps(result), flush=True)
    return 0


# The parts of a frame's way, in order: (name, start event, end event). Events are
# ("sent" | "received", node, topic); the detector's stages come from its stage times.
_HOPS = (
    (
        "frame sent -> detector has it",
        ("sent", "camera", "camera/frames"),
        ("received", "detector", "camera/frames"),
    ),
    (
        "detections sent -> tracker has them",
        ("sent", "detector", "perception/detections"),
        ("received", "tracker", "perception/detections"),
    ),
    (
        "tracker",
        ("received", "tracker", "perception/detections"),
        ("sent", "tracker", "perception/tracks"),
    ),
    (
        "tracks sent -> subscriber has them",
        ("sent", "tracker", "perception/tracks"),
        ("received", "bench", "perception/tracks"),
    ),
)


def frame_split(
    events: list[dict[str, Any]], capture_to_tracks: dict[int, float]
) -> tuple[float | None, dict[str, float]]:
    """From a traced run: the median per-frame overhead (capture -> tracks minus the frame's
    forward) and the median of each part of a frame's way (ms), over the frames seen whole."""
    times: dict[int, dict[tuple[str, str, str], int]] = {}
    stage_ms: dict[int, dict[str, float]] = {}
    for e in events:
        stamp = e.get("stamp_ns")
        if not isinstance(stamp, int):
            continue
        if e.get("event") == "stage" and e.get("node") == "detector":
            stage_ms.setdefault(stamp, {})[e["stage"]] = e["ms"]
        elif e.get("event") in ("sent", "received"):
            # the first of each: a frame's messages are sent and received once
            times.setdefault(stamp, {}).setdefault((e["event"], e["node"], e["topic"]), e["t_ns"])
    overheads: list[float] = []
    parts: dict[str, list[float]] = {}
    needed = {k for _, a, b in _HOPS for k in (a, b)}
    for stamp, c2t in capture_to_tracks.items():
        t, st = times.get(stamp, {}), stage_ms.get(stamp, {})
        if not needed <= set(t) or not {"pre", "forward", "post"} <= set(st):
            continue
        overheads.append(c2t - st["forward"])
        ms = {name: (t[b] - t[a]) / 1e6 for name, a, b in _HOPS}
        in_detector = (
            t[("sent", "detector", "perception/detections")]
            - t[("received", "detector", "camera/frames")]
        ) / 1e6
        whole = (
            t[("received", "bench", "perception/tracks")] - t[("sent", "camera", "camera/frames")]
        ) / 1e6
        ms["capture -> frame sent"] = c2t - whole
        ms["detector: pre"], ms["detector: post"] = st["pre"], st["post"]
        ms["detector: rest"] = in_detector - st["pre"] - st["forward"] - st["post"]
        for name, value in ms.items():
            parts.setdefault(name, []).append(value)
    order = [
        "capture -> frame sent",
        "frame sent -> detector has it",
        "detector: pre",
        "detector: post",
        "detector: rest",
        "detections sent -> tracker has them",
        "tracker",
        "tracks sent -> subscriber has them",
    ]
    split = {name: round(statistics.median(parts[name]), 3) for name in order if name in parts}
    overhead = round(statistics.median(overheads), 2) if overheads else None
    return overhead, split
