"""Foxglove view channels: read back with the official mcap reader, decoded with the protobuf
schemas the file carries, and checked field by field against the bus messages they show."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from rec_helpers import CLASSES, H, W, camera_model, drive_messages, write_recording
from scipy.spatial.transform import Rotation

from perception.msgs import DepthMap, Detections, Message, TrackedObjects
from perception.recording.mcap_io import PerceptionDecoderFactory, RecordingWriter
from perception.recording.views import (
    ViewBuilder,
    ViewOptions,
    quaternion_from_matrix,
    write_view,
)


def _decoded(path: Path) -> dict[str, list[tuple[Any, Any]]]:
    """topic -> [(schema, decoded message)], via the official reader: the view channels with the
    protobuf decoder (the schemas the file carries), the bus channels with ours."""
    out: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    factories = [DecoderFactory(), PerceptionDecoderFactory()]
    with open(path, "rb") as f:
        reader = make_reader(f, validate_crcs=True, decoder_factories=factories)
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema is not None
            if channel.message_encoding == "protobuf":
                assert schema.encoding == "protobuf" and schema.name.startswith("foxglove.")
                assert message.publish_time == decoded_stamp(decoded)
            else:
                assert isinstance(decoded, Message) and decoded.stamp_ns == message.publish_time
            out[channel.topic].append((schema, decoded))
    return out


def decoded_stamp(decoded: Any) -> int:
    if "timestamp" in decoded.DESCRIPTOR.fields_by_name:
        ts = decoded.timestamp
    else:  # a SceneUpdate's stamps are in its deletions and entities
        ts = (decoded.deletions[0] if decoded.deletions else decoded.entities[0]).timestamp
    return ts.seconds * 1_000_000_000 + ts.nanos


def _quat_matrix(q: Any) -> np.ndarray:
    return Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    msgs = drive_messages(12)
    path = tmp_path_factory.mktemp("views") / "views.mcap"
    write_recording(path, msgs)
    return path, msgs


def test_every_view_channel_decodes_with_its_foxglove_schema(drive: tuple[Path, list]) -> None:
    path, _ = drive
    views = _decoded(path)
    expected = {
        "/view/front/image": "foxglove.CompressedImage",
        "/view/front/calibration": "foxglove.CameraCalibration",
        "/view/tf": "foxglove.FrameTransform",
        "/view/front/detections": "foxglove.ImageAnnotations",
        "/view/front/tracks": "foxglove.ImageAnnotations",
        "/view/front/objects": "foxglove.SceneUpdate",
        "/view/front/depth": "foxglove.RawImage",
        "/view/front/depth/calibration": "foxglove.CameraCalibration",
        "/view/front/points": "foxglove.PointCloud",
    }
    assert {t: views[t][0][0].name for t in views if t.startswith("/")} == expected
    assert len(views["/view/front/image"]) == 12 and len(views["/view/tf"]) == 2


def test_images_calibration_and_transform(drive: tuple[Path, list]) -> None:
    path, msgs = drive
    views = _decoded(path)
    frames = [m for k, m in msgs if k == "camera/frames"]
    for (_, img), frame in zip(views["/view/front/image"], frames, strict=True):
        assert img.format == "jpeg" and img.frame_id == frame.frame_id
        decoded = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (H, W, 3)
        assert np.abs(decoded.astype(int) - frame.image.astype(int)).mean() < 6  # JPEG loss
    model = camera_model()
    _, calib = views["/view/front/calibration"][0]
    assert (calib.width, calib.height, calib.frame_id) == (W, H, model.frame_id)
    assert calib.distortion_model == "plumb_bob" and len(calib.D) == 5
    np.testing.assert_allclose(np.array(calib.K).reshape(3, 3), model.K)
    np.testing.assert_allclose(np.array(calib.P).reshape(3, 4), model.P)
    np.testing.assert_allclose(np.array(calib.R).reshape(3, 3), model.R)
    _, tf = views["/view/tf"][0]
    assert (tf.parent_frame_id, tf.child_frame_id) == ("vehicle", model.frame_id)
    np.testing.assert_allclose(_quat_matrix(tf.rotation), model.T_vehicle_camera[:3, :3], atol=1e-9)
    t = tf.translation
    np.testing.assert_allclose([t.x, t.y, t.z], model.T_vehicle_camera[:3, 3])


def test_annotations_and_scene_show_the_objects(drive: tuple[Path, list]) -> None:
    path, msgs = drive
    views = _decoded(path)
    dets = [m for _, m in msgs if isinstance(m, Detections)]
    for (_, ann), det in zip(views["/view/front/detections"], dets, strict=True):
        assert len(ann.points) == len(det.scores) == len(ann.texts)
        for points, box, text, cid in zip(
            ann.points, det.boxes_xyxy, ann.texts, det.class_ids, strict=True
        ):
            assert points.type == points.LINE_LOOP and len(points.points) == 4
            corners = [(p.x, p.y) for p in points.points]
            x1, y1, x2, y2 = (box + 0.5).tolist()  # pixel centres -> Foxglove's pixel corners
            np.testing.assert_allclose(corners, [(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
            assert text.text.startswith(CLASSES[cid]) and points.thickness > 0
    tracks = [m for _, m in msgs if isinstance(m, TrackedObjects)]
    for (_, ann), trk in zip(views["/view/front/tracks"], tracks, strict=True):
        assert ann.texts[0].text.startswith(f"#{trk.ids[0]} car ")
    for (_, scene), trk in zip(views["/view/front/objects"], tracks, strict=True):
        assert scene.deletions[0].type == scene.deletions[0].ALL
        (entity,) = scene.entities
        assert entity.frame_id == "vehicle" and entity.id == f"track-{trk.ids[0]}"
        (cube,) = entity.cubes
        p = cube.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], trk.position_m[0], rtol=1e-6)
        assert (cube.size.x, cube.size.y, cube.size.z) == pytest.approx((1.8, 1.8, 1.5))
        assert 0 < cube.color.a <= 1 and entity.texts[0].text.startswith("#7 car")
        (arrow,) = entity.arrows  # moving at 1 m/s towards the car (-x)
        assert arrow.shaft_length == pytest.approx(1.0)
        np.testing.assert_allclose(
            _quat_matrix(arrow.pose.orientation)[:, 0], [-1, 0, 0], atol=1e-9
        )


def test_depth_image_and_point_cloud_match_the_depth_map(drive: tuple[Path, list]) -> None:
    path, msgs = drive
    views = _decoded(path)
    depths = [m for _, m in msgs if isinstance(m, DepthMap)]
    _, raw = views["/view/front/depth"][0]
    d = depths[0].depth_m
    assert (raw.width, raw.height, raw.encoding, raw.step) == (
        d.shape[1],
        d.shape[0],
        "16UC1",
        2 * d.shape[1],
    )
    mm = np.frombuffer(raw.data, "<u2").reshape(d.shape)
    np.testing.assert_allclose(mm, np.rint(d.astype(np.float32) * 1000), atol=0)
    _, grid = views["/view/front/depth/calibration"][0]
    K = np.array(grid.K).reshape(3, 3)
    model = camera_model()
    assert K[0, 0] == pytest.approx(model.K[0, 0] / 2) and K[0, 2] == pytest.approx(
        (model.K[0, 2] - 0.5) / 2
    )
    _, cloud = views["/view/front/points"][0]
    assert cloud.point_stride == 12 and [f.name for f in cloud.fields] == ["x", "y", "z"]
    assert [f.offset for f in cloud.fields] == [0, 4, 8]
    assert all(f.type == f.FLOAT32 for f in cloud.fields)
    pts = np.frombuffer(cloud.data, "<f4").reshape(-1, 3).astype(np.float64)
    assert len(pts) == np.count_nonzero(d > 0)
    uv, z = model.project_with_depth(pts)  # every point lands on its depth pixel at its depth
    u = (uv[:, 0] - 0.5) / 2
    v = (uv[:, 1] - 0.5) / 2
    np.testing.assert_allclose(u, np.rint(u), atol=1e-3)
    np.testing.assert_allclose(z, d[np.rint(v).astype(int), np.rint(u).astype(int)], rtol=1e-6)


def test_float_depth_option_and_bounded_point_count(tmp_path: Path) -> None:
    builder = ViewBuilder(ViewOptions(depth_encoding="32FC1", point_cloud_max_points=100))
    msgs = drive_messages(1)
    path = tmp_path / "float.mcap"
    with RecordingWriter(path) as writer:
        for _, msg in msgs:
            for view in builder.build(msg):
                write_view(writer, view, msg.stamp_ns)
    views = _decoded(path)
    ((_, raw),) = views["/view/front/depth"]
    depth = next(m for _, m in msgs if isinstance(m, DepthMap)).depth_m
    assert (raw.encoding, raw.step) == ("32FC1", 4 * depth.shape[1])
    np.testing.assert_array_equal(np.frombuffer(raw.data, "<f4").reshape(depth.shape), depth)
    ((_, cloud),) = views["/view/front/points"]
    assert 0 < len(cloud.data) // 12 <= 100


@pytest.mark.parametrize(
    "options",
    [
        ViewOptions(),
        ViewOptions(image=False, annotations=False, point_cloud_max_points=0),
        ViewOptions(scene=False, depth=False, prefix="/live"),
    ],
)
def test_view_types_announce_exactly_the_views_built(options: ViewOptions) -> None:
    """A live server creates its channels from view_types before clients connect, so the
    announced topics and types must be exactly what build() produces for the camera."""
    builder = ViewBuilder(options)
    built: dict[str, type] = {}
    for _, msg in drive_messages(3, camera="rear"):
        for view in builder.build(msg):
            assert built.setdefault(view.topic, type(view.message)) is type(view.message)
    assert built == builder.view_types("rear")


def test_quaternion_from_matrix_matches_scipy() -> None:
    for rot in Rotation.random(200, random_state=3):
        q = quaternion_from_matrix(rot.as_matrix())
        ref = rot.as_quat()
        assert np.allclose(q, ref, atol=1e-9) or np.allclose(q, -ref, atol=1e-9)
    for axis in np.eye(3):  # 180-degree turns: the branches without a positive trace
        rot = Rotation.from_rotvec(np.pi * axis)
        np.testing.assert_allclose(
            Rotation.from_quat(quaternion_from_matrix(rot.as_matrix())).as_matrix(),
            rot.as_matrix(),
            atol=1e-12,
        )
