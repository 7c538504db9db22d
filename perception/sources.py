"""Where frames come from: a V4L2/USB device, a video file, an image folder, a synthetic drive.

Every source yields BGR uint8 frames with the source's own time (seconds from its start), which
paces file-backed sources at their recorded rate. A source that cannot open or read raises
:class:`SourceError`; the camera node retries it with back-off.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class SourceError(Exception):
    """The source cannot be opened or stopped delivering (disconnected, unreadable)."""


@dataclass
class SourceFrame:
    image_bgr: np.ndarray
    time_s: float | None  # source time since its first frame; None for live devices


class FrameSource(Protocol):
    live: bool  # a device paces itself; files are paced by their time stamps

    def open(self) -> None: ...

    def read(self) -> SourceFrame | None:
        """The next frame, or None at the end of a finite source."""
        ...

    def close(self) -> None: ...


class DeviceSource:
    """A V4L2/USB camera: ``device:N`` or ``/dev/videoN``."""

    live = True

    def __init__(self, spec: str, width: int = 0, height: int = 0, fps: float = 0.0) -> None:
        self.spec = spec
        self._index: int | str = int(spec.split(":", 1)[1]) if spec.startswith("device:") else spec
        self._size = (width, height)
        self._fps = fps
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        cap = cv2.VideoCapture(self._index, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera device {self.spec}")
        if self._size[0] and self._size[1]:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        if self._fps:
            cap.set(cv2.CAP_PROP_FPS, self._fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        self._cap = cap

    def read(self) -> SourceFrame | None:
        if self._cap is None:
            raise SourceError("device not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"camera device {self.spec} stopped delivering frames")
        return SourceFrame(image, None)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource:
    """A video file, paced at its own frame rate (or ``fps`` when given)."""

    live = False

    def __init__(self, path: Path, fps: float = 0.0) -> None:
        self.path = path
        self._fps = fps
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path} is not a video OpenCV can decode")
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = self._fps or (file_fps if 0 < file_fps < 1000 else 30.0)
        self._cap = cap
        self._index = 0

    def read(self) -> SourceFrame | None:
        if self._cap is None:
            raise SourceError("video not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        frame = SourceFrame(image, self._index / self.fps)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def parse_timestamps(path: Path) -> list[float]:
    """Seconds from the first line: KITTI raw (``2011-09-26 13:02:25.964389445``) or plain
    numbers (seconds, or nanoseconds when they are integers above 1e12)."""
    times: list[float] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?", text)
        try:
            if m:
                base = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                frac = float(f"0.{m.group(2)}") if m.group(2) else 0.0
                times.append(base.replace(tzinfo=dt.timezone.utc).timestamp() + frac)
            else:
                v = float(text)
                times.append(v / 1e9 if v > 1e12 else v)
        except ValueError:
            raise SourceError(f"{path}:{n}: cannot read a time stamp from {text[:40]!r}") from None
    if not times:
        raise SourceError(f"{path} holds no time stamps")
    if any(b < a for a, b in itertools.pairwise(times)):
        raise SourceError(f"{path}: time stamps go backwards")
    return [t - times[0] for t in times]


class ImageFolderSource:
    """Sorted images of a folder, paced by ``fps`` or by a time stamps file."""

    live = False

    def __init__(self, folder: Path, fps: float = 0.0, timestamps: Path | None = None) -> None:
        self.folder = folder
        self._fps = fps
        self._timestamps_path = timestamps
        self._files: list[Path] = []
        self._times: list[float] = []
        self._index = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        stamps_file = self._timestamps_path
        if stamps_file is None:
            for candidate in (
                self.folder / "timestamps.txt",
                self.folder.parent / "timestamps.txt",
            ):
                if candidate.is_file():
                    stamps_file = candidate
                    break
        if stamps_file is not None and not self._fps:
            times = parse_timestamps(stamps_file)
            if len(times) < len(files):
                raise SourceError(
                    f"{stamps_file} has {len(times)} time stamps for {len(files)} images"
                )
            self._times = times[: len(files)]
        else:
            fps = self._fps or 10.0
            self._times = [i / fps for i in range(len(files))]
        self._files = files
        self._index = 0

    def read(self) -> SourceFrame | None:
        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{path} is not an image OpenCV can read")
        frame = SourceFrame(image, self._times[self._index])
        self._index += 1
        return frame

    def close(self) -> None:
        self._files = []


class SyntheticSource:
    """The built-in procedural drive (perception.synth), paced at ``fps``."""

    live = False

    def __init__(self, seed: int, calibration: Path, fps: float = 10.0, frames: int = 0) -> None:
        self.seed = seed
        self.calibration = calibration
        self.fps = fps or 10.0
        self.frames = frames
        self._index = 0
        self._drive: object | None = None

    def open(self) -> None:
        from perception.camera import CameraModel
        from perception.synth import SyntheticDrive
        from perception.synth.config import DriveConfig

        camera = CameraModel.load(self.calibration)
        self._drive = SyntheticDrive(self.seed, camera, DriveConfig(fps=self.fps))
        self._index = 0

    def read(self) -> SourceFrame | None:
        if self._drive is None:
            raise SourceError("synthetic drive not open")
        if self.frames and self._index >= self.frames:
            return None
        frame = self._drive.frame(self._index)  # type: ignore[attr-defined]
        out = SourceFrame(frame.image_bgr, self._index / self.fps)
        self._index += 1
        return out

    def close(self) -> None:
        self._drive = None


def open_source(
    spec: str,
    *,
    fps: float = 0.0,
    timestamps: str = "",
    calibration: Path | None = None,
    seed: int = 0,
    frames: int = 0,
    width: int = 0,
    height: int = 0,
) -> FrameSource:
    """A source from its spec: ``synthetic``, ``device:N``, ``/dev/videoN``, a video file or
    an image folder. Raises SourceError for a spec that names nothing usable."""
    if spec == "synthetic":
        if calibration is None:
            raise SourceError("the synthetic source needs a calibration file")
        return SyntheticSource(seed, calibration, fps=fps or 10.0, frames=frames)
    if spec.startswith("device:") or spec.startswith("/dev/video"):
        return DeviceSource(spec, width, height, fps)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps, Path(timestamps) if timestamps else None)
    if path.suffix.lower() in VIDEO_SUFFIXES or path.is_file():
        return VideoFileSource(path, fps)
    raise SourceError(
        f"source {spec!r} is neither 'synthetic', a device, a video file nor an image folder"
    )
