"""Detector node: camera frames in, detections and metric depth out, one network forward.

Subscribes to one or more cameras keep-latest (it never works on a stale frame), batches the
newest frame of every camera into one forward pass, and publishes ``perception/detections`` and
``perception/depth`` with the source frame's ``stamp_ns`` and ``frame_id``. Output is marked
``valid=false`` when the camera input is unhealthy. The network is loaded once; a bad frame is
rejected and counted, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from perception import tracing
from perception.errors import UserError

if TYPE_CHECKING:
    from perception.inference import Engine
from perception.msgs import CameraFrame
from perception.node import Node, NodeConfig, exit_process, node_main


@dataclass
class DetectorConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    checkpoint: str = field(
        default="", metadata={"help": "network checkpoint (.safetensors); empty: the shipped one"}
    )
    random_model: str = field(
        default="",
        metadata={"help": "nano | small | base with RANDOM weights (benchmarks/tests only)"},
    )
    cameras: list[str] = field(
        default_factory=lambda: [""],
        metadata={"help": "camera/frames instances to subscribe ('' = the default one)"},
    )
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | bf16 | fp16"})
    input_height: int = field(default=0, metadata={"help": "network input height; 0: model's"})
    input_width: int = field(default=0, metadata={"help": "network input width; 0: model's"})
    score_threshold: float = field(default=0.3, metadata={"help": "minimum detection score"})
    top_k: int = field(default=100, metadata={"help": "peaks kept per frame"})
    cuda_graph: bool = field(default=False, metadata={"help": "replay the forward as a CUDA graph"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the network"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch; 0: default"})
    batch_wait_ms: float = field(
        default=15.0,
        metadata={"help": "with several cameras: wait this long for all to have a new frame"},
    )


def frame_to_bgr(frame: CameraFrame) -> np.ndarray:
    """The frame's pixels as BGR uint8 HxWx3; ValueError if they cannot be decoded."""
    if frame.encoding == "bgr8":
        return frame.image
    if frame.encoding == "rgb8":
        return cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
    if frame.encoding == "mono8":
        return cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
    image = cv2.imdecode(frame.image, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("JPEG data does not decode")
    if image.shape[:2] != (frame.height, frame.width):
        raise ValueError(
            f"JPEG is {image.shape[1]}x{image.shape[0]}, header says {frame.width}x{frame.height}"
        )
    return image


def build_engine(config: DetectorConfig) -> Engine:
    """Load the network once (torch is imported here, not at module import)."""
    from perception.inference import Engine, EngineConfig

    input_hw = (config.input_height, config.input_width) if config.input_height else None
    engine_config = EngineConfig(
        device=config.device,
        input_hw=input_hw,
        score_threshold=config.score_threshold,
        top_k=config.top_k,
        precision=config.precision,  # type: ignore[arg-type]  # EngineConfig checks it
        cuda_graph=config.cuda_graph,
        compile=config.compile,
        threads=config.threads or None,
    )
    if config.random_model:
        return Engine.from_config(config.random_model, engine_config)
    return Engine.from_checkpoint(config.checkpoint or None, engine_config)


class Detector:
    """State of the detector node: the engine, the newest frame per camera, publishers."""

    def __init__(self, node: Node, config: DetectorConfig) -> None:
        if not config.cameras:
            raise UserError("cameras: list at least one camera/frames instance ('' = default)")
        self.node = node
        self.config = config
        self.detections_pub = node.advertise("perception/detections")
        self.depth_pub = node.advertise("perception/depth")
        with node.stage("load"):
            self.engine = build_engine(config)
            self.engine.warmup()
        # Subscribe only now: frames queued during the slow load would all be stale.
        self.frames = node.subscribe("camera/frames", [c or None for c in config.cameras])
        node.log.info(
            "network %s on %s, input %s",
            self.engine.model_config.name,
            self.engine.device,
            "x".join(map(str, self.engine.input_hw)),
        )
        self.pending: dict[str, CameraFrame] = {}  # newest unprocessed frame per camera
        self._first_pending_ns = 0

    def take_frames(self) -> None:
        for msg in self.frames.receive():
            assert isinstance(msg, CameraFrame)
            if msg.frame_id in self.pending:
                self.frames.stats.stale_dropped += 1
            if not self.pending:
                self._first_pending_ns = time.monotonic_ns()
            self.pending[msg.frame_id] = msg

    def ready(self) -> bool:
        """Run when every camera has a frame, or the first one waited long enough."""
        if not self.pending:
            return False
        if len(self.pending) >= len(self.config.cameras):
            return True
        waited_ms = (time.monotonic_ns() - self._first_pending_ns) / 1e6
        return waited_ms >= self.config.batch_wait_ms

    def process(self) -> None:
        batch = list(self.pending.values())
        self.pending.clear()
        images, good = [], []
        with self.node.stage("decode"):
            for msg in batch:
                try:
                    images.append(frame_to_bgr(msg))
                    good.append(msg)
                except (ValueError, cv2.error) as exc:
                    self.node.reject("bad_frame", f"{msg.frame_id}: {exc}")
        if not good:
            return
        results = self.engine.infer(images, cameras=[m.camera for m in good])
        timings = self.engine.last_timings
        for stage, ms in timings.as_dict().items():
            self.node.record_stage(stage, ms)
            if tracing.enabled:  # the batch's time, for each of its frames
                for msg in good:
                    tracing.stage(self.node.name, stage, msg.stamp_ns, ms)
        inputs_ok = self.node.inputs_ok()
        with self.node.stage("publish"):
            for msg, result in zip(good, results, strict=True):
                # Depth first: the tracker pairs the two, and wakes once when detections land.
                for out, pub in (
                    (result.depth, self.depth_pub),
                    (result.detections, self.detections_pub),
                ):
                    out.stamp_ns = msg.stamp_ns
                    out.frame_id = msg.frame_id
                    out.valid = msg.valid and inputs_ok
                    pub.publish(out)


def run(config: DetectorConfig) -> int:
    with Node("detector", config.node, can_drain=True) as node:
        detector = Detector(node, config)
        while node.running:
            node.wait(0.05)
            detector.take_frames()
            if detector.ready():
                detector.process()
        if detector.pending:  # stopping: frames still waiting for a batch partner go anyway
            detector.process()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("detector", DetectorConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
