"""The tracker node as a process fed by a generated stream of detections, depth and calibration."""

from __future__ import annotations

import time

import numpy as np

from perception.bus import BusConfig, Publisher, Subscriber
from perception.camera import CameraModel
from perception.msgs import Detections, TrackedObjects
from perception.tracking.sim import CLASS_NAMES, SimConfig, SimFrame, TrackingSimulation
from tests.conftest import REPO, wait_for


class TrackerFeed:
    """The tracker node's inputs (detections, depth and calibration of one camera) and its
    output, as a detector and a planner would see them."""

    def __init__(self, bus: BusConfig) -> None:
        self.camera = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
        self.info = self.camera.to_msg()
        self.dets_pub = Publisher("perception/detections", bus)
        self.depth_pub = Publisher("perception/depth", bus)
        self.info_pub = Publisher("camera/info", bus)
        self.tracks = Subscriber("perception/tracks", bus)
        self._warmup = iter(range(1, 10_000))

    def wait_until_answering(self) -> None:
        """Publish calibration and empty detections until the started node answers."""

        def answered() -> bool:
            self.info_pub.publish(self.info)
            self.dets_pub.publish(
                Detections(
                    stamp_ns=next(self._warmup),
                    class_names=CLASS_NAMES,
                    camera="warmup",
                    image_width=640,
                    image_height=384,
                )
            )
            return bool(self.tracks.receive(timeout_ms=200))

        wait_for(answered, 60, "tracker node to answer")

    def publish(self, f: SimFrame) -> None:
        """One simulated frame: its depth map, then its detections (the detector's order)."""
        f.depth.stamp_ns, f.depth.frame_id = f.stamp_ns, "front_optical"
        self.depth_pub.publish(f.depth)
        self.dets_pub.publish(
            Detections(
                stamp_ns=f.stamp_ns,
                frame_id="front_optical",
                camera=self.camera.name,
                image_width=640,
                image_height=384,
                class_names=CLASS_NAMES,
                boxes_xyxy=f.boxes_xyxy.astype(np.float32),
                scores=f.scores.astype(np.float32),
                class_ids=f.class_ids.astype(np.int32),
                depth_m=f.det_depth_m.astype(np.float32),
            )
        )


def test_tracker_node_tracks_a_generated_stream(bus: BusConfig, start_node) -> None:
    feed = TrackerFeed(bus)
    camera, tracks = feed.camera, feed.tracks
    frames = TrackingSimulation(camera, SimConfig(seed=3, duration_s=6.0, frame_drop=0.1)).frames()
    node = start_node("tracker", {}, bus)
    feed.wait_until_answering()
    got: list[TrackedObjects] = []
    sent: list[int] = []
    for f in frames:
        feed.publish(f)
        sent.append(f.stamp_ns)
        feed.info_pub.publish(feed.info)
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
    feed = TrackerFeed(bus)
    camera, tracks = feed.camera, feed.tracks
    frames = TrackingSimulation(camera, SimConfig(seed=4, duration_s=4.0)).frames()
    node = start_node("tracker", {"node": {"drain_on_stop": True}}, bus)  # as the launcher sets
    feed.wait_until_answering()
    time.sleep(0.3)
    tracks.receive()  # warm-up answers
    sent = []
    for f in frames:  # a burst, far faster than the node tracks
        feed.publish(f)
        sent.append(f.stamp_ns)
    assert node.stop(timeout=30) == 0, node.output()
    got: list[int] = []
    while batch := tracks.receive(timeout_ms=500):
        got += [m.stamp_ns for m in batch if m.camera == camera.name]
    assert got == sent, (len(got), len(sent), node.output()[-2000:])
    assert "finishing queued input" in node.output()
