"""Chessboard camera calibration: corner detection, view checks, intrinsics and distortion.

The steps are the classic ones (Zhang's method as implemented by OpenCV): find the inner corners
of a chessboard in every image with sub-pixel accuracy, check that the views can constrain the
camera at all, then solve for the camera matrix, the distortion and one board pose per view.

Why the checks: with all boards seen fronto-parallel (or all parallel to each other) the focal
length is not observable and OpenCV still returns numbers, just wrong ones; with all corners in
one patch of the image the distortion is extrapolated everywhere else. Both are refused with a
message saying what to add, instead of writing a calibration file that looks fine and is not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from perception.camera import CameraModel
from perception.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
_CALIB_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-12)


class CalibrationRefused(UserError):
    """The views cannot determine the camera (too few, degenerate poses, poor coverage)."""


@dataclass(frozen=True)
class Board:
    """A chessboard: `cols` x `rows` INNER corners (where four squares meet), squares of
    `square_m` metres. A board of 10 x 7 squares has 9 x 6 inner corners."""

    cols: int
    rows: int
    square_m: float

    def __post_init__(self) -> None:
        if self.cols < 3 or self.rows < 3:
            raise UserError(f"board {self.cols}x{self.rows}: need at least 3x3 inner corners")
        if not (math.isfinite(self.square_m) and self.square_m > 0):
            raise UserError(f"square size {self.square_m} m must be a positive number of metres")

    @classmethod
    def parse(cls, text: str, square_m: float) -> Board:
        """'9x6' (inner corners, columns x rows) -> Board."""
        m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
        if not m:
            raise UserError(f"--board {text!r}: expected COLSxROWS inner corners, e.g. 9x6")
        return cls(int(m.group(1)), int(m.group(2)), float(square_m))

    @property
    def pattern_size(self) -> tuple[int, int]:
        return self.cols, self.rows

    @property
    def num_corners(self) -> int:
        return self.cols * self.rows

    def object_points(self) -> np.ndarray:
        """(cols*rows, 3) corner positions on the board plane (z = 0), in the row-major order
        OpenCV's detectors return them: x along a row, then the next row."""
        xs, ys = np.meshgrid(np.arange(self.cols), np.arange(self.rows))
        pts = np.column_stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)]) * self.square_m
        return pts.astype(np.float64)


@dataclass(frozen=True)
class CalibrationLimits:
    """When to refuse: fewer views than `min_views`, board normals all within
    `min_pose_spread_deg` of each other (e.g. every view fronto-parallel), or corners covering
    less than `min_coverage` of the image (fraction of cells of a 10 x 10 grid)."""

    min_views: int = 5
    min_pose_spread_deg: float = 10.0
    min_coverage: float = 0.2
    coverage_grid: int = 10


@dataclass
class View:
    """One image where the board was found: its name and (cols*rows, 2) corner pixels."""

    name: str
    corners: np.ndarray


@dataclass
class Detection:
    """The outcome of corner detection over a set of images."""

    image_size: tuple[int, int]
    views: list[View] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


@dataclass
class ViewGeometry:
    """What the views cover: per-view board tilt to the optical axis, the largest angle between
    any two board normals, and the fraction of the image grid holding corners."""

    tilts_deg: np.ndarray
    pose_spread_deg: float
    coverage: float


@dataclass
class CalibrationResult:
    camera: CameraModel
    rms_px: float
    per_view_rms_px: np.ndarray
    rvecs: list[np.ndarray]
    tvecs: list[np.ndarray]
    geometry: ViewGeometry
    intrinsics_std: np.ndarray | None  # std of (fx, fy, cx, cy) where OpenCV reports it


# -- corners ------------------------------------------------------------------------------------
def find_corners(image: np.ndarray, board: Board) -> np.ndarray | None:
    """Inner corners of the board in an image, (cols*rows, 2) float64 pixels, or None.

    The sector-based detector (findChessboardCornersSB) is tried first: it is robust to blur and
    lighting and already sub-pixel accurate. The classic detector plus cornerSubPix is the
    fallback, as it finds strongly distorted boards the SB detector sometimes misses.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    flags_sb = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
    found, corners = cv2.findChessboardCornersSB(gray, board.pattern_size, flags=flags_sb)
    if not found:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(gray, board.pattern_size, flags=flags)
        if not found:
            return None
        # Refinement window: a third of the smallest corner spacing, so it stays in one square.
        pts = corners.reshape(board.rows, board.cols, 2)
        spacing = min(
            float(np.min(np.linalg.norm(np.diff(pts, axis=1), axis=2))),
            float(np.min(np.linalg.norm(np.diff(pts, axis=0), axis=2))),
        )
        win = int(np.clip(spacing / 3, 2, 11))
        corners = cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), _SUBPIX_CRITERIA)
    return corners.reshape(-1, 2).astype(np.float64)


def expand_image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; directories expand to the images inside them (sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            paths.append(p)
        else:
            raise UserError(f"image {p} does not exist")
    if not paths:
        raise UserError("no images given (directories held no .png/.jpg/... files)")
    return paths


def detect_views(paths: Sequence[Path], board: Board) -> Detection:
    """Read every image and find the board in it. All images must have one size."""
    size: tuple[int, int] | None = None
    det: Detection | None = None
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise UserError(f"{path} is not a readable image")
        this = (image.shape[1], image.shape[0])
        if size is None:
            size = this
            det = Detection(image_size=this)
        elif this != size:
            raise UserError(
                f"{path} is {this[0]}x{this[1]} but the first image is {size[0]}x{size[1]}:"
                " calibrate one camera at one resolution"
            )
        assert det is not None
        corners = find_corners(image, board)
        if corners is None:
            det.not_found.append(str(path))
        else:
            det.views.append(View(str(path), corners))
    if det is None:
        raise UserError("no images given")
    return det


# -- view checks ------------------------------------------------------------------------------
def image_coverage(views: Sequence[View], image_size: tuple[int, int], grid: int = 10) -> float:
    """Fraction of the cells of a grid x grid partition of the image that hold a corner."""
    w, h = image_size
    cells = np.zeros((grid, grid), bool)
    for v in views:
        cx = np.clip((v.corners[:, 0] / w * grid).astype(int), 0, grid - 1)
        cy = np.clip((v.corners[:, 1] / h * grid).astype(int), 0, grid - 1)
        cells[cy, cx] = True
    return float(cells.mean())


def pose_geometry(rvecs: Sequence[np.ndarray], coverage: float) -> ViewGeometry:
    """Board tilts to the optical axis and the largest angle between two board normals, from
    the solved board rotations.

    Why from the solution and not from per-view homographies: lens distortion bends a
    fronto-parallel board into a shape a homography explains as perspective (30 deg of fake
    tilt for a common wide lens), while the joint solution with distortion does not. Degenerate
    sets leave the focal length free, but the solved boards stay parallel, which is what this
    measures.
    """
    N = np.array([cv2.Rodrigues(np.asarray(r, np.float64))[0][:, 2] for r in rvecs])
    tilts = np.degrees(np.arccos(np.clip(np.abs(N[:, 2]), 0.0, 1.0)))
    cos = np.clip(np.abs(N @ N.T), 0.0, 1.0)
    return ViewGeometry(tilts, float(np.degrees(np.arccos(cos.min()))), coverage)


def check_views(det: Detection, limits: CalibrationLimits) -> float:
    """Refuse view sets too small or covering too little of the image; return the coverage."""
    n = len(det.views)
    if n < limits.min_views:
        raise CalibrationRefused(
            f"refusing to calibrate: the board was found in {n} image(s), at least "
            f"{limits.min_views} are needed (check --board, which counts INNER corners, and "
            "take more views)"
        )
    coverage = image_coverage(det.views, det.image_size, limits.coverage_grid)
    if coverage < limits.min_coverage:
        raise CalibrationRefused(
            f"refusing to calibrate: the corners cover {100 * coverage:.0f}% of the image "
            f"(need {100 * limits.min_coverage:.0f}%); distortion would be guessed where no board "
            "was seen. Add views with the board near the edges and corners of the image"
        )
    return coverage


def check_poses(geo: ViewGeometry, limits: CalibrationLimits) -> None:
    """Refuse solutions whose boards were all (nearly) parallel: the focal length is then
    unobservable and the solved one arbitrary."""
    if geo.pose_spread_deg < limits.min_pose_spread_deg:
        raise CalibrationRefused(
            f"refusing to calibrate: the board orientations differ by at most "
            f"{geo.pose_spread_deg:.1f} deg (need {limits.min_pose_spread_deg:g}); views that are "
            "all fronto-parallel (or all parallel) do not determine the focal length. Add views "
            "with the board tilted 20-45 deg left/right and up/down"
        )


# -- solving -----------------------------------------------------------------------------------
def _reprojection_rms(
    camera: CameraModel,
    obj: np.ndarray,
    views: Sequence[View],
    rvecs: Sequence[np.ndarray],
    tvecs: Sequence[np.ndarray],
) -> tuple[float, np.ndarray]:
    """Overall and per-view RMS distance between detected and reprojected corners (px)."""
    sq_sums = []
    for v, rv, tv in zip(views, rvecs, tvecs, strict=True):
        R, _ = cv2.Rodrigues(np.asarray(rv, np.float64))
        pts_cam = obj @ R.T + np.asarray(tv, np.float64).reshape(1, 3)
        err = camera.project(pts_cam) - v.corners
        sq_sums.append(np.sum(err**2, axis=1))
    per_view = np.array([math.sqrt(float(s.mean())) for s in sq_sums])
    overall = math.sqrt(float(np.concatenate(sq_sums).mean()))
    return overall, per_view


def _fisheye_flag(name: str) -> int:
    """Fisheye flags live in cv2.fisheye up to OpenCV 4 and in cv2 itself from OpenCV 5."""
    value = getattr(cv2.fisheye, name, None)
    return int(value if value is not None else getattr(cv2, name))


def calibrate(
    det: Detection,
    board: Board,
    model: str = "plumb_bob",
    name: str = "camera",
    limits: CalibrationLimits | None = None,
    alpha: float = 0.0,
) -> CalibrationResult:
    """Check the views, then solve intrinsics, distortion and per-view poses.

    The projection matrix P of the result is the optimal new camera matrix for `alpha`
    (0: undistorted images keep only valid pixels, as ROS camera_calibration writes by default).
    """
    limits = limits or CalibrationLimits()
    coverage = check_views(det, limits)
    obj = board.object_points()
    size = det.image_size
    K0 = np.eye(3)
    std: np.ndarray | None = None
    try:
        if model == "equidistant":
            flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
            _, K, D, rvecs, tvecs = cv2.fisheye.calibrate(
                [obj.reshape(1, -1, 3) for _ in det.views],
                [v.corners.reshape(1, -1, 2) for v in det.views],
                size,
                K0,
                np.zeros(4),
                flags=flags,
                criteria=_CALIB_CRITERIA,
            )
        elif model in ("plumb_bob", "rational_polynomial"):
            flags = cv2.CALIB_RATIONAL_MODEL if model == "rational_polynomial" else 0
            n_d = 8 if model == "rational_polynomial" else 5
            out = cv2.calibrateCameraExtended(
                [obj.astype(np.float32) for _ in det.views],
                [v.corners.astype(np.float32) for v in det.views],
                size,
                K0,
                np.zeros(n_d),
                flags=flags,
                criteria=_CALIB_CRITERIA,
            )
            _, K, D, rvecs, tvecs, std_intr = out[:6]
            D = np.asarray(D).ravel()[:n_d]
            std = np.asarray(std_intr).ravel()[:4]
        else:
            raise UserError(f"unknown distortion model {model!r}")
    except cv2.error as exc:
        raise CalibrationRefused(
            "calibration failed in OpenCV (views ill-conditioned: add tilted views that fill "
            f"the image): {str(exc).strip().splitlines()[-1]}"
        ) from None
    K = np.asarray(K, np.float64)
    w, h = size
    rv = [np.asarray(r, np.float64).reshape(3) for r in rvecs]
    tv = [np.asarray(t, np.float64).reshape(3) for t in tvecs]
    geo = pose_geometry(rv, coverage)
    check_poses(geo, limits)
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(D)) and K[0, 0] > 0 and K[1, 1] > 0):
        raise CalibrationRefused("calibration did not converge (non-finite or negative focal)")
    if not (0 <= K[0, 2] < w and 0 <= K[1, 2] < h):
        raise CalibrationRefused(
            f"calibration did not converge: principal point ({K[0, 2]:.0f}, {K[1, 2]:.0f}) lies "
            "outside the image; add views with more tilt and coverage"
        )
    camera = CameraModel(
        name=name, width=w, height=h, K=K, D=np.asarray(D).ravel(), distortion_model=model
    )
    new_k = camera.optimal_new_camera_matrix(alpha)
    camera.P = np.hstack([new_k, np.zeros((3, 1))])
    rms, per_view = _reprojection_rms(camera, obj, det.views, rv, tv)
    return CalibrationResult(camera, rms, per_view, rv, tv, geo, std)


def preview_image(
    image: np.ndarray, camera: CameraModel, corners: np.ndarray | None, board: Board
) -> np.ndarray:
    """Side by side: the input with the detected corners drawn, and its undistorted version
    (straight board edges mean the distortion was recovered)."""
    bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    left = bgr.copy()
    if corners is not None:
        cv2.drawChessboardCorners(
            left, board.pattern_size, corners.reshape(-1, 1, 2).astype(np.float32), True
        )
    right = camera.undistort_image(bgr)
    return np.hstack([left, right])
