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


def valid_message(topic: str, i: int, source: str = "cam") -> list[Any]:
    if topic == "camera/frames":
        msg: Any = CameraFrame(
            seq=i,
            stamp_ns=time.time_ns(),
            frame_id=source,
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


def bad_messages(topic: str, round_: int) -> list[list[bytes]]:
    """One of each kind of bad input, all carrying the subscribed topic prefix. Each comes from
    its own source (frame_id), so keep-latest inputs decode every one instead of skipping it."""
    t = topic.encode()

    def good(k: int) -> list[Any]:
        return valid_message(topic, 0, source=f"bad{round_}_{k}")

    long_name = CameraFrame(  # a header string over the 64 KiB limit
        frame_id="x" * 70_000, width=1, height=1, image=np.zeros((1, 1, 3), np.uint8)
    )
    bad = [
        [t, b"\x93\x01\x02"],  # msgpack, but an array
        [t, np.random.default_rng(0).bytes(300)],  # random bytes
        [t],  # no header
        good(0)[:2],  # buffers missing
        [*good(1)[:2], good(1)[2][:-3], *good(1)[3:]],  # truncated buffer
        [t, good(2)[1][:-5], *good(2)[2:]],  # truncated header
        [bytes(f) for f in encode(topic, long_name, validate=False)],  # oversize header field
    ]
    if topic == "perception/detections":  # a buffer over the topic's 16 MiB limit
        huge = np.zeros((17 << 20) // 16 + 1, dtype=[("b", "<f4", 4)])
        oversized = Detections(
            class_names=["car"],
            boxes_xyxy=huge["b"],
            scores=np.zeros(len(huge), np.float32),
            class_ids=np.zeros(len(huge), np.int32),
            depth_m=np.zeros(len(huge), np.float32),
        )
        bad.append([bytes(f) for f in encode(topic, oversized, validate=False)])
    return bad


NODE_PARAMS: dict[str, dict[str, Any]] = {
    "monitor": {"topics": ["perception/detections"]},
    "detector": {"random_model": "nano", "input_height": 64, "input_width": 96},
    "tracker": {},
}


@pytest.mark.parametrize(
    "kind, topic",
    [
        ("monitor", "perception/detections"),
        ("detector", "camera/frames"),
        ("tracker", "perception/detections"),
    ],
)
def test_node_survives_and_counts_bad_input(
    any_bus: BusConfig, start_node, kind: str, topic: str
) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SNDHWM, 10000)
    raw.bind(endpoint(any_bus, topic))
    status = Subscriber("status", any_bus, instances=[kind])
    params: dict[str, Any] = {"node": {"status_period_s": 0.3}, **NODE_PARAMS[kind]}
    node = start_node(kind, params, any_bus)

    def subscribed() -> bool:
        return any(
            isinstance(m, NodeStatus) and topic in m.inputs for m in status.receive(timeout_ms=100)
        )

    wait_for(subscribed, 60, f"{kind} to subscribe to {topic}")
    time.sleep(0.3)
    for i in range(5):
        raw.send_multipart(valid_message(topic, i))
        bad = bad_messages(topic, i)
        for msg in bad:
            raw.send_multipart(msg)
        time.sleep(0.05)
    for i in range(5, 10):
        raw.send_multipart(valid_message(topic, i))

    seen: list[dict[str, Any]] = []

    def report() -> dict[str, Any] | None:
        for m in status.receive(timeout_ms=100):
            if isinstance(m, NodeStatus):
                entry = m.inputs.get(topic, {})
                seen[:] = [entry]
                # keep-latest inputs deliver only the newest of a burst; queued ones all ten
                delivered = entry.get("received", 0) + entry.get("stale_dropped", 0)
                if entry.get("rejected", 0) >= 5 * len(bad) and delivered >= 10:
                    return entry
        return None

    try:
        entry = wait_for(report, 20, f"{kind} status counting the rejects")
    except AssertionError:
        raise AssertionError(f"last status: {seen}\n{node.output()}") from None
    assert node.proc.poll() is None, node.output()
    reasons = entry["rejected_by_reason"]
    assert {"malformed", "buffer_count", "buffer_mismatch", "oversize"} <= set(reasons)
    assert reasons["oversize"] == 5 * (2 if topic == "perception/detections" else 1)
    out = node.output()
    assert "Traceback" not in out
    assert out.count("rejected") < 40, "reject logging must be rate-limited"
    # a frame beyond twice the limit makes the socket drop that peer; the node goes on
    limit = 128 << 20 if topic == "camera/frames" else 16 << 20
    raw.send_multipart([topic.encode(), b"x", b"\0" * (2 * limit + 1)])
    time.sleep(0.5)
    assert node.proc.poll() is None
    assert node.stop() == 0
    ctx.destroy(0)
