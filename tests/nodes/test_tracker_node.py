"""The tracker node as a process fed by a generated stream of detections, depth and calibration."""

from __future__ import annotations

import time

import numpy as np

from perception.bus import BusConfig, Publisher, Subscriber
from perception.camera import CameraModel
from perception.msgs import Detections, TrackedObjects
from perception.tracking.sim import CLASS_NAMES, SimConfig, TrackingSimulation
from tests.conftest import REPO, wait_for


def test_tracker_node_tracks_a_generated_stream(bus: BusConfig, start_node) -> None:
    camera = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
    frames = TrackingSimulation(camera, SimConfig(seed=3, duration_s=6.0, frame_drop=0.1)).frames()
    dets_pub = Publisher("perception/detections", bus)
    depth_pub = Publisher("perception/depth", bus)
    info_pub = Publisher("camera/info", bus)
    tracks = Subscriber("perception/tracks", bus)
    node = start_node("tracker", {}, bus)
    info = camera.to_msg()

    warmup = iter(range(1, 10_000))

    def connected() -> bool:  # publish calibration until the node is up and has it
        info_pub.publish(info)
        dets_pub.publish(
            Detections(
                stamp_ns=next(warmup),
                class_names=CLASS_NAMES,
                camera="warmup",
                image_width=640,
                image_height=384,
            )
        )
        return bool(tracks.receive(timeout_ms=200))

    wait_for(connected, 60, "tracker node to answer")
    got: list[TrackedObjects] = []
    sent: list[int] = []
    for f in frames:
        det = Detections(
            stamp_ns=f.stamp_ns,
            frame_id="front_optical",
            camera=camera.name,
            image_width=640,
            image_height=384,
            class_names=CLASS_NAMES,
            boxes_xyxy=f.boxes_xyxy.astype(np.float32),
            scores=f.scores.astype(np.float32),
            class_ids=f.class_ids.astype(np.int32),
            depth_m=f.det_depth_m.astype(np.float32),
        )
        f.depth.stamp_ns, f.depth.frame_id = f.stamp_ns, "front_optical"
        depth_pub.publish(f.depth)
        dets_pub.publish(det)
        sent.append(f.stamp_ns)
        info_pub.publish(info)
        got += [m for m in tracks.receive(timeout_ms=30) if isinstance(m, TrackedObjects)]
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while len([m for m in got if m.stamp_ns in sent]) < len(sent) and time.monotonic() < deadline:
        got += [m for m in tracks.receive(timeout_ms=100) if isinstance(m, TrackedObjects)]
    got = [m for m in got if m.stamp_ns in set(sent) and m.camera == camera.name]
    assert [m.stamp_ns for m in got] == sent, node.output()  # one output per frame, in order
    assert all(m.frame_id == "vehicle" and m.camera == camera.name for m in got)
    assert sum(m.valid for m in got[5:]) >= len(got[5:]) - 1
    confirmed = [m for m in got[20:] if (m.states == 1).any()]
    assert confirmed, "tracks get confirmed"
    last = got[-1]
    ok = last.states == 1
    assert np.all(last.position_m[ok][:, 0] > 0), "confirmed objects are ahead of the vehicle"
    assert np.all(np.diag(last.covariance[ok][0]) > 0)
    # ids are stable: most confirmed ids of the last frame were already there 1 s before
    earlier = set(got[-11].ids.tolist())
    assert np.mean([i in earlier for i in last.ids[ok].tolist()]) >= 0.6


def test_stopping_the_tracker_finishes_the_queued_detections(bus: BusConfig, start_node) -> None:
    """SIGINT while a burst is queued: every detection still gets its tracks before exit."""
    camera = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
    frames = TrackingSimulation(camera, SimConfig(seed=4, duration_s=4.0)).frames()
    dets_pub = Publisher("perception/detections", bus)
    depth_pub = Publisher("perception/depth", bus)
    info_pub = Publisher("camera/info", bus)
    tracks = Subscriber("perception/tracks", bus)
    node = start_node("tracker", {"node": {"drain_on_stop": True}}, bus)  # as the launcher sets
    info = camera.to_msg()
    warmup = iter(range(1, 10_000))

    def connected() -> bool:
        info_pub.publish(info)
        dets_pub.publish(
            Detections(
                stamp_ns=next(warmup),
                class_names=CLASS_NAMES,
                camera="warmup",
                image_width=640,
                image_height=384,
            )
        )
        return bool(tracks.receive(timeout_ms=200))

    wait_for(connected, 60, "tracker node to answer")
    time.sleep(0.3)
    tracks.receive()  # warm-up answers
    sent = []
    for f in frames:  # a burst, far faster than the node tracks
        f.depth.stamp_ns, f.depth.frame_id = f.stamp_ns, "front_optical"
        depth_pub.publish(f.depth)
        dets_pub.publish(
            Detections(
                stamp_ns=f.stamp_ns,
                frame_id="front_optical",
                camera=camera.name,
                image_width=640,
                image_height=384,
                class_names=CLASS_NAMES,
                boxes_xyxy=f.boxes_xyxy.astype(np.float32),
                scores=f.scores.astype(np.float32),
                class_ids=f.class_ids.astype(np.int32),
                depth_m=f.det_depth_m.astype(np.float32),
            )
        )
        sent.append(f.stamp_ns)
    assert node.stop(timeout=30) == 0, node.output()
    got: list[int] = []
    while batch := tracks.receive(timeout_ms=500):
        got += [m.stamp_ns for m in batch if m.camera == camera.name]
    assert got == sent, (len(got), len(sent), node.output()[-2000:])
    assert "finishing queued input" in node.output()
