"""KITTI file formats, read and written: object labels (object and tracking variants), images,
16-bit depth PNGs, calibration files and raw-data timestamps.

Object label line (15 fields, a 16th score for detections)::

    type truncated occluded alpha left top right bottom height width length x y z rotation_y

The tracking variant prefixes ``frame track_id``. Boxes are image pixels, dimensions metres,
location is the *bottom centre* of the 3D box in the (rectified) camera frame, rotation_y the
heading about the camera y axis (0 = facing along camera x), alpha the observation angle
``rotation_y - atan2(x, z)``. Writers use KITTI's two decimals; readers accept any precision.
Depth PNGs hold uint16 metres x 256 with 0 = no depth (the KITTI depth benchmark format).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.errors import UserError

DEPTH_SCALE = 256.0  # depth PNG units per metre
DEPTH_MAX_M = 65535 / DEPTH_SCALE
DONT_CARE = "DontCare"
# Our class names -> KITTI type names, and KITTI types -> our classes (None: an ignore region).
KITTI_TYPES: dict[str, str] = {
    "car": "Car",
    "truck": "Truck",
    "pedestrian": "Pedestrian",
    "cyclist": "Cyclist",
}
DEFAULT_TYPE_MAP: dict[str, str | None] = {
    "Car": "car",
    "Van": "car",
    "Truck": "truck",
    "Pedestrian": "pedestrian",
    "Person_sitting": "pedestrian",
    "Person": "pedestrian",
    "Cyclist": "cyclist",
    "Tram": None,
    "Misc": None,
    DONT_CARE: None,
}
OCCLUSION_LEVEL_LIMITS = (0.1, 0.5)  # occlusion ratio < 0.1: level 0, < 0.5: 1, else 2


@dataclass(frozen=True)
class KittiObject:
    """One line of a KITTI label file."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox_xyxy: tuple[float, float, float, float]
    dimensions_hwl: tuple[float, float, float]
    location_xyz: tuple[float, float, float]
    rotation_y: float
    score: float | None = None
    frame: int | None = None  # tracking format only
    track_id: int | None = None  # tracking format only

    def rounded(self) -> KittiObject:
        """The object as the writer stores it (two decimals), for round-trip comparisons."""

        b, d, loc = self.bbox_xyxy, self.dimensions_hwl, self.location_xyz
        return KittiObject(
            self.type,
            round(self.truncated, 2),
            self.occluded,
            round(self.alpha, 2),
            (round(b[0], 2), round(b[1], 2), round(b[2], 2), round(b[3], 2)),
            (round(d[0], 2), round(d[1], 2), round(d[2], 2)),
            (round(loc[0], 2), round(loc[1], 2), round(loc[2], 2)),
            round(self.rotation_y, 2),
            None if self.score is None else round(self.score, 4),
            self.frame,
            self.track_id,
        )


def dont_care(bbox_xyxy: Sequence[float] | np.ndarray, frame: int | None = None) -> KittiObject:
    """A KITTI 'DontCare' region (only its box means anything)."""
    b = [float(v) for v in bbox_xyxy]
    return KittiObject(
        DONT_CARE,
        -1.0,
        -1,
        -10.0,
        (b[0], b[1], b[2], b[3]),
        (-1.0, -1.0, -1.0),
        (-1000.0, -1000.0, -1000.0),
        -10.0,
        None,
        frame,
        None if frame is None else -1,
    )


def occlusion_level(ratio: float) -> int:
    """KITTI's occluded field (0 fully visible, 1 partly, 2 largely) from an occluded share."""
    lo, hi = OCCLUSION_LEVEL_LIMITS
    return 0 if ratio < lo else 1 if ratio < hi else 2


def observation_angle(rotation_y: float, x: float, z: float) -> float:
    """KITTI alpha from rotation_y and the object's camera-frame x, z, in [-pi, pi)."""
    a = rotation_y - math.atan2(x, z)
    return (a + math.pi) % (2 * math.pi) - math.pi


# -- labels --------------------------------------------------------------------------------
def format_object(o: KittiObject) -> str:
    fields = [
        o.type,
        f"{o.truncated:.2f}",
        str(int(o.occluded)),
        f"{o.alpha:.2f}",
        *(f"{v:.2f}" for v in o.bbox_xyxy),
        *(f"{v:.2f}" for v in o.dimensions_hwl),
        *(f"{v:.2f}" for v in o.location_xyz),
        f"{o.rotation_y:.2f}",
    ]
    if o.score is not None:
        fields.append(f"{o.score:.4f}")
    if o.frame is not None:
        fields = [
            str(int(o.frame)),
            str(int(o.track_id if o.track_id is not None else -1)),
            *fields,
        ]
    return " ".join(fields)


def parse_object(line: str, where: str = "") -> KittiObject:
    """Parse one label line in the object format (15/16 fields) or tracking format (17/18)."""
    tok = line.split()
    frame = track = None
    try:
        if tok and _is_number(tok[0]):
            frame, track = int(tok[0]), int(tok[1])
            tok = tok[2:]
        if len(tok) not in (15, 16):
            raise ValueError(
                f"expected 15 or 16 fields after the optional frame/track id, got {len(tok)}"
            )
        v = [float(x) for x in tok[1:]]
    except (ValueError, IndexError) as exc:
        raise UserError(f"{where}: not a KITTI label line ({exc}): {line.strip()!r}") from None
    return KittiObject(
        type=tok[0],
        truncated=v[0],
        occluded=round(v[1]),
        alpha=v[2],
        bbox_xyxy=(v[3], v[4], v[5], v[6]),
        dimensions_hwl=(v[7], v[8], v[9]),
        location_xyz=(v[10], v[11], v[12]),
        rotation_y=v[13],
        score=v[14] if len(v) > 14 else None,
        frame=frame,
        track_id=track,
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def write_labels(path: str | Path, objects: Iterable[KittiObject]) -> None:
    """Write a label file (object or tracking lines, as each object says)."""
    text = "".join(format_object(o) + "\n" for o in objects)
    Path(path).write_text(text)


def read_labels(path: str | Path) -> list[KittiObject]:
    """Read a label file: per-frame object labels, or tracking lines (all frames)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"label file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"label file {path} cannot be read: {exc}") from None
    return [parse_object(line, f"{path}:{i + 1}") for i, line in enumerate(lines) if line.strip()]


def read_tracking_labels(path: str | Path) -> dict[int, list[KittiObject]]:
    """A KITTI tracking label file (one per sequence), grouped by frame."""
    out: dict[int, list[KittiObject]] = {}
    for o in read_labels(path):
        if o.frame is None:
            raise UserError(f"{path}: not a tracking label file (a line has no frame number)")
        out.setdefault(o.frame, []).append(o)
    return out


# -- images and depth -------------------------------------------------------------------
def write_image(path: str | Path, image_bgr: np.ndarray, png_compression: int = 1) -> None:
    ok = cv2.imwrite(str(path), image_bgr, [cv2.IMWRITE_PNG_COMPRESSION, png_compression])
    if not ok:
        raise UserError(f"cannot write image {path}")


def read_image(path: str | Path) -> np.ndarray:
    """An image as BGR uint8 (H, W, 3)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"image {path} does not exist or cannot be decoded")
    return img


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metres (float) -> uint16 metres x 256; 0 where unknown, not finite or out of range."""
    d = np.asarray(depth_m, np.float64)
    valid = np.isfinite(d) & (d > 0) & (d * DEPTH_SCALE <= 65535.49)
    out = np.zeros(d.shape, np.uint16)
    out[valid] = np.round(d[valid] * DEPTH_SCALE).astype(np.uint16)
    return out


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """uint16 metres x 256 -> float32 metres, 0 = unknown."""
    return (raw.astype(np.float32) / np.float32(DEPTH_SCALE)).astype(np.float32)


def write_depth_png(path: str | Path, depth_m: np.ndarray, png_compression: int = 1) -> None:
    ok = cv2.imwrite(
        str(path), encode_depth(depth_m), [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    )
    if not ok:
        raise UserError(f"cannot write depth map {path}")


def read_depth_png(path: str | Path) -> np.ndarray:
    """A KITTI depth PNG as float32 metres (H, W), 0 = no depth."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError(f"depth map {path} does not exist or cannot be decoded")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise UserError(
            f"depth map {path} must be a single-channel 16-bit PNG, got {raw.dtype} {raw.shape}"
        )
    return decode_depth(raw)


# -- calibration --------------------------------------------------------------------------
@dataclass
class KittiCalib:
    """The parts of a KITTI calibration file this project uses."""

    P2: np.ndarray  # (3, 4) projection of the left colour camera (rectified)
    R0_rect: np.ndarray  # (3, 3)
    Tr_velo_to_cam: np.ndarray | None  # (3, 4); in our drives: vehicle frame -> camera

    @property
    def K(self) -> np.ndarray:
        return self.P2[:, :3].copy()


def write_calib(
    path: str | Path,
    P2: np.ndarray,
    Tr_velo_to_cam: np.ndarray | None = None,
    R0_rect: np.ndarray | None = None,
) -> None:
    """Write an object-benchmark style calib file (P0..P3 all P2: one camera)."""
    P2 = np.asarray(P2, np.float64).reshape(3, 4)
    R0 = np.eye(3) if R0_rect is None else np.asarray(R0_rect, np.float64).reshape(3, 3)
    Tr = (
        np.hstack([np.eye(3), np.zeros((3, 1))])
        if Tr_velo_to_cam is None
        else np.asarray(Tr_velo_to_cam, np.float64).reshape(3, 4)
    )

    def row(name: str, m: np.ndarray) -> str:
        return name + ": " + " ".join(f"{v:.12e}" for v in m.ravel()) + "\n"

    text = "".join(row(f"P{i}", P2) for i in range(4))
    text += row("R0_rect", R0) + row("Tr_velo_to_cam", Tr)
    text += row("Tr_imu_to_velo", np.hstack([np.eye(3), np.zeros((3, 1))]))
    Path(path).write_text(text)


def read_calib_fields(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"calibration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"calibration file {path} cannot be read: {exc}") from None
    out: dict[str, np.ndarray] = {}
    for i, line in enumerate(lines):
        if ":" not in line:
            continue
        key, _, rest = line.partition(":")
        try:
            out[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
        except ValueError:
            if key.strip() == "calib_time":  # KITTI raw files carry a date line
                continue
            raise UserError(f"{path}:{i + 1}: numbers expected after {key.strip()!r}") from None
    return out


def read_calib(path: str | Path) -> KittiCalib:
    """Read P2 (or a raw-data P_rect_02), R0_rect and Tr_velo_to_cam."""
    f = read_calib_fields(path)
    p2 = f.get("P2", f.get("P_rect_02"))
    if p2 is None or p2.size != 12:
        raise UserError(f"{path}: no 3x4 P2 (or P_rect_02) matrix")
    r0 = f.get("R0_rect", f.get("R_rect_00", np.eye(3).ravel()))
    tr = f.get("Tr_velo_to_cam", f.get("Tr_velo_cam"))
    return KittiCalib(
        P2=p2.reshape(3, 4),
        R0_rect=r0.reshape(3, 3) if r0.size == 9 else np.eye(3),
        Tr_velo_to_cam=tr.reshape(3, 4) if tr is not None and tr.size == 12 else None,
    )


# -- timestamps ---------------------------------------------------------------------------
def format_timestamp(stamp_ns: int) -> str:
    """KITTI raw style: 'YYYY-MM-DD HH:MM:SS.nnnnnnnnn' (UTC)."""
    sec, ns = divmod(int(stamp_ns), 1_000_000_000)
    t = dt.datetime.fromtimestamp(sec, tz=dt.timezone.utc)
    return f"{t:%Y-%m-%d %H:%M:%S}.{ns:09d}"


def parse_timestamp(text: str, where: str = "") -> int:
    text = text.strip()
    try:
        main, _, frac = text.partition(".")
        t = dt.datetime.strptime(main, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        if frac and not frac.isdigit():
            raise ValueError("fraction is not digits")
        ns = int((frac + "000000000")[:9]) if frac else 0
    except ValueError as exc:
        raise UserError(f"{where}: not a KITTI timestamp ({exc}): {text!r}") from None
    days = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (days.days * 86400 + days.seconds) * 1_000_000_000 + ns


def write_timestamps(path: str | Path, stamps_ns: Iterable[int]) -> None:
    Path(path).write_text("".join(format_timestamp(s) + "\n" for s in stamps_ns))


def read_timestamps(path: str | Path) -> list[int]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"timestamps file {path} does not exist") from None
    return [
        parse_timestamp(line, f"{path}:{i + 1}") for i, line in enumerate(lines) if line.strip()
    ]
