"""Every message type on the bus, in one file, each with its schema version.

A message is a dataclass. Its fields are either small values (int, float, str, bool, lists and
maps of those), which travel in the MessagePack header, or numpy arrays declared with
:func:`array`, which travel as raw little-endian buffers after the header. The codec
(`perception.bus.codec`) reads these declarations; nothing else describes the wire format.

Conventions (docs/PROTOCOL.md): SI units, boxes as ``xyxy`` float pixels of the original image,
the camera optical frame is x right / y down / z forward, the vehicle frame x forward / y left /
z up (REP-103). ``stamp_ns`` is the capture time of the source frame, copied unchanged into every
message derived from it; ``mono_ns`` is the sender's ``time.monotonic_ns()`` at send.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# Wire dtype names (all little-endian, C order). Kept to the few a C++ reader must handle.
WIRE_DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint32": np.dtype("<u4"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}


@dataclass(frozen=True)
class ArraySpec:
    """What an array field may hold: its dtype, allowed shapes, and whether values must be finite.

    ``shapes`` lists allowed shape patterns; in a pattern ``None`` is any length and a string
    names a length that must agree across the message's fields (e.g. ``"N"`` objects).
    """

    dtype: str
    shapes: tuple[tuple[int | str | None, ...], ...]
    finite: bool = False


def array(
    dtype: str, *shapes: tuple[int | str | None, ...], finite: bool = False, doc: str = ""
) -> Any:
    """Declare an array field (travels as a raw buffer)."""
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"unsupported wire dtype {dtype!r}")
    spec = ArraySpec(dtype, tuple(shapes), finite)
    empty_shape = tuple(0 if not isinstance(d, int) else d for d in shapes[0])
    return field(
        default_factory=lambda: np.zeros(empty_shape, WIRE_DTYPES[dtype]),
        metadata={"array": spec, "doc": doc},
    )


def value(default: Any, doc: str = "", *, finite: bool = True) -> Any:
    """Declare a small field (travels in the header)."""
    if isinstance(default, (list, dict)):
        return field(
            default_factory=lambda: type(default)(default),
            metadata={"doc": doc, "finite": finite},
        )
    return field(default=default, metadata={"doc": doc, "finite": finite})


class InvalidMessage(ValueError):
    """A message whose fields disagree with each other or with their declared ranges."""

    reason = "invalid_field"


@dataclass(kw_only=True)
class Message:
    """The envelope every message carries (DESIGN.md, 'Time')."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 0

    seq: int = value(0, "publisher's sequence number, +1 per message on this topic")
    stamp_ns: int = value(0, "capture time of the source frame, ns")
    mono_ns: int = value(0, "sender's time.monotonic_ns() at send")
    frame_id: str = value("", "coordinate frame / source the message refers to")
    valid: bool = value(True, "false when the sender's inputs were unhealthy")

    def check(self) -> None:
        """Cross-field checks beyond per-field types; raises :class:`InvalidMessage`."""

    # -- helpers used by check() ------------------------------------------------------------
    def _require(self, condition: bool, what: str) -> None:
        """Raise unless ``condition``; ``what`` must be a plain string (checks run for every
        message, so a message that needs formatting is built only on failure, by the caller)."""
        if not condition:
            raise InvalidMessage(f"{self.TYPE}: {what}")


def _within(values: np.ndarray, low: float, high: float) -> bool:
    """Every value in [low, high] (NaN is not). Two ufunc reductions: ``np.all`` over a
    comparison costs several times more when run cold, as each message's checks are."""
    values = np.asarray(values)  # a sender may still hold plain lists
    if values.size == 0:
        return True
    return bool(np.minimum.reduce(values, axis=None) >= low) and bool(
        np.maximum.reduce(values, axis=None) <= high
    )


ENCODINGS = ("bgr8", "rgb8", "mono8", "jpeg")


@dataclass(kw_only=True)
class CameraFrame(Message):
    """One image from a camera, as captured."""

    TYPE: ClassVar[str] = "CameraFrame"
    VERSION: ClassVar[int] = 1

    camera: str = value("camera", "camera name, e.g. 'front'")
    encoding: str = value("bgr8", "bgr8 | rgb8 | mono8 | jpeg")
    width: int = value(0, "image width in pixels")
    height: int = value(0, "image height in pixels")
    image: np.ndarray = array(
        "uint8",
        (None, None, 3),
        (None, None),
        (None,),
        doc="HxWx3 for bgr8/rgb8, HxW for mono8, compressed bytes for jpeg",
    )

    def check(self) -> None:
        if self.encoding not in ENCODINGS:
            self._require(False, f"encoding {self.encoding!r} not in {ENCODINGS}")
        self._require(self.width > 0 and self.height > 0, "width and height must be positive")
        if self.encoding == "jpeg":
            self._require(self.image.ndim == 1, "jpeg image must be a 1-D byte array")
            return
        channels = 1 if self.encoding == "mono8" else 3
        expected = (self.height, self.width) if channels == 1 else (self.height, self.width, 3)
        if self.image.shape != expected:
            self._require(
                False, f"image shape {self.image.shape} does not match {self.encoding} {expected}"
            )


@dataclass(kw_only=True)
class CameraInfo(Message):
    """Calibration of one camera: intrinsics, distortion, and its mounting on the vehicle."""

    TYPE: ClassVar[str] = "CameraInfo"
    VERSION: ClassVar[int] = 1

    camera: str = value("camera", "camera name")
    width: int = value(0, "calibrated image width")
    height: int = value(0, "calibrated image height")
    distortion_model: str = value("plumb_bob", "plumb_bob | rational_polynomial | equidistant")
    K: np.ndarray = array("float64", (3, 3), finite=True, doc="camera matrix")
    D: np.ndarray = array("float64", (None,), finite=True, doc="distortion coefficients")
    R: np.ndarray = array("float64", (3, 3), finite=True, doc="rectification rotation")
    P: np.ndarray = array("float64", (3, 4), finite=True, doc="projection matrix")
    T_vehicle_camera: np.ndarray = array(
        "float64", (4, 4), finite=True, doc="pose of the optical frame in the vehicle frame"
    )

    def check(self) -> None:
        self._require(self.width > 0 and self.height > 0, "width and height must be positive")
        self._require(self.K[0, 0] > 0 and self.K[1, 1] > 0, "focal lengths must be positive")


@dataclass(kw_only=True)
class Detections(Message):
    """2D detections of one frame, with the depth of each object."""

    TYPE: ClassVar[str] = "Detections"
    VERSION: ClassVar[int] = 1

    camera: str = value("camera", "camera name")
    image_width: int = value(0, "width of the source image the boxes refer to")
    image_height: int = value(0, "height of the source image the boxes refer to")
    class_names: list[str] = value([], "label set; class_ids index into it")
    boxes_xyxy: np.ndarray = array("float32", ("N", 4), finite=True, doc="pixels of the source")
    scores: np.ndarray = array("float32", ("N",), finite=True, doc="confidence in [0, 1]")
    class_ids: np.ndarray = array("int32", ("N",), doc="index into class_names")
    depth_m: np.ndarray = array("float32", ("N",), finite=True, doc="object depth along z, m")

    def check(self) -> None:
        self._require(
            _within(self.class_ids, 0, len(self.class_names) - 1),
            "class_ids out of range of class_names",
        )
        self._require(_within(self.scores, 0.0, 1.0), "scores outside [0, 1]")
        self._require(_within(self.depth_m, 0.0, np.inf), "negative depth")


@dataclass(kw_only=True)
class DepthMap(Message):
    """Dense metric depth (z along the optical axis, metres) for one frame.

    Depth pixel (u, v) maps to source-image pixel (x, y) = (scale_x*u + offset_x,
    scale_y*v + offset_y), pixel centres at integer coordinates. 0 marks no depth.
    """

    TYPE: ClassVar[str] = "DepthMap"
    VERSION: ClassVar[int] = 1

    camera: str = value("camera", "camera name")
    image_width: int = value(0, "width of the source image")
    image_height: int = value(0, "height of the source image")
    scale_x: float = value(1.0, "source pixels per depth pixel, x")
    scale_y: float = value(1.0, "source pixels per depth pixel, y")
    offset_x: float = value(0.0, "source x of depth column 0")
    offset_y: float = value(0.0, "source y of depth row 0")
    depth_m: np.ndarray = array("float16", (None, None), finite=True, doc="metres, 0 = unknown")

    def check(self) -> None:
        self._require(self.scale_x > 0 and self.scale_y > 0, "scales must be positive")


TRACK_STATES = ("tentative", "confirmed", "lost")


@dataclass(kw_only=True)
class TrackedObjects(Message):
    """Tracked objects of one frame, in the vehicle frame (x forward, y left, z up)."""

    TYPE: ClassVar[str] = "TrackedObjects"
    VERSION: ClassVar[int] = 1

    camera: str = value("camera", "camera name")
    class_names: list[str] = value([], "label set; class_ids index into it")
    state_names: list[str] = value(list(TRACK_STATES), "names of the state codes")
    ids: np.ndarray = array("int64", ("N",), doc="stable track id")
    class_ids: np.ndarray = array("int32", ("N",), doc="index into class_names (by vote)")
    scores: np.ndarray = array("float32", ("N",), finite=True, doc="latest detection score")
    boxes_xyxy: np.ndarray = array("float32", ("N", 4), finite=True, doc="filtered image box")
    position_m: np.ndarray = array("float32", ("N", 3), finite=True, doc="vehicle frame")
    velocity_mps: np.ndarray = array("float32", ("N", 3), finite=True, doc="vehicle frame")
    covariance: np.ndarray = array(
        "float32", ("N", 6, 6), finite=True, doc="of [x, y, z, vx, vy, vz]"
    )
    size_m: np.ndarray = array("float32", ("N", 2), finite=True, doc="metric width, height")
    age_s: np.ndarray = array("float32", ("N",), finite=True, doc="time since the track began")
    states: np.ndarray = array("uint8", ("N",), doc="index into state_names")

    def check(self) -> None:
        self._require(
            _within(self.class_ids, 0, len(self.class_names) - 1),
            "class_ids out of range of class_names",
        )
        self._require(
            _within(self.states, 0, len(self.state_names) - 1), "states out of range of state_names"
        )


@dataclass(kw_only=True)
class NodeStatus(Message):
    """A node's health report, published at 1 Hz."""

    TYPE: ClassVar[str] = "NodeStatus"
    VERSION: ClassVar[int] = 1

    node: str = value("", "node name")
    pid: int = value(0, "process id")
    uptime_s: float = value(0.0, "seconds since start")
    state: str = value("ok", "ok | degraded | error | stopped (its last status)")
    message: str = value("", "human-readable detail of the state")
    inputs: dict[str, Any] = value(
        {},
        "per input topic: rate_hz, alive, rate_ok, upstream_valid, received, dropped, "
        "stale_dropped, rejected, rejected_by_reason, transit_ms (median send -> arrival, "
        "same host only, else null), links (per publisher: inproc, ipc or tcp)",
    )
    outputs: dict[str, Any] = value({}, "per output topic: rate_hz, published")
    stages_ms: dict[str, Any] = value({}, "per stage: median and p99 latency over the period")
    counters: dict[str, Any] = value({}, "named event counts, e.g. rejects by reason")


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (CameraFrame, CameraInfo, Detections, DepthMap, TrackedObjects, NodeStatus)
}


_ARRAY_FIELDS: dict[type[Message], list[tuple[str, ArraySpec]]] = {}
_VALUE_FIELDS: dict[type[Message], list[dataclasses.Field[Any]]] = {}


def array_fields(cls: type[Message]) -> list[tuple[str, ArraySpec]]:
    """The buffer-carrying fields of a message type, in declaration (= wire) order."""
    if cls not in _ARRAY_FIELDS:  # cached: the codec asks for every message
        _ARRAY_FIELDS[cls] = [
            (f.name, f.metadata["array"]) for f in dataclasses.fields(cls) if "array" in f.metadata
        ]
    return _ARRAY_FIELDS[cls]


def value_fields(cls: type[Message]) -> list[dataclasses.Field[Any]]:
    """The header-carried fields of a message type (envelope included)."""
    if cls not in _VALUE_FIELDS:
        _VALUE_FIELDS[cls] = [f for f in dataclasses.fields(cls) if "array" not in f.metadata]
    return _VALUE_FIELDS[cls]


def is_finite_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
