"""Bus latency and throughput: our Publisher/Subscriber against plain pyzmq with the same bytes.

For each frame size and transport a publisher process sends BGR frames; this process receives.
One-way latency is receive time minus send time on the shared monotonic clock (our layer:
the header's ``mono_ns``, stamped before encoding; plain pyzmq: an 8-byte stamp frame taken
before the send). Throughput sends back-to-back to a queued subscriber. Runs of ours and of the
baseline alternate so that machine noise hits both alike. One JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import time
from typing import Any

import numpy as np
import zmq

from perception.bus import BusConfig, Publisher, Subscriber, endpoint
from perception.bus.codec import decode, encode
from perception.bus.topics import QueuePolicy, get_topic
from perception.msgs import CameraFrame

FRAMES = {"640x384": (384, 640), "1920x1080": (1080, 1920)}
SETTLE_S = 0.5  # slow-joiner: let the subscription reach the publisher before sending


def _bus(transport: str, namespace: str) -> BusConfig:
    """A private namespace (and, for tcp, a port block) per benchmark process."""
    port_base = 30000 + int(namespace.removeprefix("bench")) % 200 * 100
    return BusConfig(transport=transport, namespace=namespace, port_base=port_base)


def _publisher(
    kind: str, transport: str, namespace: str, hw: tuple[int, int], count: int, period_s: float
) -> None:
    """Child process: send ``count`` frames, ``period_s`` apart (0: back to back)."""
    bus = _bus(transport, namespace)
    image = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    ctx = zmq.Context()
    if kind == "ours":
        pub = Publisher("camera/frames", bus, context=ctx)
        time.sleep(SETTLE_S)
        for i in range(count):
            pub.publish(
                CameraFrame(
                    stamp_ns=i,
                    frame_id="bench",
                    camera="bench",
                    width=hw[1],
                    height=hw[0],
                    image=image,
                )
            )
            if period_s:
                time.sleep(period_s)
        time.sleep(0.5)
        pub.close()
    else:
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, get_topic("camera/frames").hwm)  # as our publisher
        sock.bind(endpoint(bus, "camera/frames"))
        time.sleep(SETTLE_S)
        payload = image.reshape(-1).data
        for _ in range(count):
            stamp = struct.pack("<q", time.monotonic_ns())
            sock.send_multipart([b"camera/frames", stamp, payload], copy=False)
            if period_s:
                time.sleep(period_s)
        time.sleep(0.5)
        sock.close(0)
    ctx.term()


def _measure(
    kind: str, transport: str, hw: tuple[int, int], count: int, period_s: float
) -> tuple[list[float], float]:
    """Latencies (ms) of received messages and the receive rate (messages/s)."""
    namespace = f"bench{os.getpid()}"
    bus = _bus(transport, namespace)
    ctx = zmq.Context()
    proc = mp.get_context("spawn").Process(
        target=_publisher, args=(kind, transport, namespace, hw, count, period_s)
    )
    latencies: list[float] = []
    arrivals: list[int] = []
    if kind == "ours":
        sub = Subscriber("camera/frames", bus, context=ctx, policy=QueuePolicy.QUEUE)
        sub.socket.setsockopt(zmq.RCVHWM, 1000)
        poll_sock: zmq.Socket[Any] = sub.socket
    else:
        raw = ctx.socket(zmq.SUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.setsockopt(zmq.RCVHWM, 1000)
        raw.setsockopt(zmq.SUBSCRIBE, b"camera/frames")
        raw.connect(endpoint(bus, "camera/frames"))
        poll_sock = raw
    proc.start()
    deadline = time.monotonic() + SETTLE_S + 5 + count * (period_s + 0.05)
    while len(latencies) < count and time.monotonic() < deadline:
        if not poll_sock.poll(200):
            if not proc.is_alive():
                break
            continue
        if kind == "ours":
            for msg in sub.receive():
                now = time.monotonic_ns()
                latencies.append((now - msg.mono_ns) / 1e6)
                arrivals.append(now)
        else:
            while True:
                try:
                    frames = raw.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                now = time.monotonic_ns()
                np.frombuffer(frames[2].buffer, np.uint8).reshape(*hw, 3)  # same work as ours
                (sent,) = struct.unpack("<q", frames[1].bytes)
                latencies.append((now - sent) / 1e6)
                arrivals.append(now)
    proc.join(10)
    ctx.destroy(0)
    span = (arrivals[-1] - arrivals[0]) / 1e9 if len(arrivals) > 1 else 0.0
    return latencies, (len(arrivals) - 1) / span if span > 0 else 0.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=200, help="frames per latency run")
    parser.add_argument("--period-ms", type=float, default=20.0, help="gap between frames")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each kind")
    parser.add_argument("--transports", default="ipc,tcp", help="comma-separated: ipc, tcp")
    parser.add_argument(
        "--frames", default=",".join(FRAMES), help=f"comma-separated sizes: {', '.join(FRAMES)}"
    )


def codec_cost(hw: tuple[int, int], repeats: int = 2000) -> dict[str, float]:
    """CPU time of our layer alone (encode + validate, decode + validate), microseconds."""
    image = np.zeros((*hw, 3), np.uint8)
    msg = CameraFrame(frame_id="b", camera="b", width=hw[1], height=hw[0], image=image)
    # what a receiver gets: flat byte buffers (encode hands ZeroMQ the arrays themselves)
    frames = [memoryview(f).cast("B") for f in encode("camera/frames", msg)]
    t0 = time.perf_counter()
    for _ in range(repeats):
        encode("camera/frames", msg)
    t1 = time.perf_counter()
    for _ in range(repeats):
        decode(frames)
    t2 = time.perf_counter()
    return {
        "encode_us": round((t1 - t0) / repeats * 1e6, 2),
        "decode_us": round((t2 - t1) / repeats * 1e6, 2),
    }


def run(args: argparse.Namespace) -> int:
    for frame in args.frames.split(","):
        print(json.dumps({"bench": "bus_codec", "frame": frame, **codec_cost(FRAMES[frame])}))
        hw = FRAMES[frame]
        for transport in args.transports.split(","):
            lat: dict[str, list[float]] = {"ours": [], "base": []}
            thr: dict[str, list[float]] = {"ours": [], "base": []}
            for _ in range(args.rounds):
                for kind in ("ours", "base"):
                    samples, _rate = _measure(
                        kind, transport, hw, args.messages, args.period_ms / 1000
                    )
                    lat[kind].extend(samples)
                    _, rate = _measure(kind, transport, hw, args.messages, 0.0)
                    thr[kind].append(rate)
            ours, base = np.asarray(lat["ours"]), np.asarray(lat["base"])
            result = {
                "bench": "bus",
                "frame": frame,
                "bytes": hw[0] * hw[1] * 3,
                "transport": transport,
                "messages": len(ours),
                "median_ms": round(float(np.median(ours)), 4),
                "p99_ms": round(float(np.percentile(ours, 99)), 4),
                "baseline_median_ms": round(float(np.median(base)), 4),
                "baseline_p99_ms": round(float(np.percentile(base, 99)), 4),
                "overhead_pct": round(float((np.median(ours) / np.median(base) - 1) * 100), 2),
                "throughput_msgs_s": round(float(np.median(thr["ours"])), 1),
                "baseline_throughput_msgs_s": round(float(np.median(thr["base"])), 1),
            }
            print(json.dumps(result), flush=True)
    return 0
