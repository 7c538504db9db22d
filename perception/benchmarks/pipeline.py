"""End-to-end latency of the launched stack: camera -> detector -> tracker, as separate processes.

Pre-rendered synthetic frames (rendered once, cached as uncompressed BMP) are played by a camera
node from an image folder at a fixed rate, so neither rendering nor image decompression competes
with the stack for the CPU: like a real camera, the source costs next to nothing. This process
subscribes to frames, detections and tracks and reports, as one JSON object: capture ->
detections and capture -> tracks latency (median, p99), throughput, dropped frames, CPU use per
node, the detector's and tracker's per-stage medians, the median transit (send -> arrival) of
each hop, and ``overhead_ms``: the median per-frame time the stack
adds beyond the network's forward pass (capture -> tracks minus the forward time).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import yaml
import zmq

from perception.bus import BusConfig, Subscriber
from perception.bus.topics import QueuePolicy
from perception.msgs import Detections, NodeStatus, TrackedObjects
from perception.paths import PROJECT_ROOT
from perception.stats import StageMedians, median_p99

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def run(args: argparse.Namespace) -> int:
    frames_dir = cached_frames(args.frames, args.seed)
    namespace = f"benchpipe{os.getpid()}"
    bus = BusConfig(namespace=namespace)
    detector: dict[str, Any] = {"device": args.device, "checkpoint": args.checkpoint}
    if args.random_model:
        detector["random_model"] = args.random_model
    launch = {
        "nodes": [
            {"name": "detector", "node": "detector", "params": detector},
            {"name": "tracker", "node": "tracker"},
        ]
    }
    camera = {
        "name": "camera",
        "node": "camera",
        "params": {
            "source": str(frames_dir),
            "fps": args.fps,
            "calibration": "calibration/synthetic_front.yaml",
        },
    }
    frames = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    dets = Subscriber("perception/detections", bus)
    tracks = Subscriber("perception/tracks", bus)
    status = Subscriber("status", bus, instances=["camera", "detector", "tracker"])
    with tempfile.TemporaryDirectory() as tmp:
        stack_file = Path(tmp) / "stack.yaml"
        stack_file.write_text(yaml.safe_dump(launch))
        camera_file = Path(tmp) / "camera.yaml"
        camera_file.write_text(yaml.safe_dump({"nodes": [{**camera, "exit_on_finish": True}]}))
        env = {**os.environ, "PERCEPTION_NAMESPACE": namespace}
        cmd = [sys.executable, "-m", "perception.cli", "launch", "--table-period", "0"]
        stack = subprocess.Popen(
            [*cmd, str(stack_file)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pids: dict[str, int] = {}
        stage_medians = StageMedians()
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
        cam = subprocess.Popen(
            [*cmd, str(camera_file)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        sent: dict[int, float] = {}
        to_dets: list[float] = []
        to_tracks: list[float] = []
        processed = 0
        transit: dict[str, float] = {}  # median send -> arrival per hop, from the nodes' status
        end = time.monotonic() + args.frames / args.fps + 60
        poller = zmq.Poller()  # wake on any output, so its arrival time is not delayed
        for sub in (frames, dets, tracks, status):
            poller.register(sub.socket, zmq.POLLIN)
        while time.monotonic() < end:
            # Only the inputs that have something (asking an empty one costs ~0.1 ms when idle),
            # outputs first: their arrival times are what is measured.
            ready = dict(poller.poll(50))
            if tracks.socket in ready:
                for t in tracks.receive():
                    if isinstance(t, TrackedObjects) and t.stamp_ns in sent:
                        to_tracks.append((time.time_ns() - t.stamp_ns) / 1e6)
                        processed += 1
            if dets.socket in ready:
                for d in dets.receive():
                    if isinstance(d, Detections):
                        to_dets.append((time.time_ns() - d.stamp_ns) / 1e6)
            if frames.socket in ready:
                for m in frames.receive():
                    sent[m.stamp_ns] = time.monotonic()
            for m in status.receive() if status.socket in ready else []:
                if isinstance(m, NodeStatus):
                    pids.setdefault(m.node, m.pid)
                    stage_medians.add(m)
                    for topic, report in m.inputs.items():
                        if isinstance(report, dict) and report.get("transit_ms") is not None:
                            transit[f"{topic} -> {m.node}"] = report["transit_ms"]
            if (
                cam.poll() is not None
                and len(sent) >= args.frames
                and (processed >= len(sent) or time.monotonic() - max(sent.values()) > 5)
            ):
                break
        elapsed = time.monotonic() - t0
        own_transit = tracks.stats.report()["transit_ms"]
        if isinstance(own_transit, float):
            transit["perception/tracks -> bench"] = own_transit
        cpu = {
            name: round(100 * (cpu_seconds(pid) - cpu0.get(name, 0.0)) / elapsed, 1)
            for name, pid in pids.items()
            if name in cpu0
        }
        stack.send_signal(signal.SIGINT)
        stack.wait(30)
        cam.wait(30)

    stages, tracker_stages = stage_medians.of("detector"), stage_medians.of("tracker")
    forward = stages.get("forward") or 0.0
    to_tracks_stats = median_p99(to_tracks)
    result = {
        "bench": "pipeline",
        "frames_sent": len(sent),
        "frames_processed": processed,
        "dropped_frames": len(sent) - processed,
        "fps_in": args.fps,
        "throughput_fps": round(processed / elapsed, 2) if elapsed else 0.0,
        "capture_to_detections_ms": median_p99(to_dets),
        "capture_to_tracks_ms": to_tracks_stats,
        "detector_stages_ms": stages,
        "tracker_stages_ms": tracker_stages,
        "transit_ms": transit,
        "overhead_ms": round(to_tracks_stats["median"] - forward, 2) if to_tracks_stats else None,
        "cpu_percent": cpu,
        "input": "640x384 synthetic frames",
    }
    print(json.dumps(result), flush=True)
    return 0
