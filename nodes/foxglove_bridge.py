"""Foxglove bridge node: a live view of the stack in Foxglove, over the official Foxglove SDK.

Subscribes to frames, calibration, detections, depth and tracks, turns each into Foxglove's
well-known schemas (the same views a recording carries: JPEG image, box annotations, depth
image, tracked objects as 3D cubes, calibration, frame transforms, point cloud) and serves them
on a Foxglove WebSocket server. Open Foxglove, "Open connection", and enter the printed address.
Frames and depth are keep-latest: a slow viewer never makes the bridge fall behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perception.bus.endpoints import instances_by_topic
from perception.errors import UserError
from perception.node import Node, NodeConfig, exit_process, node_main

if TYPE_CHECKING:
    from perception.recording.views import ViewBuilder, ViewMessage

DEFAULT_TOPICS = [
    "camera/frames",
    "camera/info",
    "perception/detections",
    "perception/depth",
    "perception/tracks",
]


@dataclass
class BridgeConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    host: str = field(default="127.0.0.1", metadata={"help": "address to serve on (0.0.0.0: all)"})
    port: int = field(default=8765, metadata={"help": "WebSocket port (0: any free port)"})
    cameras: list[str] = field(
        default_factory=list,
        metadata={
            "help": "camera names whose view channels exist from the start; other cameras' "
            "appear when their first message arrives"
        },
    )
    topics: list[str] = field(
        default_factory=lambda: list(DEFAULT_TOPICS),
        metadata={"help": "bus channels to show, TOPIC or TOPIC@INSTANCE"},
    )
    jpeg_quality: int = field(default=80, metadata={"help": "JPEG quality of the image view"})
    depth_encoding: str = field(default="16UC1", metadata={"help": "16UC1 (mm) or 32FC1 (m)"})
    point_cloud_max_points: int = field(
        default=5000, metadata={"help": "depth as a point cloud, subsampled; 0: none"}
    )


class LiveChannels:
    """The bridge's Foxglove channels, created a whole camera at a time.

    The SDK (0.30) can answer "unknown channel" to a subscription that arrives between a new
    channel's advertisement and its registration for that client; the client then misses the
    topic until it reconnects. Seen under CPU load with a client connecting while the first
    messages arrive. So the channels of the configured cameras are created before the server
    accepts clients, and a camera that shows up later gets all its channels in one go.
    """

    def __init__(self, views: ViewBuilder) -> None:
        self._views = views
        self._cameras: set[str] = set()
        self._channels: dict[str, Any] = {}

    def add_camera(self, camera: str) -> None:
        if camera in self._cameras:
            return
        for topic, message_type in self._views.view_types(camera).items():
            if topic not in self._channels:
                self._add_channel(topic, message_type)
        self._cameras.add(camera)

    def log(self, camera: str, view: ViewMessage) -> None:
        channel = self._channels.get(view.topic)
        if channel is None:
            self.add_camera(camera)
            channel = self._channels.get(view.topic)
        if channel is None:  # a view that view_types does not list (a test holds them equal)
            channel = self._add_channel(view.topic, type(view.message))
        channel.log(view.message, log_time=view.stamp_ns)

    def _add_channel(self, topic: str, message_type: type) -> Any:
        from foxglove import channels

        # The SDK's typed channel for a message type is named after it: SceneUpdateChannel.
        channel = getattr(channels, f"{message_type.__name__}Channel")(topic)
        self._channels[topic] = channel
        return channel


def run(config: BridgeConfig) -> int:
    import foxglove

    from perception.recording.views import ViewBuilder, ViewOptions

    views = ViewBuilder(
        ViewOptions(
            jpeg_quality=config.jpeg_quality,
            depth_encoding=config.depth_encoding,
            point_cloud_max_points=config.point_cloud_max_points,
        )
    )
    channels = LiveChannels(views)
    with Node("foxglove_bridge", config.node) as node:
        for camera in config.cameras:
            channels.add_camera(camera)
        for topic, instances in instances_by_topic(config.topics).items():
            node.subscribe(topic, instances)
        try:
            server = foxglove.start_server(name="perception", host=config.host, port=config.port)
        except Exception as exc:  # the SDK raises its own error types for a taken port
            raise UserError(
                f"cannot serve Foxglove on {config.host}:{config.port}: {exc}"
            ) from None
        node.on_close(server.stop)
        address = f"ws://{config.host}:{server.port}"
        node.log.info("Foxglove live view: open Foxglove, 'Open connection', %s", address)
        print(f"foxglove: {address}", flush=True)
        while node.running:
            for sub in node.wait(0.05):
                for msg in sub.receive():
                    with node.stage("view"):
                        try:
                            built = views.build(msg)
                        except (ValueError, UserError) as exc:
                            node.reject("view", f"{msg.TYPE}: {exc}")
                            continue
                    with node.stage("log"):
                        for view in built:
                            channels.log(msg.camera, view)  # type: ignore[attr-defined]
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("foxglove_bridge", BridgeConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
