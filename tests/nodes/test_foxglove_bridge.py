"""The live view: a plain WebSocket client subscribes to every channel and decodes a message."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from perception.bus import BusConfig, Publisher
from perception.camera import CameraModel
from perception.msgs import CameraFrame, DepthMap, Detections, TrackedObjects
from tests.conftest import REPO, wait_for

websockets = pytest.importorskip("websockets")


def stack_messages(camera: CameraModel, stamp_ns: int) -> dict[str, object]:
    n = 2
    return {
        "camera/frames": CameraFrame(
            stamp_ns=stamp_ns,
            frame_id=camera.frame_id,
            camera=camera.name,
            width=640,
            height=384,
            image=np.full((384, 640, 3), 90, np.uint8),
        ),
        "camera/info": camera.to_msg(),
        "perception/detections": Detections(
            stamp_ns=stamp_ns,
            frame_id=camera.frame_id,
            camera=camera.name,
            image_width=640,
            image_height=384,
            class_names=["car", "pedestrian"],
            boxes_xyxy=np.array([[100, 150, 200, 220], [300, 160, 330, 230]], np.float32),
            scores=np.array([0.9, 0.7], np.float32),
            class_ids=np.array([0, 1], np.int32),
            depth_m=np.array([12.0, 20.0], np.float32),
        ),
        "perception/depth": DepthMap(
            stamp_ns=stamp_ns,
            frame_id=camera.frame_id,
            camera=camera.name,
            image_width=640,
            image_height=384,
            scale_x=4.0,
            scale_y=4.0,
            offset_x=1.5,
            offset_y=1.5,
            depth_m=np.full((96, 160), 15.0, np.float16),
        ),
        "perception/tracks": TrackedObjects(
            stamp_ns=stamp_ns,
            frame_id="vehicle",
            camera=camera.name,
            class_names=["car", "pedestrian"],
            ids=np.array([1, 2], np.int64),
            class_ids=np.array([0, 1], np.int32),
            scores=np.array([0.9, 0.7], np.float32),
            boxes_xyxy=np.array([[100, 150, 200, 220], [300, 160, 330, 230]], np.float32),
            position_m=np.array([[12.0, 1.0, 0.7], [20.0, -2.0, 0.9]], np.float32),
            velocity_mps=np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32),
            covariance=np.tile(np.eye(6, dtype=np.float32), (n, 1, 1)),
            size_m=np.array([[1.8, 1.5], [0.6, 1.7]], np.float32),
            age_s=np.array([1.0, 2.0], np.float32),
            states=np.array([1, 1], np.uint8),
        ),
    }


def message_class(schema_name: str, schema_b64: str):  # type: ignore[no-untyped-def]
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema_b64))
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


async def collect(
    address: str, want: set[str], timeout: float
) -> tuple[dict[str, object], set[str]]:
    """Subscribe to every advertised channel until one message of each topic in ``want`` is
    decoded. Returns the decoded messages and the topics whose subscription the server refused
    ("Unknown channel ID", the SDK's race for channels created while a client is connected);
    a refused subscription is sent again, as a patient client would."""
    decoded: dict[str, object] = {}
    refused: set[str] = set()
    async with websockets.connect(
        address, subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"], max_size=None
    ) as ws:
        channels: dict[int, dict] = {}
        subs: dict[int, int] = {}

        async def subscribe(channel_ids: list[int]) -> None:
            new = []
            for channel_id in channel_ids:
                subs[len(subs) + 1] = channel_id
                new.append({"id": len(subs), "channelId": channel_id})
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": new}))

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not want <= set(decoded):
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            if isinstance(raw, str):
                msg = json.loads(raw)
                if msg["op"] == "advertise":
                    new_ids = [ch["id"] for ch in msg["channels"] if ch["id"] not in channels]
                    channels.update({ch["id"]: ch for ch in msg["channels"]})
                    if new_ids:
                        await subscribe(new_ids)
                elif msg["op"] == "status":
                    unknown = re.fullmatch(r"Unknown channel ID: (\d+)", msg["message"])
                    if unknown and int(unknown.group(1)) in channels:
                        refused.add(channels[int(unknown.group(1))]["topic"])
                        await subscribe([int(unknown.group(1))])
                continue
            if raw[0] != 1:  # messageData
                continue
            sub_id, _log_time = struct.unpack_from("<IQ", raw, 1)
            ch = channels[subs[sub_id]]
            if ch["topic"] in decoded:
                continue
            cls = message_class(ch["schemaName"], ch["schema"])
            decoded[ch["topic"]] = cls.FromString(bytes(raw[13:]))
    return decoded, refused


def test_live_view_serves_every_channel(bus: BusConfig, start_node) -> None:
    """Camera "front" is configured, so its channels exist before the client connects and no
    subscription may be refused; camera "rear" is not, and its channels appear with its first
    message, while the client is connected. Rear frames come on their own bus instance."""
    front = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
    rear = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
    rear.name, rear.frame_id = "rear", "rear_optical"
    pubs = {t: Publisher(t, bus) for t in stack_messages(front, 0)}
    rear_frames = Publisher("camera/frames", bus, instance="rear")  # as in multi-camera launches
    topics = ["camera/frames", "camera/frames@rear", "camera/info", "perception/detections"]
    topics += ["perception/depth", "perception/tracks"]
    node = start_node("foxglove_bridge", {"port": 0, "cameras": ["front"], "topics": topics}, bus)
    match = wait_for(lambda: re.search(r"foxglove: (ws://\S+)", node.output()), 30, "address")
    address = match.group(1)
    views = ["image", "calibration", "detections", "tracks", "objects", "depth", "points"]
    expected = {"/view/tf"} | {f"/view/{cam}/{view}" for cam in ("front", "rear") for view in views}

    async def main() -> tuple[dict[str, object], set[str]]:
        async def feed() -> None:
            for i in range(600):
                for camera in (front, rear):
                    stamp_ns = 1_000_000_000 + i * 100_000_000
                    for topic, msg in stack_messages(camera, stamp_ns).items():
                        pub = rear_frames if (camera, topic) == (rear, "camera/frames") else None
                        (pub or pubs[topic]).publish(msg)  # type: ignore[arg-type]
                await asyncio.sleep(0.1)

        task = asyncio.create_task(feed())
        try:
            return await collect(address, expected, timeout=50)
        finally:
            task.cancel()

    decoded, refused = asyncio.run(main())
    assert expected <= set(decoded), (
        f"missing {sorted(expected - set(decoded))}; bridge log:\n{node.output()}"
    )
    assert not {t for t in refused if not t.startswith("/view/rear/")}, (refused, node.output())
    image = decoded["/view/front/image"]
    assert image.format == "jpeg" and len(image.data) > 100  # type: ignore[attr-defined]
    boxes = decoded["/view/front/detections"]
    assert len(boxes.points) + len(boxes.texts) >= 2  # type: ignore[attr-defined]
    scene = decoded["/view/front/objects"]
    assert len(scene.entities) >= 1  # type: ignore[attr-defined]
    assert decoded["/view/front/calibration"].K[0] == 400.0  # type: ignore[attr-defined]
