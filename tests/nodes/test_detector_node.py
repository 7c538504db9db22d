"""The detector node as a process between camera nodes and a subscriber."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perception.bus import BusConfig, Subscriber
from perception.bus.topics import QueuePolicy
from perception.msgs import DepthMap, Detections, NodeStatus
from tests.conftest import OPENCV_DATA, wait_for

VIDEO = OPENCV_DATA / "vtest.avi"
DETECTOR = {"random_model": "nano", "input_height": 128, "input_width": 160}
pytestmark = pytest.mark.skipif(not VIDEO.exists(), reason="Debian package opencv-doc missing")


def test_detector_between_camera_and_subscriber(bus: BusConfig, start_node) -> None:
    frames = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    dets = Subscriber("perception/detections", bus)
    depth = Subscriber("perception/depth", bus, policy=QueuePolicy.QUEUE)
    detector = start_node("detector", DETECTOR, bus)
    start_node("camera", {"source": str(VIDEO), "fps": 10, "loop": True}, bus)
    stamps: set[int] = set()
    got_dets: list[Detections] = []
    got_depth: list[DepthMap] = []
    deadline = time.monotonic() + 60
    while (len(got_dets) < 15 or len(got_depth) < 15) and time.monotonic() < deadline:
        stamps.update(m.stamp_ns for m in frames.receive(timeout_ms=50))
        got_dets += [m for m in dets.receive() if isinstance(m, Detections)]
        got_depth += [m for m in depth.receive() if isinstance(m, DepthMap)]
    assert len(got_dets) >= 15 and len(got_depth) >= 15, detector.output()
    for msg in got_dets:
        assert msg.stamp_ns in stamps, "outputs must carry a source frame's stamp"
        assert (msg.image_width, msg.image_height) == (768, 576)
        assert msg.frame_id == "front_optical" and msg.camera == "front"
    for d in got_depth:
        assert d.stamp_ns in stamps
        w = d.depth_m.shape[1]
        # the depth grid spans the source image (768x576, letterboxed into 128x160)
        assert d.offset_x + d.scale_x * (w - 1) == pytest.approx(767, abs=d.scale_x)
        assert np.isfinite(d.depth_m).all() and (d.depth_m > 0).all()
    assert sum(m.valid for m in got_dets[-5:]) == 5, "healthy input: outputs valid"


def test_two_cameras_are_batched_in_one_forward(bus: BusConfig, start_node) -> None:
    dets = Subscriber("perception/detections", bus)
    status = Subscriber("status", bus, instances=["detector"])
    start_node("detector", {**DETECTOR, "cameras": ["front", "rear"]}, bus)
    for name in ("front", "rear"):
        start_node(
            "camera",
            {
                "source": str(VIDEO),
                "fps": 10,
                "loop": True,
                "instance": name,
                "camera": name,
                "calibration": "",
            },
            bus,
        )
    cameras: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while min(cameras.values(), default=0) < 10 and time.monotonic() < deadline:
        for m in dets.receive(timeout_ms=100):
            assert isinstance(m, Detections)
            cameras[m.camera] = cameras.get(m.camera, 0) + 1
    assert set(cameras) == {"front", "rear"} and min(cameras.values()) >= 10

    def steady_status() -> NodeStatus | None:
        for m in status.receive(timeout_ms=200):
            if (
                isinstance(m, NodeStatus)
                and m.outputs["perception/detections"]["published"] >= 30
                and m.stages_ms.get("forward", {}).get("count")
            ):
                return m
        return None

    report = wait_for(steady_status, 30, "detector status")
    outputs_per_s = report.outputs["perception/detections"]["rate_hz"]
    forwards_per_s = report.stages_ms["forward"]["count"] / 1.0  # status period: 1 s
    assert outputs_per_s / forwards_per_s > 1.3, "frames of both cameras share forwards"
