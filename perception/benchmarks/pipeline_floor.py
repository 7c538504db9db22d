"""The floor under `perception bench pipeline`: the same three hops in plain pyzmq, doing no work.

A source process sends a 640x384 BGR frame (with its send stamp) at the camera rate; a
"detector" process receives it, keeps both cores busy with torch matrix products for as long
as the forward takes (``--forward-ms``, so caches are evicted as by the real forward), then
sends a 384x640 float16 depth map and a small detections message; a "tracker" process pairs
them and sends a small tracks message to this process. None of our modules is on the path:
no codec, no validation, no pre/post-processing, no tracking. ``floor_ms`` is the median of
(capture -> tracks minus the busy time): what ZeroMQ, Python's receive calls and waking three
processes cost on this machine before the stack does anything, to compare with the pipeline
benchmark's ``overhead_ms``. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import tempfile
import time
from typing import Any

import numpy as np
import zmq

from perception.stats import median_p99

FRAME_BYTES = 384 * 640 * 3
DEPTH_BYTES = 384 * 640 * 2
SMALL_BYTES = 200  # a few detections or tracks
SETTLE_S = 1.0  # slow joiner: subscriptions reach the publishers before the first frame


def _pub(ctx: zmq.Context[Any], address: str) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    return sock


def _sub(ctx: zmq.Context[Any], *addresses: str) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    for address in addresses:
        sock.connect(address)
    return sock


def _source(folder: str, frames: int, fps: float, ready: Any) -> None:
    ctx = zmq.Context()
    out = _pub(ctx, f"ipc://{folder}/frames")
    image = np.random.default_rng(0).integers(0, 255, FRAME_BYTES, dtype=np.uint8)
    ready.wait(60)  # the other processes have connected (torch takes seconds to import)
    time.sleep(SETTLE_S)
    start = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
        out.send_multipart([struct.pack("<q", time.monotonic_ns()), image.data], copy=False)
    time.sleep(0.5)
    ctx.destroy(0)


def _detector(folder: str, frames: int, forward_ms: float, ready: Any) -> None:
    import torch  # the stand-in forward: real work on both cores for forward_ms

    torch.set_num_threads(2)
    a = torch.randn(384, 384)
    ctx = zmq.Context()
    inp = _sub(ctx, f"ipc://{folder}/frames")
    depth_out = _pub(ctx, f"ipc://{folder}/depth")
    dets_out = _pub(ctx, f"ipc://{folder}/dets")
    depth = np.zeros(DEPTH_BYTES, np.uint8)
    small = bytes(SMALL_BYTES)
    ready.wait(60)
    for _ in range(frames):
        if not inp.poll(int((SETTLE_S + 5) * 1000)):
            break
        stamp, _pixels = inp.recv_multipart(copy=False)
        t0 = time.perf_counter_ns()
        while time.perf_counter_ns() - t0 < forward_ms * 1e6:
            a = torch.tanh(a @ a)
        busy = struct.pack("<q", time.perf_counter_ns() - t0)
        depth_out.send_multipart([stamp.bytes, busy, depth.data], copy=False)
        dets_out.send_multipart([stamp.bytes, busy, small])
    ctx.destroy(0)


def _tracker(folder: str, frames: int, ready: Any) -> None:
    ctx = zmq.Context()
    inp = _sub(ctx, f"ipc://{folder}/depth", f"ipc://{folder}/dets")
    out = _pub(ctx, f"ipc://{folder}/tracks")
    ready.wait(60)
    half_here: set[bytes] = set()  # frames whose depth or detections came, not both yet
    sent = 0
    while sent < frames and inp.poll(int((SETTLE_S + 5) * 1000)):
        stamp, busy, _payload = inp.recv_multipart(copy=False)
        key = stamp.bytes
        if key in half_here:  # depth and detections of this frame both here
            half_here.discard(key)
            out.send_multipart([key, busy.bytes, bytes(SMALL_BYTES)])
            sent += 1
        else:
            half_here.add(key)
    time.sleep(0.5)
    ctx.destroy(0)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=100, help="frames to send")
    parser.add_argument("--fps", type=float, default=10.0, help="camera rate")
    parser.add_argument(
        "--forward-ms", type=float, default=60.0, help="busy time standing in for the forward"
    )


def run(args: argparse.Namespace) -> int:
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="floor") as folder:
        ctx = zmq.Context()
        tracks = _sub(ctx, f"ipc://{folder}/tracks")
        # every process waits here once its sockets exist, so no frame is sent before
        # the whole chain is up
        ready = spawn.Barrier(3)
        procs = [
            spawn.Process(target=_tracker, args=(folder, args.frames, ready)),
            spawn.Process(target=_detector, args=(folder, args.frames, args.forward_ms, ready)),
            spawn.Process(target=_source, args=(folder, args.frames, args.fps, ready)),
        ]
        for p in procs:
            p.start()
        end_to_end: list[float] = []
        floor: list[float] = []
        deadline = time.monotonic() + 60 + args.frames / args.fps
        while len(end_to_end) < args.frames and time.monotonic() < deadline:
            if not tracks.poll(200):
                if not any(p.is_alive() for p in procs):
                    break
                continue
            stamp, busy, _ = tracks.recv_multipart()
            now = time.monotonic_ns()
            (sent,) = struct.unpack("<q", stamp)
            (busy_ns,) = struct.unpack("<q", busy)
            end_to_end.append((now - sent) / 1e6)
            floor.append((now - sent - busy_ns) / 1e6)
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        ctx.destroy(0)
    if not floor:
        print(json.dumps({"bench": "pipeline_floor", "error": "no frame came through"}))
        return 1
    result = {
        "bench": "pipeline_floor",
        "frames": len(floor),
        "fps_in": args.fps,
        "forward_ms": args.forward_ms,
        "capture_to_tracks_ms": median_p99(end_to_end),
        "floor_ms": round(float(np.median(floor)), 2),
        "floor_p99_ms": round(float(np.percentile(floor, 99)), 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)
    return 0
