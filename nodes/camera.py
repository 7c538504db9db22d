"""Camera node: publishes CameraFrame at the source's rate and CameraInfo from a calibration file.

Sources: ``synthetic`` (the built-in drive), ``device:N`` or ``/dev/videoN``, a video file, or an
image folder (sorted; ``--fps`` or a timestamps file). File sources are paced by their own time
stamps; ``stamp_ns`` is the wall-clock capture (publication) time. A source that fails or
disconnects is retried with exponential back-off and reported in the status, never a crash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.camera import CameraModel
from perception.errors import UserError
from perception.msgs import CameraFrame
from perception.node import Node, NodeConfig, exit_process, node_main
from perception.paths import resolve_data_path
from perception.sources import FrameSource, SourceError, open_source

INFO_PERIOD_S = 1.0
MAX_BACKOFF_S = 10.0


@dataclass
class CameraConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    source: str = field(
        default="synthetic",
        metadata={"help": "synthetic | device:N | /dev/videoN | VIDEO_FILE | IMAGE_FOLDER"},
    )
    camera: str = field(default="front", metadata={"help": "camera name"})
    instance: str = field(
        default="", metadata={"help": "publish on camera/frames@INSTANCE (several cameras)"}
    )
    calibration: str = field(
        default="calibration/synthetic_front.yaml",
        metadata={"help": "ROS camera_info YAML; empty: publish no CameraInfo"},
    )
    fps: float = field(default=0.0, metadata={"help": "rate; 0: the source's own"})
    timestamps: str = field(default="", metadata={"help": "time stamps file for image folders"})
    loop: bool = field(default=False, metadata={"help": "restart file sources at their end"})
    frames: int = field(default=0, metadata={"help": "stop after N frames; 0: no limit"})
    seed: int = field(default=0, metadata={"help": "seed of the synthetic drive"})
    encoding: str = field(default="bgr8", metadata={"help": "bgr8 | jpeg"})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality for encoding=jpeg"})
    start_delay_s: float = field(
        default=0.5,
        metadata={"help": "wait after binding so waiting subscribers join (slow joiner)"},
    )
    width: int = field(default=0, metadata={"help": "device capture width"})
    height: int = field(default=0, metadata={"help": "device capture height"})


class CameraPublisher:
    """State of the camera node: the source, its pacing, and the two publishers."""

    def __init__(self, node: Node, config: CameraConfig) -> None:
        if config.encoding not in ("bgr8", "jpeg"):
            raise UserError(f"encoding must be bgr8 or jpeg, not {config.encoding!r}")
        self.node = node
        self.config = config
        self.model = (
            CameraModel.load(resolve_data_path(config.calibration)) if config.calibration else None
        )
        instance = config.instance or None
        self.frames_pub = node.advertise("camera/frames", instance, track_sends=True)
        self.info_pub = node.advertise("camera/info", instance) if self.model else None
        if self.model and self.model.name != config.camera:
            # one calibration file may serve several cameras: the node's name wins
            self.model.name = config.camera
            self.model.frame_id = f"{config.camera}_optical"
        self.frame_id = self.model.frame_id if self.model else f"{config.camera}_optical"
        self.source = self._make_source()
        self.published = 0
        self._is_open = False
        self._backoff_s = 0.5
        self._t0_ns = 0  # wall-clock monotonic origin of the source's time axis
        self._size_warned = False

    def _make_source(self) -> FrameSource:
        c = self.config
        try:
            return open_source(
                c.source,
                fps=c.fps,
                timestamps=c.timestamps,
                calibration=resolve_data_path(c.calibration) if c.calibration else None,
                seed=c.seed,
                width=c.width,
                height=c.height,
            )
        except SourceError as exc:
            raise UserError(str(exc)) from None

    def _open(self) -> bool:
        try:
            self.source.open()
        except SourceError as exc:
            self.node.set_state("error", f"{exc}; retrying in {self._backoff_s:.1f} s")
            self.node.counters["source_errors"] += 1
            self.node.sleep_until(time.monotonic_ns() + int(self._backoff_s * 1e9))
            self._backoff_s = min(self._backoff_s * 2, MAX_BACKOFF_S)
            return False
        self._is_open = True
        self._t0_ns = time.monotonic_ns()
        self.node.set_state("ok")
        return True

    def step(self) -> bool:
        """Publish one frame; False when the node should stop."""
        if self.config.frames and self.published >= self.config.frames:
            return False
        if not self._is_open and not self._open():
            return True
        try:
            with self.node.stage("read"):
                frame = self.source.read()
        except SourceError as exc:
            self.node.counters["source_errors"] += 1
            self.node.set_state("error", str(exc))
            self.source.close()
            self._is_open = False
            return True
        if frame is None:  # end of a file source
            self.source.close()
            self._is_open = False
            if self.config.loop:
                return True
            self.node.log.info("source ended after %d frames", self.published)
            return False
        self._backoff_s = 0.5
        if frame.time_s is not None:  # pace file sources by their own clock
            self.node.sleep_until(self._t0_ns + int(frame.time_s * 1e9))
            if not self.node.running:
                return False
        self._publish(frame.image_bgr, time.time_ns())
        if frame.time_s is not None:
            # A file source reads (or renders) its next frame ahead of time, right now: first
            # let this one go out. Working alongside its delivery made it reach the detector
            # ~0.6 ms later on a 2-core machine. (A live source's next read waits for the
            # device anyway, and must not be delayed by a slow subscriber.)
            self.frames_pub.wait_sent()
        return True

    def publish_info(self, _now_ns: int) -> None:
        """The calibration. It changes no frame, so it goes out at a quiet moment of the node
        (``Node.every``): next to a frame, its encoding and the subscribers' handling of it
        held that frame up by ~1 ms."""
        assert self.model is not None and self.info_pub is not None
        info = self.model.to_msg()
        info.stamp_ns = time.time_ns()
        self.info_pub.publish(info)

    def _publish(self, image: np.ndarray, stamp_ns: int) -> None:
        h, w = image.shape[:2]
        if self.model and (w, h) != (self.model.width, self.model.height) and not self._size_warned:
            self._size_warned = True
            self.node.log.warning(
                "frames are %dx%d but the calibration is for %dx%d",
                w,
                h,
                self.model.width,
                self.model.height,
            )
        encoding = self.config.encoding
        if encoding == "jpeg":
            with self.node.stage("encode"):
                ok, buf = cv2.imencode(
                    ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
                )
            if not ok:
                self.node.reject("encode", "JPEG encoding failed")
                return
            image = buf.reshape(-1)
        elif image.ndim == 2:
            encoding = "mono8"
        msg = CameraFrame(
            stamp_ns=stamp_ns,
            frame_id=self.frame_id,
            camera=self.config.camera,
            encoding=encoding,
            width=w,
            height=h,
            image=np.ascontiguousarray(image),
        )
        with self.node.stage("publish"):
            self.frames_pub.publish(msg)
        self.published += 1


def run(config: CameraConfig) -> int:
    with Node("camera", config.node) as node:
        cam = CameraPublisher(node, config)
        node.on_close(cam.source.close)
        node.ready()
        node.sleep_until(time.monotonic_ns() + int(config.start_delay_s * 1e9))
        if cam.info_pub is not None:
            # Once late subscribers had their pause: the first goes out now, before the first
            # frame; then about every second, between frames.
            node.every(INFO_PERIOD_S, cam.publish_info)
            node.spin_once()
        node.log.info(
            "publishing %s from %s on %s", config.camera, config.source, cam.frames_pub.address
        )
        while node.running and cam.step():
            node.spin_once()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("camera", CameraConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
