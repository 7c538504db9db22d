"""Garbage, truncated and oversized messages sent to a node's inputs: counted, never fatal."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import zmq

from perception.bus import BusConfig, Subscriber, endpoint
from perception.bus.codec import encode
from perception.msgs import CameraFrame, Detections, NodeStatus
from tests.conftest import wait_for


def valid_message(topic: str, i: int) -> list[Any]:
    if topic == "camera/frames":
        msg: Any = CameraFrame(
            seq=i,
            stamp_ns=time.time_ns(),
            frame_id="cam",
            camera="cam",
            width=64,
            height=48,
            image=np.full((48, 64, 3), i, np.uint8),
        )
    else:
        msg = Detections(
            seq=i,
            stamp_ns=time.time_ns(),
            class_names=["car"],
            boxes_xyxy=np.ones((1, 4), np.float32),
            scores=np.ones(1, np.float32),
            class_ids=np.zeros(1, np.int32),
            depth_m=np.ones(1, np.float32),
        )
    return [bytes(f) for f in encode(topic, msg)]


def bad_messages(topic: str) -> list[list[bytes]]:
    """One of each kind of bad input, all carrying the subscribed topic prefix."""
    t = topic.encode()
    good = valid_message(topic, 0)
    huge = np.zeros((17 << 20) // 16 + 1, dtype=[("b", "<f4", 4)])  # 17 MiB of boxes
    oversized = Detections(
        class_names=["car"],
        boxes_xyxy=huge["b"],
        scores=np.zeros(len(huge), np.float32),
        class_ids=np.zeros(len(huge), np.int32),
        depth_m=np.zeros(len(huge), np.float32),
    )
    return [
        [t, b"\x93\x01\x02"],  # msgpack, but an array
        [t, np.random.default_rng(0).bytes(300)],  # random bytes
        [t],  # no header
        good[:2],  # buffers missing
        [good[0], good[1], good[2][:-3], *good[3:]],  # truncated buffer
        [t, good[1][:-5], *good[2:]],  # truncated header
        [bytes(f) for f in encode(topic, oversized, validate=False)],  # over the topic's limit
    ]


@pytest.mark.parametrize("kind, topic", [("monitor", "perception/detections")])
def test_node_survives_and_counts_bad_input(
    any_bus: BusConfig, start_node, kind: str, topic: str
) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SNDHWM, 10000)
    raw.bind(endpoint(any_bus, topic))
    status = Subscriber("status", any_bus, instances=[kind])
    params: dict[str, Any] = {"node": {"status_period_s": 0.3}}
    if kind == "monitor":
        params["topics"] = [topic]
    node = start_node(kind, params, any_bus)
    time.sleep(1.5)  # the node subscribes
    bad = bad_messages(topic)
    for i in range(5):
        raw.send_multipart(valid_message(topic, i))
        for msg in bad:
            raw.send_multipart(msg)
        time.sleep(0.05)
    for i in range(5, 10):
        raw.send_multipart(valid_message(topic, i))

    def report() -> dict[str, Any] | None:
        for m in status.receive(timeout_ms=100):
            if isinstance(m, NodeStatus):
                entry = m.inputs.get(topic, {})
                if entry.get("rejected", 0) >= 5 * len(bad) and entry.get("received", 0) >= 10:
                    return entry
        return None

    entry = wait_for(report, 20, f"{kind} status counting the rejects")
    assert node.proc.poll() is None, node.output()
    reasons = entry["rejected_by_reason"]
    assert {"malformed", "buffer_count", "buffer_mismatch", "oversize"} <= set(reasons)
    assert reasons["oversize"] == 5
    out = node.output()
    assert "Traceback" not in out
    assert out.count("rejected") < 40, "reject logging must be rate-limited"
    # a frame beyond twice the limit makes the socket drop that peer; the node goes on
    raw.send_multipart([topic.encode(), b"x", b"\0" * (40 << 20)])
    time.sleep(0.5)
    assert node.proc.poll() is None
    assert node.stop() == 0
    ctx.destroy(0)
