"""Publisher/Subscriber across real processes on ipc and tcp: delivery, policies, health."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq

from perception.bus import BusConfig, Publisher, Subscriber, endpoint
from perception.bus.endpoints import instances_by_topic
from perception.bus.health import InputStats
from perception.errors import UserError
from perception.msgs import CameraFrame, Detections
from perception.node import Node, NodeConfig

PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from perception.bus import BusConfig, Publisher
    from perception.msgs import CameraFrame, Detections
    bus = BusConfig(**json.loads(sys.argv[1]))
    count, period = int(sys.argv[2]), float(sys.argv[3])
    frames = Publisher("camera/frames", bus)
    dets = Publisher("perception/detections", bus)
    time.sleep(0.7)  # slow joiner
    for i in range(count):
        image = np.full((96, 128, 3), i % 256, np.uint8)
        frames.publish(CameraFrame(stamp_ns=i, frame_id="cam", camera="cam", width=128,
                                   height=96, image=image))
        dets.publish(Detections(stamp_ns=i, class_names=["car"],
                                boxes_xyxy=np.full((2, 4), i, np.float32),
                                scores=np.full(2, 0.5, np.float32),
                                class_ids=np.zeros(2, np.int32),
                                depth_m=np.full(2, 10.0, np.float32)))
        time.sleep(period)
    time.sleep(1.0)
    """
)


def start_publisher(bus: BusConfig, count: int, period_s: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            PUBLISHER,
            json.dumps(dataclasses.asdict(bus)),
            str(count),
            str(period_s),
        ]
    )


def test_queued_topic_delivers_everything_in_order(any_bus: BusConfig) -> None:
    sub = Subscriber("perception/detections", any_bus)
    proc = start_publisher(any_bus, count=100, period_s=0.002)
    got: list[Detections] = []
    deadline = time.monotonic() + 20
    while len(got) < 100 and time.monotonic() < deadline:
        got.extend(m for m in sub.receive(timeout_ms=200) if isinstance(m, Detections))
    proc.wait(20)
    sub.close()
    assert [m.stamp_ns for m in got] == list(range(100))
    assert [m.seq for m in got] == list(range(100))
    assert np.array_equal(got[42].boxes_xyxy, np.full((2, 4), 42, np.float32))
    assert sub.stats.dropped == 0 and not sub.stats.rejected
    transit = sub.stats.report()["transit_ms"]  # both ends on this host (ipc or loopback)
    assert isinstance(transit, float) and 0 <= transit < 1000


def test_keep_latest_skips_stale_frames_while_queue_loses_nothing(any_bus: BusConfig) -> None:
    frames = Subscriber("camera/frames", any_bus)
    dets = Subscriber("perception/detections", any_bus)
    proc = start_publisher(any_bus, count=60, period_s=0.02)
    frame_seqs: list[int] = []
    det_seqs: list[int] = []
    deadline = time.monotonic() + 20
    while len(det_seqs) < 60 and time.monotonic() < deadline:
        got = frames.receive(timeout_ms=100)
        assert len(got) <= 1  # one source: never more than its newest frame
        for msg in got:
            assert isinstance(msg, CameraFrame)
            frame_seqs.append(msg.seq)
            assert int(msg.image[0, 0, 0]) == msg.stamp_ns % 256
        det_seqs.extend(m.seq for m in dets.receive())
        time.sleep(0.15)  # a slow consumer: ~7 frames arrive per iteration
    proc.wait(20)
    # the last detection may be taken in the same pass that the last frame arrived after
    frame_seqs.extend(m.seq for m in frames.receive(timeout_ms=200))
    assert det_seqs == list(range(60))
    assert frame_seqs == sorted(frame_seqs) and len(frame_seqs) < 40
    assert frames.stats.stale_dropped >= 60 - len(frame_seqs) - 2
    assert frames.stats.dropped == 0
    # what was delivered was the newest at the time: the last frame is always seen
    assert frame_seqs[-1] == 59


def test_drops_are_counted_from_seq_gaps_and_restarts_tolerated() -> None:
    stats = InputStats(expected_rate_hz=10)
    for seq in (0, 1, 2, 5, 6, 9):
        stats.on_message("cam", seq, seq * 100_000_000)
    assert stats.dropped == 4
    stats.on_message("cam", 0, 10 * 100_000_000)  # publisher restarted
    assert stats.restarts == 1 and stats.dropped == 4
    stats.on_message("other", 7, 10 * 100_000_000)  # a second source counts on its own
    assert stats.dropped == 4


def test_health_alive_rate_and_upstream_validity() -> None:
    stats = InputStats(expected_rate_hz=10)
    assert not stats.health(0).alive
    t = 0
    for seq in range(20):
        t = seq * 100_000_000
        stats.on_message("cam", seq, t)
        stats.on_delivered(valid=True)
    h = stats.health(t + 1_000)
    assert h.alive and h.rate_ok and h.upstream_valid and h.ok
    assert stats.rate_hz(t) == pytest.approx(10.0)
    assert not stats.health(t + 2_000_000_000).alive  # silent for 2 s
    slow = InputStats(expected_rate_hz=10)
    for seq in range(10):  # arriving at 2 Hz
        t = seq * 500_000_000
        slow.on_message("cam", seq, t)
    h = slow.health(t + 1_000)
    assert h.alive and not h.rate_ok and not h.ok
    assert slow.rate_hz(t) == pytest.approx(2.0)
    stats.on_delivered(valid=False)
    assert not stats.health(t).upstream_valid


def test_garbage_on_the_wire_is_counted_not_raised(bus: BusConfig) -> None:
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(endpoint(bus, "perception/detections"))
    sub = Subscriber("perception/detections", bus)
    time.sleep(0.3)
    raw.send_multipart([b"perception/detections", b"\x00\xffnot msgpack"])
    raw.send_multipart([b"perception/detections"])
    raw.send_multipart([b"perception/detectionsXYZ", b"{}"])
    time.sleep(0.3)
    assert sub.receive() == []
    assert sum(sub.stats.rejected.values()) == 3
    assert sub.stats.rejected["malformed"] == 3
    sub.close()
    ctx.destroy(0)


def test_publisher_refuses_the_wrong_type_and_a_taken_address(bus: BusConfig) -> None:
    pub = Publisher("perception/detections", bus)
    with pytest.raises(TypeError):
        pub.publish(CameraFrame(width=1, height=1, image=np.zeros((1, 1, 3), np.uint8)))
    tcp = BusConfig(transport="tcp", namespace=bus.namespace, port_base=bus.tcp_port_base() + 3)
    first = Publisher("perception/tracks", tcp)
    from perception.errors import UserError

    with pytest.raises(UserError, match="cannot publish"):
        Publisher("perception/tracks", tcp)
    first.close()
    pub.close()


def test_wait_sent_returns_once_zeromq_lets_go_of_the_frame(bus: BusConfig) -> None:
    image = np.zeros((384, 640, 3), np.uint8)  # large enough to be sent without a copy
    frame = CameraFrame(frame_id="cam", width=640, height=384, image=image)
    alone = Publisher("camera/frames", bus, track_sends=True)
    alone.publish(frame)  # no subscriber: dropped, so released at once
    assert alone.wait_sent(1.0)
    alone.close()
    pub = Publisher("camera/frames", bus, instance="tracked", track_sends=True)
    sub = Subscriber("camera/frames", bus, instances=["tracked"])
    time.sleep(0.5)  # slow joiner
    pub.publish(frame)
    assert pub.wait_sent(5.0)
    got = sub.receive(timeout_ms=5000)
    assert len(got) == 1 and np.array_equal(got[0].image, image)
    untracked = Publisher("camera/frames", bus, instance="untracked")
    with pytest.raises(RuntimeError, match="track_sends"):
        untracked.wait_sent(0.1)
    for closable in (pub, sub, untracked):
        closable.close()


def test_transit_is_kept_only_when_the_clock_is_shared() -> None:
    stats = InputStats(expected_rate_hz=10)
    stats.on_message("cam", 0, now_ns=5_000_000)
    assert stats.report(5_000_000)["transit_ms"] is None
    stats.on_message("cam", 1, now_ns=9_000_000, sent_mono_ns=6_000_000)
    assert stats.report(9_000_000)["transit_ms"] == 3.0
    remote = Subscriber("perception/detections", BusConfig(transport="tcp", host="10.1.2.3"))
    local = Subscriber("perception/detections", BusConfig(transport="tcp", host="127.0.0.1"))
    assert not remote._same_host and local._same_host
    remote.close()
    local.close()


def test_channel_keys_group_by_topic_and_a_node_has_one_input_per_topic(bus: BusConfig) -> None:
    keys = ["camera/frames@front", "camera/info", "camera/frames@rear", "camera/frames@front"]
    assert instances_by_topic(keys) == {
        "camera/frames": ["front", "rear"],
        "camera/info": [None],
    }
    with Node("grouping", NodeConfig(bus=bus)) as node:
        frames = node.subscribe("camera/frames", ["front", "rear"])
        assert len(frames.addresses) == 2
        # a second subscriber would replace the first as the node's input, which would then be
        # polled but never read
        with pytest.raises(UserError, match="already subscribes to camera/frames"):
            node.subscribe("camera/frames", ["side"])
        assert node.inputs["camera/frames"] is frames
