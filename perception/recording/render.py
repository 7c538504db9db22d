"""A review video of a recording: each frame with its detections and tracks drawn on it, and its
depth map as a colour image beside it.

Detections, tracks and depth belong to the frame with the same ``stamp_ns``. They are received
after their frame, so frames wait in a short window (``window_s`` of receive time) for them; a
frame is drawn with whatever arrived. Detections are thin boxes labelled class, score and depth;
tracks are thick boxes labelled id, class, ground distance and speed (the colours and texts of
the Foxglove views). The depth panel maps the depth grid onto the image's pixels exactly
(``scale``/``offset``) on a log scale: near is warm, far is cool, unknown is black.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.errors import UserError
from perception.msgs import CameraFrame, DepthMap, Detections, Message, TrackedObjects
from perception.recording.mcap_io import RecordDecodeError, RecordedMessage, RecordingReader
from perception.recording.style import (
    class_bgr,
    class_name,
    detection_label,
    ground_distance_m,
    track_label,
)

RENDERED_TOPICS = (
    "camera/frames",
    "perception/detections",
    "perception/tracks",
    "perception/depth",
)
MIN_DEPTH_M = 0.5


@dataclass
class RenderOptions:
    camera: str = ""  # which camera; default: the first one seen
    fps: float = 0.0  # 0: the frames' own rate
    depth: bool = True  # the depth panel beside the frame
    max_depth_m: float = 80.0  # the far end of the colour scale
    window_s: float = 2.0  # how long (receive time) a frame waits for its results
    max_frames: int = 0  # 0: all

    def __post_init__(self) -> None:
        if self.max_depth_m <= MIN_DEPTH_M or self.window_s < 0 or self.fps < 0:
            raise UserError(f"max depth must exceed {MIN_DEPTH_M} m; window and fps >= 0")


@dataclass
class RenderResult:
    path: Path
    frames: int
    width: int
    height: int
    fps: float
    codec: str


@dataclass
class _Bundle:
    """A frame and the results that share its stamp."""

    first_log_ns: int
    frame: CameraFrame | None = None
    detections: Detections | None = None
    tracks: TrackedObjects | None = None
    depth: DepthMap | None = None


def frame_bgr(msg: CameraFrame) -> np.ndarray:
    """The frame as a BGR image whatever its encoding."""
    if msg.encoding == "jpeg":
        image = cv2.imdecode(np.asarray(msg.image), cv2.IMREAD_COLOR)
        if image is None:
            raise UserError("a JPEG frame of the recording does not decode")
        return image
    if msg.encoding == "rgb8":
        return cv2.cvtColor(msg.image, cv2.COLOR_RGB2BGR)
    if msg.encoding == "mono8":
        return cv2.cvtColor(msg.image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(msg.image).copy()


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    y = max(y, th + base + 1)
    cv2.rectangle(image, (x, y - th - base - 1), (x + tw + 2, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 1, y - base), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def draw_detections(image: np.ndarray, det: Detections) -> None:
    for box, cid, score, depth in zip(
        det.boxes_xyxy, det.class_ids, det.scores, det.depth_m, strict=True
    ):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        colour = class_bgr(int(cid))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1)
        name = class_name(det.class_names, int(cid))
        _label(image, detection_label(name, float(score), float(depth)), x1, y2 + 12, colour)


def draw_tracks(image: np.ndarray, tracks: TrackedObjects) -> None:
    speeds = np.linalg.norm(tracks.velocity_mps.astype(np.float64), axis=1)
    for k in range(len(tracks.ids)):
        x1, y1, x2, y2 = (round(float(v)) for v in tracks.boxes_xyxy[k])
        colour = class_bgr(int(tracks.class_ids[k]))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        text = track_label(
            int(tracks.ids[k]),
            class_name(tracks.class_names, int(tracks.class_ids[k])),
            ground_distance_m(tracks.position_m[k]),
            float(speeds[k]),
        )
        _label(image, text, x1, y1 - 2, colour)


def depth_panel(depth: DepthMap | None, width: int, height: int, max_depth_m: float) -> np.ndarray:
    """The depth map as a colour image on the frame's pixel grid (black where unknown)."""
    if depth is None:
        blank = np.zeros((height, width, 3), np.uint8)
        _label(blank, "no depth", 4, 16, (64, 64, 64))
        return blank
    d = depth.depth_m.astype(np.float32)
    known = d > 0
    # log depth spreads the near range, where the detail matters; near is warm (high)
    lo, hi = np.log(MIN_DEPTH_M), np.log(max_depth_m)
    inv = (hi - np.log(np.clip(d, MIN_DEPTH_M, max_depth_m))) / (hi - lo)
    grey = np.clip(inv * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)
    colour[~known] = 0
    # source pixel x = scale_x * u + offset_x: sample the depth grid at each frame pixel
    to_grid = np.array(
        [
            [1.0 / depth.scale_x, 0.0, -depth.offset_x / depth.scale_x],
            [0.0, 1.0 / depth.scale_y, -depth.offset_y / depth.scale_y],
        ]
    )
    panel: np.ndarray = cv2.warpAffine(
        colour,
        to_grid,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    _label(panel, f"depth {MIN_DEPTH_M:g}-{max_depth_m:g} m", 4, 16, (64, 64, 64))
    return panel


def compose(bundle: _Bundle, options: RenderOptions) -> np.ndarray:
    assert bundle.frame is not None
    image = frame_bgr(bundle.frame)
    if bundle.detections is not None:
        draw_detections(image, bundle.detections)
    if bundle.tracks is not None:
        draw_tracks(image, bundle.tracks)
    if not options.depth:
        return image
    h, w = image.shape[:2]
    return np.hstack([image, depth_panel(bundle.depth, w, h, options.max_depth_m)])


class _VideoOut:
    """cv2.VideoWriter opened on the first image: mp4v, else MJPG in an .avi beside it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None
        self.size = (0, 0)
        self.codec = ""
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            self._open(image.shape[1], image.shape[0])
        assert self.writer is not None
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        for codec, path in (("mp4v", self.path), ("MJPG", self.path.with_suffix(".avi"))):
            fourcc = cv2.VideoWriter.fourcc(*codec)
            writer = cv2.VideoWriter(str(path), fourcc, self.fps, self.size)
            if writer.isOpened():
                self.writer, self.codec, self.path = writer, codec, path
                return
            writer.release()
        raise UserError(f"OpenCV cannot write a video to {self.path} (tried mp4v and MJPG)")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _decode(rec: RecordedMessage) -> Message | None:
    try:
        return rec.decode()
    except RecordDecodeError:
        return None  # a corrupt record is skipped; the rest of the review is still useful


def _frame_rate(stamps: list[int]) -> float:
    if len(stamps) < 2:
        return 10.0
    periods = np.diff(np.asarray(sorted(stamps), np.int64))
    periods = periods[periods > 0]
    return 1e9 / float(np.median(periods)) if len(periods) else 10.0


def render(
    path: str | Path, output: str | Path, options: RenderOptions | None = None
) -> RenderResult:
    """Draw the recording's frames with their results into a video file."""
    options = options or RenderOptions()
    reader = RecordingReader(path)
    keys = {c.topic for c in reader.channels() if c.lossless and c.bus_topic in RENDERED_TOPICS}
    if not any(k.split("@")[0] == "camera/frames" for k in keys):
        raise UserError(f"{reader.path} holds no camera frames to render")
    out: _VideoOut | None = None
    camera = options.camera
    pending: dict[int, _Bundle] = {}
    window_ns = int(options.window_s * 1e9)

    def flush(now_ns: int | None) -> bool:
        """Draw the bundles whose window closed (all when ``now_ns`` is None); False: stop."""
        nonlocal out
        due = sorted(
            s for s, b in pending.items() if now_ns is None or now_ns - b.first_log_ns > window_ns
        )
        for stamp in due:
            bundle = pending.pop(stamp)
            if bundle.frame is None:
                continue
            if out is None:
                frame_stamps = [s for s, b in pending.items() if b.frame is not None] + [stamp]
                out = _VideoOut(Path(output), options.fps or _frame_rate(frame_stamps))
            out.write(compose(bundle, options))
            if options.max_frames and out.frames >= options.max_frames:
                return False
        return True

    try:
        for rec in reader.messages(keys):
            msg = _decode(rec)
            if msg is None:
                continue
            if not camera and isinstance(msg, CameraFrame):
                camera = msg.camera
            if getattr(msg, "camera", None) != camera:
                continue
            bundle = pending.setdefault(msg.stamp_ns, _Bundle(rec.log_time_ns))
            if isinstance(msg, CameraFrame):
                bundle.frame = msg
            elif isinstance(msg, Detections):
                bundle.detections = msg
            elif isinstance(msg, TrackedObjects):
                bundle.tracks = msg
            elif isinstance(msg, DepthMap):
                bundle.depth = msg
            if not flush(rec.log_time_ns):
                break
        else:
            flush(None)
    finally:
        if out is not None:
            out.close()
    if out is None or out.frames == 0:
        raise UserError(f"{reader.path} holds no frames of camera {camera!r}")
    return RenderResult(out.path, out.frames, out.size[0], out.size[1], out.fps, out.codec)
