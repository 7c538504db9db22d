"""Importers: a video file, an image folder or a ROS bag becomes a drive recording.

The result holds the same lossless channels the recorder writes (``camera/frames`` and, with a
calibration, ``camera/info`` once a second of drive time), plus the Foxglove view channels, so
`perception play drive.mcap` replays it like a recorded drive. Log time and publish time are the
frame's stamp; ``seq`` counts from 0 and ``mono_ns`` is 0, so importing the same source twice gives
the same messages.

Sources:

- a video file (anything OpenCV decodes), paced at its own frame rate or ``fps``;
- an image folder: sorted images with a ``timestamps.txt`` beside them or one level up (KITTI raw
  ``image_02/data`` + ``image_02/timestamps.txt``, a synthetic drive's ``image_2`` +
  ``timestamps.txt``), or any sorted folder plus ``fps``; given a drive folder without images,
  its single image sub-folder is used. A ``camera.yaml`` next to the images (up to two levels
  up) is used as the calibration unless one is given;
- a ROS 1 bag (``.bag``) or a ROS 2 bag (its folder, or its ``metadata.yaml``/``.db3``/``.mcap``)
  with ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` and optionally
  ``sensor_msgs/CameraInfo``, read with the pure-Python ``rosbags`` package.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.bus.codec import CodecError, encode
from perception.camera import CameraModel
from perception.errors import UserError
from perception.msgs import CameraFrame, CameraInfo, Message
from perception.recording.mcap_io import (
    RecordingReader,
    RecordingWriter,
    WriterOptions,
    is_recording,
)
from perception.recording.views import ViewBuilder, write_view
from perception.sources import (
    IMAGE_SUFFIXES,
    ImageFolderSource,
    SourceError,
    SourceFrame,
    VideoFileSource,
)

log = logging.getLogger("import")

ENCODINGS = ("bgr8", "jpeg")
CALIBRATION_NAMES = ("camera.yaml",)
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
# A forward-looking camera at the vehicle origin: optical z -> vehicle x, x -> -y, y -> -z.
FORWARD_CAMERA = np.array(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


@dataclass
class ImportOptions:
    fps: float = 0.0  # video/folder rate; 0: the video's own, the timestamps file, else 10
    camera: str = ""  # camera name; default: the calibration's name, else 'front'
    calibration: str = ""  # ROS camera_info YAML / OpenCV file; overrides a bag's CameraInfo
    encoding: str = "bgr8"  # bgr8 (lossless) | jpeg (compact; JPEG input passes through)
    jpeg_quality: int = 90
    start_time_s: float | None = None  # stamp of the first frame, s since the epoch
    image_topic: str = ""  # bags: which image topic (needed when there are several)
    info_topic: str = ""  # bags: which CameraInfo topic
    max_frames: int = 0  # 0: all
    views: bool = True
    overwrite: bool = False
    info_period_s: float = 1.0  # camera/info every this much drive time

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise UserError(f"encoding must be one of {ENCODINGS}, not {self.encoding!r}")
        if self.fps < 0 or self.max_frames < 0:
            raise UserError("fps and max frames must be >= 0")


@dataclass
class ImportResult:
    kind: str
    files: list[Path]
    frames: int = 0
    infos: int = 0
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0
    notes: list[str] = field(default_factory=list)


class DriveWriter:
    """Writes camera frames and calibrations as the camera node would publish them."""

    def __init__(self, output: str | Path, options: ImportOptions, source: str) -> None:
        self.options = options
        self.writer = RecordingWriter(
            output,
            WriterOptions(overwrite=options.overwrite),
            metadata={"imported_from": source},
        )
        self.views = ViewBuilder() if options.views else None
        self.frames = 0
        self.infos = 0
        self.first_stamp_ns = 0
        self.last_stamp_ns = 0
        self._last_info_ns: int | None = None
        self._last_info: CameraInfo | None = None

    def _write(self, topic: str, msg: Message, seq: int) -> None:
        msg.seq, msg.mono_ns = seq, 0
        try:
            frames = encode(topic, msg)
        except CodecError as exc:
            raise UserError(f"cannot import a {msg.TYPE}: {exc}") from None
        self.writer.write_frames(topic, frames[1:], msg.stamp_ns, msg.stamp_ns, seq)
        if self.views is not None:
            for view in self.views.build(msg):
                write_view(self.writer, view, msg.stamp_ns)

    def info(self, info: CameraInfo, stamp_ns: int) -> None:
        """Write ``info`` at ``stamp_ns`` if one is due (a period passed, or it changed)."""
        changed = self._last_info is None or not _same_calibration(self._last_info, info)
        due = self._last_info_ns is None or (
            stamp_ns - self._last_info_ns >= self.options.info_period_s * 1e9
        )
        if not (changed or due):
            return
        info.stamp_ns = stamp_ns
        self._write("camera/info", info, self.infos)
        self.infos += 1
        self._last_info_ns, self._last_info = stamp_ns, info

    def frame(self, msg: CameraFrame) -> None:
        self._write("camera/frames", msg, self.frames)
        if self.frames == 0:
            self.first_stamp_ns = msg.stamp_ns
        self.last_stamp_ns = msg.stamp_ns
        self.frames += 1

    def close(self) -> list[Path]:
        return self.writer.close()


def _same_calibration(a: CameraInfo, b: CameraInfo) -> bool:
    return (a.camera, a.width, a.height, a.distortion_model, a.frame_id) == (
        b.camera,
        b.width,
        b.height,
        b.distortion_model,
        b.frame_id,
    ) and all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("K", "D", "R", "P", "T_vehicle_camera")
    )


def make_frame(
    image: np.ndarray, stamp_ns: int, camera: str, frame_id: str, options: ImportOptions
) -> CameraFrame:
    """A CameraFrame of a decoded image (BGR or mono), JPEG-encoded when asked."""
    h, w = image.shape[:2]
    encoding = "mono8" if image.ndim == 2 else "bgr8"
    data = np.ascontiguousarray(image)
    if options.encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality])
        if not ok:
            raise UserError("JPEG encoding of a frame failed")
        data, encoding = buf.reshape(-1), "jpeg"
    return CameraFrame(
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        camera=camera,
        encoding=encoding,
        width=w,
        height=h,
        image=data,
    )


# -- the camera of a source ---------------------------------------------------------------------
@dataclass
class CameraSetup:
    name: str
    frame_id: str
    model: CameraModel | None


def camera_setup(options: ImportOptions, calibration: Path | None) -> CameraSetup:
    model = CameraModel.load(calibration) if calibration else None
    name = options.camera or (model.name if model else "") or "front"
    if model is not None:
        model.name = name
        return CameraSetup(name, model.frame_id, model)
    return CameraSetup(name, f"{name}_optical", None)


def _find_calibration(options: ImportOptions, folder: Path) -> Path | None:
    if options.calibration:
        return Path(options.calibration).expanduser()
    for directory in (folder, folder.parent, folder.parent.parent):
        for name in CALIBRATION_NAMES:
            if (directory / name).is_file():
                log.info("using calibration %s", directory / name)
                return directory / name
    return None


# -- video and image folders --------------------------------------------------------------------
def _frames_from(source: Any, what: str) -> Iterator[SourceFrame]:
    try:
        source.open()
        while True:
            frame = source.read()
            if frame is None:
                return
            yield frame
    except SourceError as exc:
        raise UserError(f"{what}: {exc}") from None
    finally:
        source.close()


def _stamped(frames: Iterator[SourceFrame], base_s: float) -> Iterator[tuple[np.ndarray, int]]:
    """(image, stamp_ns): the source's own time from ``base_s``."""
    base_ns = round(base_s * 1e9)
    for frame in frames:
        yield frame.image_bgr, base_ns + round((frame.time_s or 0.0) * 1e9)


def _import_frames(
    frames: Iterable[tuple[np.ndarray, int]],
    setup: CameraSetup,
    writer: DriveWriter,
    options: ImportOptions,
) -> None:
    for image, stamp_ns in frames:
        if options.max_frames and writer.frames >= options.max_frames:
            break
        if setup.model is not None:
            writer.info(setup.model.to_msg(), stamp_ns)
        writer.frame(make_frame(image, stamp_ns, setup.name, setup.frame_id, options))


def _calibration_note(setup: CameraSetup) -> list[str]:
    return [] if setup.model else ["no calibration: camera/info is not written"]


def import_video(path: Path, writer: DriveWriter, options: ImportOptions) -> list[str]:
    """Frames at the video's rate; the first is stamped ``start_time_s`` or the file's mtime."""
    calibration = Path(options.calibration).expanduser() if options.calibration else None
    setup = camera_setup(options, calibration)
    base = options.start_time_s if options.start_time_s is not None else path.stat().st_mtime
    source = VideoFileSource(path, options.fps)
    _import_frames(_stamped(_frames_from(source, str(path)), base), setup, writer, options)
    return _calibration_note(setup)


def has_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()
    )


# Camera folders of the KITTI layouts, the left colour camera first: a drive folder holding
# several image folders (colour, grey, depth maps) is imported from the first of these.
KITTI_IMAGE_FOLDERS = ("image_2", "image_02/data", "image_02", "image_0", "image_00/data")


def find_image_folder(path: Path) -> Path:
    """``path`` when it holds images, else its KITTI camera folder (``image_2``,
    ``image_02/data``, ...), else its one sub-folder (or ``sub/data``) that holds images."""
    if has_images(path):
        return path
    for name in KITTI_IMAGE_FOLDERS:
        if has_images(path / name):
            return path / name
    found = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        for candidate in (sub, sub / "data"):
            if has_images(candidate):
                found.append(candidate)
                break
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no image sub-folder"
        )
    names = ", ".join(str(p.relative_to(path)) for p in found)
    raise UserError(f"{path} holds several image folders ({names}); give one of them")


def stamps_ns(path: Path) -> list[int]:
    """Absolute stamps (ns since the epoch) of a timestamps file, exactly: KITTI date-times
    (``2011-09-26 13:02:25.964389445``, UTC) or numbers (seconds, or ns when integers > 1e12).
    The source module reads the same files as float seconds for pacing; a drive's stamps keep
    every digit."""
    out: list[int] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?", text)
        try:
            if m:
                base = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                seconds = int(base.replace(tzinfo=dt.timezone.utc).timestamp())
                out.append(seconds * 1_000_000_000 + int((m.group(2) or "0")[:9].ljust(9, "0")))
            elif re.fullmatch(r"\d{13,}", text):
                out.append(int(text))
            else:
                out.append(round(float(text) * 1e9))
        except ValueError:
            raise UserError(f"{path}:{n}: cannot read a time stamp from {text[:40]!r}") from None
    return out


def import_folder(path: Path, writer: DriveWriter, options: ImportOptions) -> list[str]:
    """Sorted images stamped from the timestamps file (its first line's absolute time), else
    ``fps`` from ``start_time_s`` or the oldest file's mtime."""
    folder = find_image_folder(path)
    setup = camera_setup(options, _find_calibration(options, folder))
    stamps_file = next(
        (p for p in (folder / "timestamps.txt", folder.parent / "timestamps.txt") if p.is_file()),
        None,
    )
    exact = stamps_ns(stamps_file) if stamps_file is not None and not options.fps else None
    if options.start_time_s is not None:
        base = options.start_time_s
    elif exact:
        base = exact[0] / 1e9
    else:
        base = min(p.stat().st_mtime for p in folder.iterdir() if p.is_file())
    source = ImageFolderSource(folder, options.fps, None)
    frames = _frames_from(source, str(folder))
    if exact and options.start_time_s is None:  # every digit of the file's stamps
        stamped: Iterable[tuple[np.ndarray, int]] = (
            (f.image_bgr, t) for f, t in zip(frames, exact, strict=False)
        )
    else:
        stamped = _stamped(frames, base)
    _import_frames(stamped, setup, writer, options)
    return _calibration_note(setup)


# -- ROS bags -----------------------------------------------------------------------------------
def bag_path(path: Path) -> Path | None:
    """The path to hand the bag reader (a ROS 2 bag is its folder), or None: not a bag."""
    if path.is_dir():
        return path if (path / "metadata.yaml").is_file() else None
    suffix = path.suffix.lower()
    if suffix == ".bag":
        return path
    if path.name == "metadata.yaml" or suffix in (".db3", ".mcap"):
        return path.parent if (path.parent / "metadata.yaml").is_file() else path
    return None


def _bag_stamp(msg: Any, bag_time_ns: int) -> int:
    stamp = msg.header.stamp
    ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return ns if ns > 0 else bag_time_ns


_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    # encoding: (channels, cv2 conversion to BGR or None)
    "bgr8": (3, None),
    "8uc3": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "mono8": (1, None),
    "8uc1": (1, None),
    "bayer_rggb8": (1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, cv2.COLOR_BayerGB2BGR),
}


def ros_image(msg: Any, topic: str) -> np.ndarray:
    """A sensor_msgs/Image as a BGR (or mono) uint8 array; row padding (``step``) removed."""
    enc = str(msg.encoding).lower()
    if enc not in _RAW_ENCODINGS:
        raise UserError(
            f"{topic}: image encoding {msg.encoding!r} is not supported "
            f"({', '.join(_RAW_ENCODINGS)})"
        )
    channels, conversion = _RAW_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if h <= 0 or w <= 0 or step < w * channels or data.size < h * step:
        raise UserError(f"{topic}: a {w}x{h} {enc} image with step {step} has {data.size} bytes")
    image = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if conversion is not None:
        return cv2.cvtColor(image, conversion)
    return image[:, :, 0].copy() if channels == 1 else image.copy()


def ros_compressed(msg: Any, topic: str, options: ImportOptions) -> tuple[np.ndarray, bytes | None]:
    """A sensor_msgs/CompressedImage decoded to BGR, and its JPEG bytes when they may pass
    through unchanged."""
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{topic}: a compressed image ({msg.format!r}) does not decode")
    passthrough = options.encoding == "jpeg" and "jpeg" in str(msg.format).lower()
    return image, data.tobytes() if passthrough else None


def _matrix_field(msg: Any, name: str) -> np.ndarray:
    """A CameraInfo matrix: ROS 2 spells them k, d, r, p; ROS 1 K, D, R, P."""
    value = getattr(msg, name, None)
    return np.asarray(value if value is not None else getattr(msg, name.upper()), np.float64)


def ros_camera_info(msg: Any, name: str, topic: str) -> CameraModel:
    R, P = _matrix_field(msg, "r"), _matrix_field(msg, "p")
    try:
        return CameraModel(
            name=name,
            width=int(msg.width),
            height=int(msg.height),
            K=_matrix_field(msg, "k"),
            D=_matrix_field(msg, "d"),
            distortion_model=str(msg.distortion_model) or "plumb_bob",
            R=R if np.any(R) else np.eye(3),
            P=P if np.any(P) else None,
            T_vehicle_camera=FORWARD_CAMERA,
            frame_id=str(msg.header.frame_id) or f"{name}_optical",
        )
    except UserError as exc:
        raise UserError(f"{topic}: unusable CameraInfo: {exc}") from None


def _pick(conns: list[Any], wanted: str, what: str, path: Path) -> Any | None:
    topics = sorted({c.topic for c in conns})
    if wanted:
        chosen = [c for c in conns if c.topic == wanted]
        if not chosen:
            raise UserError(
                f"{path} has no {what} topic {wanted!r} ({', '.join(topics) or 'none'})"
            )
        return chosen[0]
    if not conns:
        return None
    if len(topics) > 1:
        raise UserError(f"{path} has several {what} topics ({', '.join(topics)}); choose one")
    return conns[0]


def import_bag(path: Path, writer: DriveWriter, options: ImportOptions) -> list[str]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    notes: list[str] = []
    bag = bag_path(path) or path
    store = get_typestore(Stores.ROS1_NOETIC if bag.suffix == ".bag" else Stores.ROS2_HUMBLE)
    try:
        reader = AnyReader([bag], default_typestore=store)
        reader.open()
    except Exception as exc:  # rosbags raises several kinds for a file that is no bag
        raise UserError(f"{path} is not a readable ROS bag: {exc}") from None
    try:
        images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
        image_conn = _pick(images, options.image_topic, "image", path)
        if image_conn is None:
            held = ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections}))
            raise UserError(f"{path} has no sensor_msgs Image or CompressedImage ({held})")
        infos = [c for c in reader.connections if c.msgtype == INFO_TYPE]
        if not options.info_topic and len(infos) > 1:
            near = [
                c for c in infos if c.topic.rsplit("/", 1)[0] == image_conn.topic.rsplit("/", 1)[0]
            ]
            infos = near or infos
        info_conn = (
            None if options.calibration else _pick(infos, options.info_topic, "CameraInfo", path)
        )
        setup = camera_setup(
            options, Path(options.calibration).expanduser() if options.calibration else None
        )
        if info_conn is not None:
            notes.append(
                f"calibration from {info_conn.topic}; no extrinsics in the bag: assuming a "
                "forward-looking camera at the vehicle origin (give --calibration to set them)"
            )
        if setup.model is None and info_conn is None:
            notes.append("no calibration: camera/info is not written")
        conns = [image_conn] + ([info_conn] if info_conn is not None else [])
        model = setup.model
        for conn, bag_time, raw in reader.messages(connections=conns):
            if options.max_frames and writer.frames >= options.max_frames:
                break
            try:
                msg: Any = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:
                raise UserError(
                    f"{path}: a {conn.msgtype} on {conn.topic} does not deserialize: {exc}"
                ) from None
            stamp = _bag_stamp(msg, bag_time)
            if conn is info_conn:
                model = ros_camera_info(msg, setup.name, conn.topic)
                continue
            frame_id = model.frame_id if model else (str(msg.header.frame_id) or setup.frame_id)
            if conn.msgtype.endswith("CompressedImage"):
                image, jpeg = ros_compressed(msg, conn.topic, options)
            else:
                image, jpeg = ros_image(msg, conn.topic), None
            if model is not None:
                writer.info(model.to_msg(), stamp)
            frame = make_frame(image, stamp, setup.name, frame_id, options)
            if jpeg is not None:
                frame.image, frame.encoding = np.frombuffer(jpeg, np.uint8), "jpeg"
            writer.frame(frame)
    finally:
        reader.close()
    return notes


# -- entry point --------------------------------------------------------------------------------
def source_kind(path: Path) -> str:
    """``video``, ``images`` or ``rosbag`` (a clear error for what is none of them)."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.suffix.lower() == ".mcap" and is_recording(path) and _is_perception_recording(path):
        raise UserError(f"{path} is already a perception recording: play it as it is")
    if bag_path(path) is not None:
        return "rosbag"
    if path.is_dir():
        return "images"
    return "video"


def _is_perception_recording(path: Path) -> bool:
    try:
        return any(c.lossless for c in RecordingReader(path).channels())
    except UserError:
        return False


def import_source(
    source: str | Path, output: str | Path, options: ImportOptions | None = None
) -> ImportResult:
    """Import ``source`` into the recording ``output``; raises UserError for a bad source."""
    options = options or ImportOptions()
    path = Path(source).expanduser()
    kind = source_kind(path)
    writer = DriveWriter(output, options, str(path))
    notes: list[str] = []
    ok = False
    try:
        if kind == "video":
            notes = import_video(path, writer, options)
        elif kind == "images":
            notes = import_folder(path, writer, options)
        else:
            notes = import_bag(path, writer, options)
        if writer.frames == 0:
            raise UserError(f"{path}: no frames to import")
        ok = True
    finally:
        files = writer.close()
        if not ok:
            for f in files:  # a failed import leaves no half file behind
                f.unlink(missing_ok=True)
    return ImportResult(
        kind=kind,
        files=files,
        frames=writer.frames,
        infos=writer.infos,
        first_stamp_ns=writer.first_stamp_ns,
        last_stamp_ns=writer.last_stamp_ns,
        notes=notes,
    )
