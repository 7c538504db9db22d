"""Tracker node: detections + depth + calibration in, tracked objects in the vehicle frame out.

Detections are paired with the depth map of the same frame by ``stamp_ns`` (never a mismatched
frame: a detection whose depth does not arrive within ``pair_timeout_s`` is tracked with the
detector's per-object depth instead). Each detection is lifted to 3D through the camera's
calibration (``camera/info`` from the bus, or a calibration file), then associated ByteTrack
style; the filters predict by the real time between frame stamps, so dropped frames and gaps
are handled. One tracker per camera. Output goes to ``perception/tracks`` at frame rate with
the source stamps, ``valid=false`` when any input is stale or invalid.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from perception.bus import Subscriber
from perception.bus.topics import QueuePolicy
from perception.camera import CameraModel
from perception.msgs import CameraInfo, DepthMap, Detections, TrackedObjects
from perception.node import Node, NodeConfig, exit_process, node_main
from perception.paths import resolve_data_path
from perception.tracking.byte import Tracker
from perception.tracking.config import TrackerConfig, load_tracker_config
from perception.tracking.lifting import lift_detections
from perception.tracking.output import tracks_to_msg_fields

MAX_BUFFERED = 32  # frames of detections or depth kept while waiting for their partner


@dataclass
class TrackerNodeConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    tracker: str = field(
        default="", metadata={"help": "tracker YAML (default: perception/configs/tracker.yaml)"}
    )
    calibration: str = field(
        default="", metadata={"help": "camera_info YAML used until camera/info arrives"}
    )
    camera_instances: list[str] = field(
        default_factory=lambda: [""], metadata={"help": "camera/info instances ('' = default)"}
    )
    pair_timeout_s: float = field(
        default=0.5, metadata={"help": "wait this long for a detection's depth map"}
    )


class TrackerState:
    """Pairs detections with depth, keeps one tracker and one camera model per camera."""

    def __init__(self, node: Node, config: TrackerNodeConfig) -> None:
        self.node = node
        self.config = config
        self.tracker_config: TrackerConfig = load_tracker_config(config.tracker or None)
        self.fallback_camera = (
            CameraModel.load(resolve_data_path(config.calibration)) if config.calibration else None
        )
        self.detections = node.subscribe("perception/detections")
        # Depth is keep-latest for most consumers; here every map may pair with a detection.
        self.depth = node.subscribe("perception/depth", policy=QueuePolicy.QUEUE)
        self.infos = node.subscribe("camera/info", [c or None for c in config.camera_instances])
        self.tracks_pub = node.advertise("perception/tracks")
        self.cameras: dict[str, CameraModel] = {}  # by camera name
        self.trackers: dict[str, Tracker] = {}
        self.waiting: OrderedDict[tuple[str, int], tuple[Detections, float]] = OrderedDict()
        self.depths: OrderedDict[tuple[str, int], DepthMap] = OrderedDict()

    def wake_on(self) -> list[Subscriber]:
        """The inputs to wait for. The detector sends a frame's depth map before its
        detections, so the depth is normally there when the detections land: waking for it
        too would cost a second wake-up per frame (and, with the nodes composed in one
        process, a tug of war with the detector's thread while it publishes the detections).
        While a detection waits for its depth, the depth wakes the node as well."""
        if self.waiting:
            return [self.infos, self.detections, self.depth]
        return [self.infos, self.detections]

    def receive(self, ready: list[Subscriber]) -> None:
        """Take what the inputs in ``ready`` hold, and the depth maps when detections came
        (asking an empty input costs ~0.1 ms when the process has been idle, on the reference
        VM: only these are asked)."""
        for info in self.infos.receive() if self.infos in ready else []:
            assert isinstance(info, CameraInfo)
            self.cameras[info.camera] = CameraModel.from_msg(info)
        for det in self.detections.receive() if self.detections in ready else []:
            assert isinstance(det, Detections)
            self.waiting[(det.frame_id, det.stamp_ns)] = (det, time.monotonic())
        for d in self.depth.receive() if self.depth in ready or self.waiting else []:
            assert isinstance(d, DepthMap)
            self.depths[(d.frame_id, d.stamp_ns)] = d
            while len(self.depths) > MAX_BUFFERED:
                self.depths.popitem(last=False)

    def step(self, flush: bool = False) -> None:
        """Track every detection whose depth arrived, or that waited long enough, in order;
        ``flush`` (at a stop) tracks all waiting detections, with depth where it came."""
        now = time.monotonic()
        while self.waiting:
            key, (det, since) = next(iter(self.waiting.items()))
            depth = self.depths.pop(key, None)
            if depth is None and not flush and now - since < self.config.pair_timeout_s:
                break  # the oldest waits; later ones must not overtake it
            del self.waiting[key]
            if depth is None:
                self.node.counters["unpaired_detections"] += 1
            self._track(det, depth)
        # depth maps older than every waiting detection will never pair
        while len(self.depths) > MAX_BUFFERED // 2:
            self.depths.popitem(last=False)

    def _camera_for(self, det: Detections) -> CameraModel | None:
        cam = self.cameras.get(det.camera) or self.fallback_camera
        if cam is None:
            return None
        if (cam.width, cam.height) != (det.image_width, det.image_height):
            cam = cam.scaled(det.image_width, det.image_height)
        return cam

    def _track(self, det: Detections, depth: DepthMap | None) -> None:
        tracker = self.trackers.get(det.camera)
        if tracker is None:  # not setdefault: building a Tracker costs ~0.15-0.45 ms
            tracker = self.trackers[det.camera] = Tracker(self.tracker_config)
        camera = self._camera_for(det)
        positions = covs = sizes = None
        with self.node.stage("lift"):
            if camera is not None and len(det.scores):
                lifted = lift_detections(
                    camera,
                    det.boxes_xyxy,
                    depth,
                    det.depth_m,
                    self.tracker_config.lifting,
                    det.class_ids,
                    det.class_names,
                )
                positions, covs = lifted.positions_vehicle, lifted.covariances_vehicle
                sizes = lifted.sizes_m
            elif camera is None:
                self.node.counters["no_calibration"] += 1
        with self.node.stage("associate"):
            try:
                tracks = tracker.update(
                    det.stamp_ns,
                    det.boxes_xyxy,
                    det.scores,
                    det.class_ids,
                    positions,
                    covs,
                    sizes,
                    image_size=(det.image_width, det.image_height),
                )
            except ValueError as exc:  # e.g. a stamp older than the last: drop, keep going
                self.node.reject("out_of_order", f"{det.camera}: {exc}")
                return
        # Valid only with everything fresh: this frame's depth, calibration, healthy inputs.
        valid = (
            det.valid
            and depth is not None
            and depth.valid
            and camera is not None
            and self.node.inputs_ok(["perception/detections", "perception/depth"])
        )
        msg = TrackedObjects(
            stamp_ns=det.stamp_ns,
            frame_id="vehicle",
            valid=valid,
            camera=det.camera,
            class_names=list(det.class_names),
            **tracks_to_msg_fields(tracks),
        )
        with self.node.stage("publish"):
            self.tracks_pub.publish(msg)


def run(config: TrackerNodeConfig) -> int:
    with Node("tracker", config.node, can_drain=True) as node:
        state = TrackerState(node, config)
        while node.running:
            state.receive(node.wait(0.02, state.wake_on()))
            state.step()
        state.step(flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("tracker", TrackerNodeConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
