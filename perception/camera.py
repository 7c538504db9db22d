"""Camera model: intrinsics, lens distortion and mounting, loaded from ROS camera_info YAML.

The file layout is the one ROS `camera_calibration` writes (`image_width`, `camera_matrix`,
`distortion_model`, `distortion_coefficients`, `rectification_matrix`, `projection_matrix`), plus
an `extrinsics` block giving the pose of the optical frame (x right, y down, z forward) in the
vehicle frame (x forward, y left, z up). OpenCV's own calibration files (`cv2.FileStorage` YAML,
XML or JSON with `camera_matrix`, `distortion_coefficients`, `image_width`, `image_height`) load
too, so the output of OpenCV's calibration sample can be used as it is.

Distortion models follow ROS and OpenCV: ``plumb_bob`` (k1, k2, p1, p2, k3), ``rational_polynomial``
(k1, k2, p1, p2, k3, k4, k5, k6) and ``equidistant`` (the fisheye model, k1..k4).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from perception.errors import UserError
from perception.msgs import CameraInfo

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")

# How many coefficients each model may carry (OpenCV also accepts 12 and 14 for the rational
# family: thin prism and tilted sensor terms). The first length is the one written by default.
DISTORTION_LENGTHS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (5, 4),
    "rational_polynomial": (8, 12, 14),
    "equidistant": (4,),
}

# Newton refinement of the undistortion: OpenCV's fixed-point iteration alone stops short of the
# 1e-6 px round trip for strong distortion near the image corners.
_NEWTON_STEPS = 4
_NEWTON_EPS = 1e-7
_MAX_CACHED_MAPS = 4


def _matrix(block: Any, rows: int, cols: int, what: str) -> np.ndarray:
    """Read a ROS {rows, cols, data} block (or a plain nested list) as a float64 matrix."""
    data = block.get("data") if isinstance(block, dict) else block
    try:
        m = np.asarray(data, dtype=np.float64).reshape(rows, cols)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what}: expected {rows}x{cols} numbers ({exc})") from None
    if not np.all(np.isfinite(m)):
        raise UserError(f"{what}: values must be finite")
    return m


def _in_file(path: Path, exc: UserError) -> UserError:
    """Prefix an error with the file it came from, once."""
    msg = str(exc)
    return UserError(msg if msg.startswith(str(path)) else f"{path}: {msg}")


def _is_opencv_storage(path: Path, head: str) -> bool:
    """OpenCV's FileStorage files: `%YAML:1.0` header (PyYAML rejects it), XML or JSON."""
    return (
        head.lstrip().startswith("%YAML:")
        or "!!opencv-matrix" in head
        or path.suffix.lower() in (".xml", ".json")
    )


@dataclass
class CameraModel:
    """A calibrated camera. Pixel centres are at integer coordinates (OpenCV convention).

    ``P`` is the projection matrix of the rectified (undistorted) image, as in ROS: its left 3x3
    block is the camera matrix of :meth:`undistort_image`'s output.
    """

    name: str
    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: np.ndarray | None = None
    T_vehicle_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    frame_id: str = ""
    # Undistortion maps per image size, computed once (initUndistortRectifyMap is ~10 ms/MPix).
    _maps: dict[tuple[int, int, bytes], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.distortion_model not in DISTORTION_MODELS:
            raise UserError(
                f"distortion model {self.distortion_model!r} is not one of {DISTORTION_MODELS}"
            )
        self.K = np.asarray(self.K, np.float64).reshape(3, 3)
        self.D = self._checked_distortion(np.asarray(self.D, np.float64).ravel())
        self.R = np.asarray(self.R, np.float64).reshape(3, 3)
        if self.P is None:
            self.P = np.hstack([self.K, np.zeros((3, 1))])
        self.P = np.asarray(self.P, np.float64).reshape(3, 4)
        self.T_vehicle_camera = np.asarray(self.T_vehicle_camera, np.float64).reshape(4, 4)
        if self.width <= 0 or self.height <= 0:
            raise UserError(f"image size {self.width}x{self.height} must be positive")
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise UserError("focal lengths fx, fy must be positive")
        for what, m in (("K", self.K), ("D", self.D), ("R", self.R), ("P", self.P)):
            if not np.all(np.isfinite(m)):
                raise UserError(f"camera {self.name}: {what} must be finite")
        if not np.all(np.isfinite(self.T_vehicle_camera)):
            raise UserError(f"camera {self.name}: extrinsics must be finite")
        rot = self.T_vehicle_camera[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
            raise UserError(f"camera {self.name}: extrinsics rotation is not a proper rotation")
        if not self.frame_id:
            self.frame_id = f"{self.name}_optical"

    def _checked_distortion(self, d: np.ndarray) -> np.ndarray:
        allowed = DISTORTION_LENGTHS[self.distortion_model]
        if len(d) in allowed:
            return d
        if not np.any(d):  # no distortion given (empty or zeros of another length)
            return np.zeros(allowed[0])
        raise UserError(
            f"camera {self.name}: {self.distortion_model} takes "
            f"{' or '.join(map(str, allowed))} distortion coefficients, got {len(d)}"
        )

    @property
    def fisheye(self) -> bool:
        return self.distortion_model == "equidistant"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> CameraModel:
        """Load a ROS camera_info YAML file (with an optional `extrinsics` block) or an OpenCV
        FileStorage calibration file (YAML/XML/JSON)."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"calibration file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"calibration file {path} cannot be read: {exc}") from None
        if _is_opencv_storage(path, text[:4096]):
            return cls._load_opencv(path)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"calibration file {path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or "camera_matrix" not in doc:
            raise UserError(f"{path} is not a ROS camera_info YAML file (no camera_matrix)")
        return cls._from_ros_dict(doc, path)

    @classmethod
    def _from_ros_dict(cls, doc: dict[str, Any], path: Path) -> CameraModel:
        try:
            width, height = int(doc["image_width"]), int(doc["image_height"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: image_width and image_height are required") from None
        model = str(doc.get("distortion_model", "plumb_bob"))
        d_block = doc.get("distortion_coefficients") or {"data": []}
        d_data = d_block.get("data", []) if isinstance(d_block, dict) else d_block
        if not isinstance(d_data, list):
            raise UserError(f"{path}: distortion_coefficients must be a list of numbers")
        D = _matrix(d_data, 1, len(d_data), f"{path}: distortion_coefficients").ravel()
        T = np.eye(4)
        ext = doc.get("extrinsics")
        frame_id = ""
        if ext is not None:
            if not isinstance(ext, dict):
                raise UserError(f"{path}: extrinsics must be a mapping")
            T[:3, :3] = _matrix(ext.get("rotation"), 3, 3, f"{path}: extrinsics.rotation")
            T[:3, 3] = _matrix(ext.get("translation"), 1, 3, f"{path}: extrinsics.translation")
            frame_id = str(ext.get("frame_id", ""))
        try:
            return cls(
                name=str(doc.get("camera_name", path.stem)),
                width=width,
                height=height,
                K=_matrix(doc["camera_matrix"], 3, 3, f"{path}: camera_matrix"),
                D=D,
                distortion_model=model,
                R=_matrix(doc.get("rectification_matrix", np.eye(3)), 3, 3, f"{path}: R"),
                P=_matrix(doc["projection_matrix"], 3, 4, f"{path}: P")
                if "projection_matrix" in doc
                else None,
                T_vehicle_camera=T,
                frame_id=frame_id,
            )
        except UserError as exc:
            raise _in_file(path, exc) from None

    @classmethod
    def _load_opencv(cls, path: Path) -> CameraModel:
        """OpenCV FileStorage: camera_matrix, distortion_coefficients, image_width/height;
        `fisheye_model: 1` (OpenCV's calibration sample) selects the equidistant model."""
        try:
            fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        except (cv2.error, SystemError) as exc:
            # A parse error surfaces as cv2.error or (OpenCV 5) as SystemError around it.
            cause = exc.__cause__ or exc
            detail = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(exc)
            raise UserError(f"{path}: not a readable OpenCV calibration file ({detail})") from None
        try:
            if not fs.isOpened():
                raise UserError(f"{path}: not a readable OpenCV calibration file")
            K = fs.getNode("camera_matrix").mat()
            D = fs.getNode("distortion_coefficients").mat()
            w, h = fs.getNode("image_width"), fs.getNode("image_height")
            if K is None:
                raise UserError(f"{path}: OpenCV calibration file without camera_matrix")
            if w.empty() or h.empty():
                raise UserError(f"{path}: image_width and image_height are required")
            fisheye = fs.getNode("fisheye_model")
            name_node = fs.getNode("camera_name")
            name = name_node.string() if not name_node.empty() else path.stem
            width, height = int(w.real()), int(h.real())
            is_fisheye = not fisheye.empty() and int(fisheye.real()) != 0
        finally:
            fs.release()
        d = np.zeros(0) if D is None else np.asarray(D, np.float64).ravel()
        model = (
            "equidistant" if is_fisheye else ("plumb_bob" if len(d) <= 5 else "rational_polynomial")
        )
        try:
            return cls(
                name=name or path.stem,
                width=width,
                height=height,
                K=_matrix(K, 3, 3, f"{path}: camera_matrix"),
                D=d,
                distortion_model=model,
            )
        except UserError as exc:
            raise _in_file(path, exc) from None

    def to_ros_dict(self) -> dict[str, Any]:
        """The ROS camera_info layout (plus extrinsics) as plain Python values."""
        assert self.P is not None

        def block(m: np.ndarray) -> dict[str, Any]:
            m2 = np.atleast_2d(m)
            return {
                "rows": m2.shape[0],
                "cols": m2.shape[1],
                "data": [float(v) for v in m2.ravel()],
            }

        return {
            "image_width": int(self.width),
            "image_height": int(self.height),
            "camera_name": self.name,
            "camera_matrix": block(self.K),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": block(self.D.reshape(1, -1)),
            "rectification_matrix": block(self.R),
            "projection_matrix": block(self.P),
            "extrinsics": {
                "frame_id": self.frame_id,
                "parent_frame_id": "vehicle",
                "translation": [float(v) for v in self.T_vehicle_camera[:3, 3]],
                "rotation": block(self.T_vehicle_camera[:3, :3]),
            },
        }

    def save(self, path: str | Path, comment: str = "") -> None:
        """Write the ROS camera_info YAML layout (plus extrinsics); `load` reads it back exactly.

        Numbers are written with full float64 precision (shortest round-trip repr). The file is
        written to a temporary name and renamed, so a reader never sees half a file.
        """
        path = Path(path)
        doc = self.to_ros_dict()
        lines = [f"# {c}" if c else "#" for c in comment.splitlines()] if comment else []
        for key, val in doc.items():
            if key == "extrinsics":
                lines.append(
                    "# Pose of the optical frame (x right, y down, z forward) in the vehicle frame"
                )
                lines.append(
                    "# (x forward, y left, z up): translation in metres, rotation row-major with"
                )
                lines.append("# the optical axes as columns.")
            lines.extend(_yaml_entry(key, val, 0))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(f"cannot write calibration file {path}: {exc}") from None

    # -- variants ---------------------------------------------------------------------------
    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for images resized to width x height (same field of view).

        With pixel centres at integer coordinates, x' = (x + 0.5) * s - 0.5.
        """
        assert self.P is not None
        sx, sy = width / self.width, height / self.height
        S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return CameraModel(
            name=self.name,
            width=width,
            height=height,
            K=S @ self.K,
            D=self.D.copy(),
            distortion_model=self.distortion_model,
            R=self.R.copy(),
            P=S @ self.P,
            T_vehicle_camera=self.T_vehicle_camera.copy(),
            frame_id=self.frame_id,
        )

    def optimal_new_camera_matrix(self, alpha: float = 0.0) -> np.ndarray:
        """Camera matrix of an undistorted image: alpha=0 keeps only valid pixels, 1 keeps all
        source pixels (black borders). For fisheye, alpha is OpenCV's `balance`."""
        size = (self.width, self.height)
        if self.fisheye:
            return np.asarray(
                cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                    self.K, self.D, size, np.eye(3), balance=float(alpha)
                ),
                np.float64,
            )
        new_k, _ = cv2.getOptimalNewCameraMatrix(self.K, self.D, size, float(alpha), size)
        return np.asarray(new_k, np.float64)

    # -- images -----------------------------------------------------------------------------
    def undistortion_maps(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Remap tables turning a distorted width x height image into the rectified one whose
        camera matrix is P[:, :3] (scaled to the size). Cached per size: computing them costs
        far more than applying them."""
        assert self.P is not None
        # The parameters are part of the key: K, D, R or P may be replaced after construction.
        params = b"".join(m.tobytes() for m in (self.K, self.D, self.R, self.P))
        key = (int(width), int(height), params)
        maps = self._maps.get(key)
        if maps is not None:
            return maps
        size = (int(width), int(height))
        cam = self if size == (self.width, self.height) else self.scaled(*size)
        assert cam.P is not None
        new_k = cam.P[:3, :3]
        if self.fisheye:
            m1, m2 = cv2.fisheye.initUndistortRectifyMap(
                cam.K, cam.D, cam.R, new_k, size, cv2.CV_16SC2
            )
        else:
            m1, m2 = cv2.initUndistortRectifyMap(cam.K, cam.D, cam.R, new_k, size, cv2.CV_16SC2)
        if len(self._maps) >= _MAX_CACHED_MAPS:
            self._maps.pop(next(iter(self._maps)))
        self._maps[key] = (m1, m2)
        return m1, m2

    def undistort_image(
        self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR
    ) -> np.ndarray:
        """Undistort (and rectify with R) a whole image; the result has camera matrix P[:, :3]."""
        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
            raise UserError(f"cannot undistort an image of shape {image.shape}")
        m1, m2 = self.undistortion_maps(image.shape[1], image.shape[0])
        return cv2.remap(image, m1, m2, interpolation, borderMode=cv2.BORDER_CONSTANT)

    # -- geometry ---------------------------------------------------------------------------
    def _distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) normalized undistorted coordinates -> (N, 2) distorted pixels."""
        pts = np.column_stack([xy, np.ones(len(xy))]).reshape(-1, 1, 3)
        return self.project(pts)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in the optical frame to (N, 2) distorted pixel coordinates.

        Points must be in front of the camera (z > 0); use :meth:`project_with_depth` to get z
        alongside and mask the rest.
        """
        pts = np.asarray(points_cam, np.float64).reshape(-1, 1, 3)
        if len(pts) == 0:
            return np.zeros((0, 2))
        zero = np.zeros(3)
        if self.fisheye:
            uv, _ = cv2.fisheye.projectPoints(pts, zero, zero, self.K, self.D)
        else:
            uv, _ = cv2.projectPoints(pts, zero, zero, self.K, self.D)
        return uv.reshape(-1, 2)

    def project_with_depth(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) optical-frame points -> ((N, 2) pixels, (N,) depth z); the inverse of
        :meth:`backproject`. Pixels of points with z <= 0 are NaN."""
        pts = np.asarray(points_cam, np.float64).reshape(-1, 3)
        uv = self.project(pts)
        z = pts[:, 2].copy()
        uv[z <= 0] = np.nan
        return uv, z

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 2) normalized coordinates (x/z, y/z) of their rays.

        OpenCV's iterative undistortion gives the start; a few vectorised Newton steps on the
        forward model make `project` of the result match `uv` to ~1e-9 px.
        """
        pix = np.asarray(uv, np.float64).reshape(-1, 1, 2)
        if len(pix) == 0:
            return np.zeros((0, 2))
        distorted = self.D.any()
        if not distorted and not self.fisheye:
            return self._pinhole_normalized(pix.reshape(-1, 2))
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
        if self.fisheye:
            xy = cv2.fisheye.undistortPoints(pix, self.K, self.D, criteria=crit).reshape(-1, 2)
        else:
            xy = cv2.undistortPoints(pix, self.K, self.D, criteria=crit).reshape(-1, 2)
        if not distorted:
            return xy
        target = pix.reshape(-1, 2)
        for _ in range(_NEWTON_STEPS):
            n = len(xy)
            dx, dy = np.array([_NEWTON_EPS, 0.0]), np.array([0.0, _NEWTON_EPS])
            probe = np.concatenate([xy, xy + dx, xy + dy])
            out = self._distort_normalized(probe)
            f0, fx, fy = out[:n], out[n : 2 * n], out[2 * n :]
            J = np.stack([(fx - f0) / _NEWTON_EPS, (fy - f0) / _NEWTON_EPS], axis=2)  # (N,2,2)
            residual = f0 - target
            ok = np.abs(np.linalg.det(J)) > 1e-12
            if not np.any(ok):
                break
            step = np.zeros_like(xy)
            step[ok] = np.linalg.solve(J[ok], residual[ok][:, :, None])[:, :, 0]
            xy = xy - step
            if np.max(np.abs(residual)) < 1e-10:
                break
        return xy

    def _pinhole_normalized(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> normalized coordinates through K alone (no distortion), as
        ``cv2.undistortPoints`` gives them (like :meth:`project`, OpenCV reads no skew from K)
        in four array operations: the tracker lifts every frame's boxes through here, and
        OpenCV's call with its set-up costs ~0.1 ms when cold."""
        (fx, _, cx), (_, fy, cy) = self.K[:2].tolist()
        xy = np.subtract(uv, (cx, cy))
        xy /= (fx, fy)
        return xy

    def backproject(self, uv: np.ndarray, depth_m: np.ndarray | float) -> np.ndarray:
        """Lift (N, 2) distorted pixels with depth z (N,) to (N, 3) points in the optical frame."""
        xy = self.undistort_points(uv)
        z = np.broadcast_to(np.asarray(depth_m, np.float64).reshape(-1), (len(xy),))
        return np.column_stack([xy * z[:, None], z])

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 3) unit direction vectors in the optical frame."""
        xy = self.undistort_points(uv)
        d = np.column_stack([xy, np.ones(len(xy))])
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def camera_to_vehicle(self, points_cam: np.ndarray) -> np.ndarray:
        """Transform (N, 3) optical-frame points into the vehicle frame."""
        pts = np.asarray(points_cam, np.float64).reshape(-1, 3)
        return pts @ self.T_vehicle_camera[:3, :3].T + self.T_vehicle_camera[:3, 3]

    def vehicle_to_camera(self, points_vehicle: np.ndarray) -> np.ndarray:
        """Transform (N, 3) vehicle-frame points into the optical frame."""
        pts = np.asarray(points_vehicle, np.float64).reshape(-1, 3)
        return (pts - self.T_vehicle_camera[:3, 3]) @ self.T_vehicle_camera[:3, :3]

    def project_vehicle(self, points_vehicle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) vehicle-frame points -> ((N, 2) pixels, (N,) depth z); NaN pixels behind."""
        return self.project_with_depth(self.vehicle_to_camera(points_vehicle))

    def backproject_vehicle(self, uv: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixels with optical depth z (N,) -> (N, 3) points in the vehicle frame."""
        return self.camera_to_vehicle(self.backproject(uv, depth_m))

    def horizontal_fov_deg(self) -> float:
        """Horizontal field of view of the pinhole part (ignores distortion)."""
        fx, cx = self.K[0, 0], self.K[0, 2]
        return math.degrees(math.atan2(cx + 0.5, fx) + math.atan2(self.width - 0.5 - cx, fx))

    # -- bus --------------------------------------------------------------------------------
    def to_msg(self) -> CameraInfo:
        """The calibration as a CameraInfo message (envelope left for the publisher)."""
        assert self.P is not None
        return CameraInfo(
            frame_id=self.frame_id,
            camera=self.name,
            width=self.width,
            height=self.height,
            distortion_model=self.distortion_model,
            K=self.K.copy(),
            D=self.D.copy(),
            R=self.R.copy(),
            P=self.P.copy(),
            T_vehicle_camera=self.T_vehicle_camera.copy(),
        )

    @classmethod
    def from_msg(cls, msg: CameraInfo) -> CameraModel:
        return cls(
            name=msg.camera,
            width=msg.width,
            height=msg.height,
            K=msg.K,
            D=msg.D,
            distortion_model=msg.distortion_model,
            R=msg.R,
            P=msg.P,
            T_vehicle_camera=msg.T_vehicle_camera,
            frame_id=msg.frame_id,
        )


def _yaml_entry(key: str, val: Any, indent: int) -> list[str]:
    """One key of the ROS layout: nested maps as blocks, number lists in flow style."""
    pad = " " * indent
    if isinstance(val, dict):
        out = [f"{pad}{key}:"]
        for k, v in val.items():
            out.extend(_yaml_entry(k, v, indent + 2))
        return out
    if isinstance(val, list):
        return [f"{pad}{key}: [{', '.join(repr(float(v)) for v in val)}]"]
    if isinstance(val, str):
        return [f"{pad}{key}: {yaml.safe_dump(val, default_style=None).splitlines()[0]}"]
    return [f"{pad}{key}: {val}"]
