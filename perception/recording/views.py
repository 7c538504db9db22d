"""Foxglove view channels: bus messages as Foxglove's well-known schemas.

A recording opens in Foxglove with no setup because, beside the lossless channels, it carries:

- `/view/<camera>/image`: foxglove.CompressedImage (JPEG) of each CameraFrame;
- `/view/<camera>/calibration`: foxglove.CameraCalibration of each CameraInfo, and
  `/view/tf`: its foxglove.FrameTransform `vehicle` -> optical frame;
- `/view/<camera>/detections`: foxglove.ImageAnnotations of Detections (box, class, score, depth);
- `/view/<camera>/tracks`: foxglove.ImageAnnotations of TrackedObjects (box, track id, class,
  ground distance, speed), and `/view/<camera>/objects`: a foxglove.SceneUpdate with each track
  as a 3D cube in the vehicle frame;
- `/view/<camera>/depth`: foxglove.RawImage of each DepthMap, 16UC1 (mm) or 32FC1 (m), with
  `/view/<camera>/depth/calibration` (the depth grid's intrinsics) and `/view/<camera>/points`
  (foxglove.PointCloud, x/y/z float32, subsampled) once the camera's calibration is known.

The messages are the official Foxglove SDK's (``foxglove.messages``), serialised as protobuf with
the SDK's own FileDescriptorSets as schemas; :class:`ViewBuilder` returns the SDK objects, so a
live bridge can log them directly and the recorder encodes them into the MCAP file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from foxglove.messages import (
    ArrowPrimitive,
    CameraCalibration,
    Color,
    CompressedImage,
    CubePrimitive,
    FrameTransform,
    ImageAnnotations,
    PackedElementField,
    PackedElementFieldNumericType,
    Point2,
    PointCloud,
    PointsAnnotation,
    PointsAnnotationType,
    Pose,
    Quaternion,
    RawImage,
    SceneEntity,
    SceneEntityDeletion,
    SceneEntityDeletionType,
    SceneUpdate,
    TextAnnotation,
    TextPrimitive,
    Timestamp,
    Vector3,
)

from perception.camera import CameraModel
from perception.errors import UserError
from perception.msgs import (
    CameraFrame,
    CameraInfo,
    DepthMap,
    Detections,
    Message,
    TrackedObjects,
)
from perception.recording.mcap_io import ChannelSpec, RecordingWriter
from perception.recording.style import (
    class_name,
    class_rgb,
    detection_label,
    ground_distance_m,
    track_label,
)

VEHICLE_FRAME = "vehicle"
DEPTH_ENCODINGS = ("16UC1", "32FC1")
# Our pixel centres are at integer coordinates; Foxglove's image annotations put the origin at
# the top-left corner of the top-left pixel.
PIXEL_CORNER_OFFSET = 0.5
# Foxglove calls the fisheye model by its authors' names.
_DISTORTION_NAMES = {"equidistant": "kannala_brandt"}
_WHITE = Color(r=1.0, g=1.0, b=1.0, a=1.0)


@dataclass
class ViewOptions:
    image: bool = True  # camera frames as JPEG CompressedImage
    jpeg_quality: int = 85
    annotations: bool = True  # detections and tracks drawn on the image
    scene: bool = True  # tracks as 3D cubes
    depth: bool = True  # the depth map as a RawImage
    depth_encoding: str = "16UC1"  # 16UC1: millimetres (0 = unknown, clipped at 65.535 m); 32FC1
    point_cloud_max_points: int = 5000  # subsampled depth as a point cloud; 0: none
    prefix: str = "/view"

    def __post_init__(self) -> None:
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise UserError(f"depth encoding must be one of {DEPTH_ENCODINGS}")
        if not 1 <= self.jpeg_quality <= 100:
            raise UserError("JPEG quality must be in 1..100")


@dataclass
class ViewMessage:
    topic: str
    message: Any  # a foxglove.messages object: encode() -> bytes, get_schema()
    stamp_ns: int


_SPECS: dict[tuple[str, type], ChannelSpec] = {}


def view_channel(view: ViewMessage) -> ChannelSpec:
    """The MCAP channel of a view message (protobuf, the SDK's schema)."""
    key = (view.topic, type(view.message))
    spec = _SPECS.get(key)
    if spec is None:
        schema = type(view.message).get_schema()
        spec = ChannelSpec(
            topic=view.topic,
            message_encoding=schema.encoding,
            schema_name=schema.name,
            schema_encoding=schema.encoding,
            schema_data=bytes(schema.data),
        )
        _SPECS[key] = spec
    return spec


def timestamp(stamp_ns: int) -> Timestamp:
    return Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000)


def rgba(rgb: tuple[int, int, int], alpha: float) -> Color:
    return Color(r=rgb[0] / 255, g=rgb[1] / 255, b=rgb[2] / 255, a=alpha)


def quaternion_from_matrix(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a proper 3x3 rotation matrix (Shepperd's method, stable for any angle)."""
    m = np.asarray(rot, np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s
    n = math.sqrt(sum(c * c for c in q))
    x, y, z, w = (c / n for c in q)
    return (x, y, z, w) if w >= 0 else (-x, -y, -z, -w)


def _direction_quaternion(direction: np.ndarray) -> Quaternion:
    """The rotation taking +x onto ``direction`` (for arrows)."""
    d = direction / np.linalg.norm(direction)
    up = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    y = np.cross(up, d)
    y /= np.linalg.norm(y)
    x, y_, z, w = quaternion_from_matrix(np.column_stack([d, y, np.cross(d, y)]))
    return Quaternion(x=x, y=y_, z=z, w=w)


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, np.float64).ravel()]


def _calibration(
    stamp_ns: int, frame_id: str, model: CameraModel, width: int, height: int
) -> CameraCalibration:
    assert model.P is not None
    return CameraCalibration(
        timestamp=timestamp(stamp_ns),
        frame_id=frame_id,
        width=width,
        height=height,
        distortion_model=_DISTORTION_NAMES.get(model.distortion_model, model.distortion_model),
        D=_floats(model.D),
        K=_floats(model.K),
        R=_floats(model.R),
        P=_floats(model.P),
    )


class ViewBuilder:
    """Turns bus messages into view messages; remembers each camera's calibration (needed to
    place the depth map and its point cloud)."""

    def __init__(self, options: ViewOptions | None = None) -> None:
        self.options = options or ViewOptions()
        self.models: dict[str, CameraModel] = {}

    def topic(self, camera: str, name: str) -> str:
        return f"{self.options.prefix}/{camera}/{name}"

    def view_types(self, camera: str) -> dict[str, type]:
        """Every view topic ``build`` can produce for ``camera`` under these options, with its
        message type, so a live server can create the channels before any client connects."""
        o = self.options
        names: list[tuple[str, type]] = [("calibration", CameraCalibration)]
        if o.image:
            names.append(("image", CompressedImage))
        if o.annotations:
            names += [("detections", ImageAnnotations), ("tracks", ImageAnnotations)]
        if o.scene:
            names.append(("objects", SceneUpdate))
        if o.depth:
            names.append(("depth", RawImage))
        names.append(("depth/calibration", CameraCalibration))
        if o.point_cloud_max_points > 0:
            names.append(("points", PointCloud))
        types = {self.topic(camera, name): cls for name, cls in names}
        types[f"{o.prefix}/tf"] = FrameTransform
        return types

    def build(self, msg: Message) -> list[ViewMessage]:
        """The view messages derived from ``msg`` (none for types without a view)."""
        if isinstance(msg, CameraFrame):
            return self._image(msg) if self.options.image else []
        if isinstance(msg, CameraInfo):
            return self._info(msg)
        if isinstance(msg, Detections):
            return self._detections(msg) if self.options.annotations else []
        if isinstance(msg, TrackedObjects):
            return self._tracks(msg)
        if isinstance(msg, DepthMap):
            return self._depth(msg)
        return []

    # -- camera -----------------------------------------------------------------------------
    def _image(self, msg: CameraFrame) -> list[ViewMessage]:
        if msg.encoding == "jpeg":
            data = msg.image.tobytes()
        else:
            image = msg.image
            if msg.encoding == "rgb8":
                image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(
                ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality]
            )
            if not ok:
                raise ValueError("JPEG encoding of the frame failed")
            data = buf.tobytes()
        image_msg = CompressedImage(
            timestamp=timestamp(msg.stamp_ns), frame_id=msg.frame_id, data=data, format="jpeg"
        )
        return [ViewMessage(self.topic(msg.camera, "image"), image_msg, msg.stamp_ns)]

    def _info(self, msg: CameraInfo) -> list[ViewMessage]:
        try:
            model = CameraModel.from_msg(msg)
        except UserError:
            return []  # a calibration the camera model rejects has no sensible view
        self.models[msg.camera] = model
        calib = _calibration(msg.stamp_ns, msg.frame_id, model, msg.width, msg.height)
        T = msg.T_vehicle_camera
        qx, qy, qz, qw = quaternion_from_matrix(T[:3, :3])
        tf = FrameTransform(
            timestamp=timestamp(msg.stamp_ns),
            parent_frame_id=VEHICLE_FRAME,
            child_frame_id=msg.frame_id,
            translation=Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=Quaternion(x=qx, y=qy, z=qz, w=qw),
        )
        return [
            ViewMessage(self.topic(msg.camera, "calibration"), calib, msg.stamp_ns),
            ViewMessage(f"{self.options.prefix}/tf", tf, msg.stamp_ns),
        ]

    # -- objects ----------------------------------------------------------------------------
    def _box_annotations(
        self,
        stamp_ns: int,
        boxes_xyxy: np.ndarray,
        class_ids: np.ndarray,
        labels: list[str],
        thickness: float,
    ) -> ImageAnnotations:
        ts = timestamp(stamp_ns)
        points, texts = [], []
        corners = np.asarray(boxes_xyxy, np.float64) + PIXEL_CORNER_OFFSET
        for (x1, y1, x2, y2), cid, label in zip(corners, class_ids, labels, strict=True):
            rgb = class_rgb(int(cid))
            points.append(
                PointsAnnotation(
                    timestamp=ts,
                    type=PointsAnnotationType.LineLoop,
                    points=[
                        Point2(x=float(x1), y=float(y1)),
                        Point2(x=float(x2), y=float(y1)),
                        Point2(x=float(x2), y=float(y2)),
                        Point2(x=float(x1), y=float(y2)),
                    ],
                    outline_color=rgba(rgb, 1.0),
                    thickness=thickness,
                )
            )
            texts.append(
                TextAnnotation(
                    timestamp=ts,
                    position=Point2(x=float(x1), y=float(max(y1 - 2.0, 12.0))),
                    text=label,
                    font_size=12.0,
                    text_color=_WHITE,
                    background_color=rgba(rgb, 0.7),
                )
            )
        return ImageAnnotations(timestamp=ts, points=points, texts=texts)

    def _detections(self, msg: Detections) -> list[ViewMessage]:
        labels = [
            detection_label(class_name(msg.class_names, int(c)), float(s), float(d))
            for c, s, d in zip(msg.class_ids, msg.scores, msg.depth_m, strict=True)
        ]
        ann = self._box_annotations(msg.stamp_ns, msg.boxes_xyxy, msg.class_ids, labels, 1.0)
        return [ViewMessage(self.topic(msg.camera, "detections"), ann, msg.stamp_ns)]

    def _tracks(self, msg: TrackedObjects) -> list[ViewMessage]:
        out = []
        speeds = np.linalg.norm(msg.velocity_mps.astype(np.float64), axis=1)
        names = [class_name(msg.class_names, int(c)) for c in msg.class_ids]
        if self.options.annotations:
            labels = [
                track_label(int(i), n, ground_distance_m(p), float(s))
                for i, n, p, s in zip(msg.ids, names, msg.position_m, speeds, strict=True)
            ]
            ann = self._box_annotations(msg.stamp_ns, msg.boxes_xyxy, msg.class_ids, labels, 2.0)
            out.append(ViewMessage(self.topic(msg.camera, "tracks"), ann, msg.stamp_ns))
        if self.options.scene:
            out.append(
                ViewMessage(
                    self.topic(msg.camera, "objects"), self._scene(msg, names, speeds), msg.stamp_ns
                )
            )
        return out

    def _scene(self, msg: TrackedObjects, names: list[str], speeds: np.ndarray) -> SceneUpdate:
        """One cube per track, centred on its position; the footprint is square (the tracker
        gives width and height only), with an arrow for the velocity and a label above."""
        ts = timestamp(msg.stamp_ns)
        confirmed = msg.state_names.index("confirmed") if "confirmed" in msg.state_names else -1
        entities = []
        for k in range(len(msg.ids)):
            x, y, z = (float(v) for v in msg.position_m[k])
            width, height = (max(float(v), 0.1) for v in msg.size_m[k])
            rgb = class_rgb(int(msg.class_ids[k]))
            alpha = 0.6 if int(msg.states[k]) == confirmed else 0.25
            centre = Vector3(x=x, y=y, z=z)
            identity = Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
            arrows = []
            if speeds[k] > 0.1:
                arrows.append(
                    ArrowPrimitive(
                        pose=Pose(
                            position=centre,
                            orientation=_direction_quaternion(msg.velocity_mps[k].astype(float)),
                        ),
                        shaft_length=float(speeds[k]),  # where the object will be in 1 s
                        shaft_diameter=0.1,
                        head_length=0.3,
                        head_diameter=0.3,
                        color=rgba(rgb, 1.0),
                    )
                )
            label = track_label(
                int(msg.ids[k]), names[k], ground_distance_m(msg.position_m[k]), float(speeds[k])
            )
            entities.append(
                SceneEntity(
                    timestamp=ts,
                    frame_id=VEHICLE_FRAME,
                    id=f"track-{int(msg.ids[k])}",
                    frame_locked=False,
                    cubes=[
                        CubePrimitive(
                            pose=Pose(position=centre, orientation=identity),
                            size=Vector3(x=width, y=width, z=height),
                            color=rgba(rgb, alpha),
                        )
                    ],
                    arrows=arrows,
                    texts=[
                        TextPrimitive(
                            pose=Pose(
                                position=Vector3(x=x, y=y, z=z + height / 2 + 0.5),
                                orientation=identity,
                            ),
                            billboard=True,
                            font_size=14.0,
                            scale_invariant=True,
                            color=_WHITE,
                            text=label,
                        )
                    ],
                )
            )
        deletions = [SceneEntityDeletion(timestamp=ts, type=SceneEntityDeletionType.All)]
        return SceneUpdate(deletions=deletions, entities=entities)

    # -- depth ------------------------------------------------------------------------------
    def _depth(self, msg: DepthMap) -> list[ViewMessage]:
        out = []
        depth = msg.depth_m.astype(np.float32)
        h, w = depth.shape
        ts = timestamp(msg.stamp_ns)
        if self.options.depth:
            if self.options.depth_encoding == "16UC1":
                data = np.clip(np.rint(depth * 1000.0), 0, 65535).astype("<u2").tobytes()
                step = w * 2
            else:
                data = depth.astype("<f4").tobytes()
                step = w * 4
            image = RawImage(
                timestamp=ts,
                frame_id=msg.frame_id,
                width=w,
                height=h,
                encoding=self.options.depth_encoding,
                step=step,
                data=data,
            )
            out.append(ViewMessage(self.topic(msg.camera, "depth"), image, msg.stamp_ns))
        model = self.models.get(msg.camera)
        if model is None:
            return out  # no calibration yet: the depth cannot be placed in space
        grid = self._depth_grid_model(model, msg, w, h)
        out.append(
            ViewMessage(
                self.topic(msg.camera, "depth/calibration"),
                _calibration(msg.stamp_ns, msg.frame_id, grid, w, h),
                msg.stamp_ns,
            )
        )
        if self.options.point_cloud_max_points > 0:
            out.append(
                ViewMessage(
                    self.topic(msg.camera, "points"), self._points(msg, depth, model), msg.stamp_ns
                )
            )
        return out

    @staticmethod
    def _depth_grid_model(model: CameraModel, msg: DepthMap, w: int, h: int) -> CameraModel:
        """The camera model of the depth grid: source pixel x = scale_x * u + offset_x, so the
        intrinsics scale and shift while the (normalised) distortion stays the same."""
        sx, sy, ox, oy = msg.scale_x, msg.scale_y, msg.offset_x, msg.offset_y
        A = np.array([[1 / sx, 0, -ox / sx], [0, 1 / sy, -oy / sy], [0, 0, 1]])
        assert model.P is not None
        return CameraModel(
            name=model.name,
            width=w,
            height=h,
            K=A @ model.K,
            D=model.D,
            distortion_model=model.distortion_model,
            R=model.R,
            P=A @ model.P,
            T_vehicle_camera=model.T_vehicle_camera,
            frame_id=model.frame_id,
        )

    def _points(self, msg: DepthMap, depth: np.ndarray, model: CameraModel) -> PointCloud:
        h, w = depth.shape
        step = max(1, math.ceil(math.sqrt(h * w / self.options.point_cloud_max_points)))
        vv, uu = np.mgrid[0:h:step, 0:w:step]
        z = depth[vv, uu]
        keep = np.isfinite(z) & (z > 0)
        uv = np.column_stack(
            [
                msg.scale_x * uu[keep] + msg.offset_x,
                msg.scale_y * vv[keep] + msg.offset_y,
            ]
        )
        points = model.backproject(uv, z[keep]).astype("<f4")
        fields = [
            PackedElementField(name=name, offset=4 * i, type=PackedElementFieldNumericType.Float32)
            for i, name in enumerate("xyz")
        ]
        return PointCloud(
            timestamp=timestamp(msg.stamp_ns),
            frame_id=msg.frame_id,
            pose=Pose(
                position=Vector3(x=0.0, y=0.0, z=0.0),
                orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            point_stride=12,
            fields=fields,
            data=points.tobytes(),
        )


def write_view(writer: RecordingWriter, view: ViewMessage, log_time_ns: int) -> None:
    """Encode ``view`` (protobuf) into its channel of ``writer``; publish time = its stamp."""
    writer.write(view_channel(view), view.message.encode(), log_time_ns, view.stamp_ns)
