"""Benchmark: time of one `Tracker.update()` (association + filters) with many objects.

Objects move at constant velocity in a 1920x1080 image and in 3D; every frame each is detected
with box noise (10% dropped, 10% at a low score), plus a few false positives, all with 3D
positions and covariances, so every step of the update runs (both association stages, the 3D
cost, both Kalman filters, track births and deaths). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from perception.tracking import Tracker, TrackerConfig

TARGET_MS = 2.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=100, help="objects per frame (default 100)")
    parser.add_argument("--frames", type=int, default=400, help="timed frames (default 400)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed frames first (default 30)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the stamps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def _machine() -> str:
    """CPU model and core count (timings mean little without them)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def _scene(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "xy": rng.uniform([100, 100], [1820, 980], (n, 2)),
        "v_px": rng.normal(0, 40, (n, 2)),
        "wh": rng.uniform([20, 20], [150, 120], (n, 2)),
        "pos": np.column_stack([rng.uniform(5, 80, n), rng.uniform(-20, 20, n), np.full(n, 0.8)]),
        "vel": np.column_stack([rng.normal(0, 5, n), rng.normal(0, 1, n), np.zeros(n)]),
        "cls": rng.integers(0, 4, n),
    }


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    n = int(args.objects)
    s = _scene(n, rng)
    tracker = Tracker(TrackerConfig())
    dt = 1.0 / args.fps
    times: list[float] = []
    cpu_times: list[float] = []  # thread CPU time: what the update costs on a busy machine
    live: list[int] = []
    phases: dict[str, list[float]] = {}
    for i in range(args.warmup + args.frames):
        t = i * dt
        xy = s["xy"] + s["v_px"] * t
        xy = np.mod(xy, [1920, 1080])  # wrap around: objects leave and new ones appear
        boxes = np.concatenate([xy - s["wh"] / 2, xy + s["wh"] / 2], axis=1)
        boxes += rng.normal(0, 2.0, boxes.shape)
        scores = np.where(rng.random(n) < 0.1, 0.3, 0.9)
        keep = rng.random(n) >= 0.1
        pos = s["pos"] + s["vel"] * t + rng.normal(0, 0.5, (n, 3))
        covs = np.tile(np.diag([1.0, 0.1, 0.1]), (n, 1, 1))
        fp = rng.uniform([0, 0, 30, 30], [1800, 1000, 120, 120], (5, 4))
        fp[:, 2:] += fp[:, :2]
        b = np.concatenate([boxes[keep], fp])
        sc = np.concatenate([scores[keep], rng.uniform(0.1, 0.7, 5)])
        cl = np.concatenate([s["cls"][keep], np.zeros(5, np.int64)])
        p = np.concatenate([pos[keep], rng.uniform(5, 50, (5, 3))])
        c = np.concatenate([covs[keep], np.tile(np.eye(3), (5, 1, 1))])
        t0, c0 = time.perf_counter(), time.thread_time()
        out = tracker.update(round(t * 1e9), b, sc, cl, p, c, image_size=(1920, 1080))
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if i >= args.warmup:
            times.append(elapsed * 1e3)
            cpu_times.append(cpu * 1e3)
            live.append(len(out))
            for name, phase_ms in tracker.last_phase_ms.items():
                phases.setdefault(name, []).append(phase_ms)
    ms = np.array(times)
    print(
        json.dumps(
            {
                "bench": "tracker",
                "objects": n,
                "frames": len(ms),
                "tracks_published_mean": round(float(np.mean(live)), 1),
                "update_median_ms": round(float(np.median(ms)), 3),
                # The fastest tenth: close to the cost on an idle core when the machine is shared.
                "update_p10_ms": round(float(np.percentile(ms, 10)), 3),
                "update_p99_ms": round(float(np.percentile(ms, 99)), 3),
                "update_max_ms": round(float(ms.max()), 3),
                "update_cpu_median_ms": round(float(np.median(cpu_times)), 3),
                # the update's phases; "associate" is the association proper (cost pairs
                # and the ByteTrack matching steps), the rest are filters and bookkeeping
                "phase_median_ms": {k: round(float(np.median(v)), 3) for k, v in phases.items()},
                "target_ms": TARGET_MS,
                "pass": bool(np.median(ms) < TARGET_MS),
                "machine": _machine(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    configure(p)
    raise SystemExit(run(p.parse_args()))
