"""Shared helpers of the recording tests: a small synthetic drive with results, bus plumbing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from perception.bus import BusConfig, Subscriber
from perception.bus.codec import encode
from perception.camera import CameraModel
from perception.msgs import CameraFrame, DepthMap, Detections, Message, NodeStatus, TrackedObjects
from perception.recording.mcap_io import RecordingWriter, WriterOptions
from perception.recording.views import ViewBuilder, write_view

REPO = Path(__file__).resolve().parents[2]
CALIBRATION = REPO / "calibration" / "synthetic_front.yaml"
W, H = 160, 96  # small frames keep the tests fast
CLASSES = ["car", "pedestrian", "cyclist"]
T0_NS = 1_764_000_000_000_000_000


def camera_model() -> CameraModel:
    """The synthetic front camera scaled to the test frame size."""
    return CameraModel.load(CALIBRATION).scaled(W, H)


def frame_image(i: int) -> np.ndarray:
    """A frame with structure (a gradient and a moving square), different every index."""
    rng = np.random.default_rng(i)
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    x = 10 + 5 * i % (W - 40)
    img[30:60, x : x + 30] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def drive_messages(
    n: int, period_ns: int = 100_000_000, camera: str = "front"
) -> list[tuple[str, Message]]:
    """``n`` frames with info (every 10th frame), detections, depth and tracks per frame."""
    model = camera_model()
    out: list[tuple[str, Message]] = []
    for i in range(n):
        stamp = T0_NS + i * period_ns
        if i % 10 == 0:
            info = model.to_msg()
            info.camera, info.stamp_ns = camera, stamp
            out.append(("camera/info", info))
        out.append(
            (
                "camera/frames",
                CameraFrame(
                    stamp_ns=stamp,
                    frame_id=model.frame_id,
                    camera=camera,
                    encoding="bgr8",
                    width=W,
                    height=H,
                    image=frame_image(i),
                ),
            )
        )
        x = 20.0 + 2 * i
        boxes = np.array([[x, 30, x + 40, 70], [100, 20, 130, 80]], np.float32)
        out.append(
            (
                "perception/detections",
                Detections(
                    stamp_ns=stamp,
                    frame_id=model.frame_id,
                    camera=camera,
                    image_width=W,
                    image_height=H,
                    class_names=CLASSES,
                    boxes_xyxy=boxes,
                    scores=np.array([0.9, 0.6], np.float32),
                    class_ids=np.array([0, 1], np.int32),
                    depth_m=np.array([12.5, 30.0], np.float32),
                ),
            )
        )
        depth = np.tile(np.linspace(5, 60, W // 2, dtype=np.float16), (H // 2, 1))
        depth[:4] = 0  # unknown
        out.append(
            (
                "perception/depth",
                DepthMap(
                    stamp_ns=stamp,
                    frame_id=model.frame_id,
                    camera=camera,
                    image_width=W,
                    image_height=H,
                    scale_x=2.0,
                    scale_y=2.0,
                    offset_x=0.5,
                    offset_y=0.5,
                    depth_m=depth,
                ),
            )
        )
        out.append(
            (
                "perception/tracks",
                TrackedObjects(
                    stamp_ns=stamp,
                    frame_id="vehicle",
                    camera=camera,
                    class_names=CLASSES,
                    ids=np.array([7], np.int64),
                    class_ids=np.array([0], np.int32),
                    scores=np.array([0.9], np.float32),
                    boxes_xyxy=boxes[:1],
                    position_m=np.array([[14.0 - 0.1 * i, 1.5, 0.8]], np.float32),
                    velocity_mps=np.array([[-1.0, 0.0, 0.0]], np.float32),
                    covariance=np.tile(np.eye(6, dtype=np.float32), (1, 1, 1)),
                    size_m=np.array([[1.8, 1.5]], np.float32),
                    age_s=np.array([0.1 * i], np.float32),
                    states=np.array([1], np.uint8),
                ),
            )
        )
    return out


def status_message(stamp: int) -> NodeStatus:
    return NodeStatus(
        stamp_ns=stamp,
        frame_id="fake",
        node="fake",
        pid=1,
        uptime_s=1.5,
        inputs={"camera/frames": {"rate_hz": 10.0}},
        counters={"x": 1},
    )


def write_recording(
    path: Path,
    messages: list[tuple[str, Message]],
    views: bool = True,
    lag_ns: int = 0,
    chunk_size: int = 4 << 20,
) -> None:
    """Write ``messages`` as the recorder would, received ``lag_ns`` after their stamps
    (derived messages a little later still, as from a live stack)."""
    builder = ViewBuilder() if views else None
    with RecordingWriter(
        path, WriterOptions(overwrite=True, chunk_size_bytes=chunk_size)
    ) as writer:
        for seq, (key, msg) in enumerate(messages):
            msg.seq = seq
            log = msg.stamp_ns + lag_ns + (0 if key.startswith("camera/") else 30_000_000)
            writer.write_frames(key, encode(key.split("@")[0], msg)[1:], log, msg.stamp_ns, seq)
            if builder is not None:
                for v in builder.build(msg):
                    write_view(writer, v, log)


def node_command(kind: str, params: dict[str, Any], bus: BusConfig) -> list[str]:
    params = dict(params)
    node = dict(params.pop("node", {}))
    node["bus"] = {
        "transport": bus.transport,
        "namespace": bus.namespace,
        "port_base": bus.port_base,
    }
    params["node"] = node
    return [sys.executable, "-m", f"nodes.{kind}", "--params", json.dumps(params)]


def wait_status(bus: BusConfig, name: str, timeout: float = 20.0) -> None:
    """Wait until node ``name`` published a status (it is in its loop, subscribed)."""
    sub = Subscriber("status", bus, instances=[name])
    try:
        deadline = time.monotonic() + timeout
        while not sub.receive(timeout_ms=100):
            if time.monotonic() > deadline:
                raise AssertionError(f"node {name} published no status in {timeout} s")
    finally:
        sub.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def collect(sub: Subscriber, until: float) -> Iterator[tuple[float, Message]]:
    """(receive time, message) until the monotonic deadline."""
    while time.monotonic() < until:
        for msg in sub.receive(timeout_ms=50):
            yield time.monotonic(), msg
