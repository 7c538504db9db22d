"""3D lifting: each detection's position, uncertainty and metric size in the vehicle frame.

For every box, depth is sampled on a regular grid over the box's central region (boxes also
hold road, sky and whatever is behind the object near their edges), invalid pixels (0: no
depth) are dropped, and a low percentile of the rest is the object's depth: lower than the
median because background pixels are farther than the object, not at the minimum because a
single noisy or occluding pixel must not decide. The grid has the same number of samples for
every box, so all detections are handled at once with array operations.

The box centre is back-projected through the calibrated camera (distortion included) at that
depth and moved into the vehicle frame. Its covariance comes from first-order propagation of
the pixel noise of the centre and of the depth noise, whose std grows with depth
(``depth_sigma_rel * z + depth_sigma_quad * z^2``): the uncertainty is elongated along the
viewing ray and grows with range, which the tracker's Mahalanobis gating relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.camera import CameraModel
from perception.msgs import DepthMap
from perception.tracking.config import LiftingConfig

SOURCE_NONE = 0  # no depth: position unknown (NaN)
SOURCE_DEPTH_MAP = 1  # robust statistic over the depth map
SOURCE_DETECTION = 2  # the detection's own depth_m (the map had no valid pixels in the box)


@dataclass
class LiftedObjects:
    """Per detection (N rows); rows without depth are NaN and have source SOURCE_NONE."""

    positions_vehicle: np.ndarray  # (N, 3) metres, vehicle frame
    covariances_vehicle: np.ndarray  # (N, 3, 3) m^2
    positions_camera: np.ndarray  # (N, 3) metres, optical frame
    depth_m: np.ndarray  # (N,) depth z along the optical axis
    sizes_m: np.ndarray  # (N, 2) metric width and height of the box at that depth
    source: np.ndarray  # (N,) uint8, SOURCE_*


def box_depths(
    depth_m: np.ndarray,
    boxes_depth_px: np.ndarray,
    central_fraction: float,
    samples: int,
    percentile: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust depth of each box from a depth image, vectorised over boxes.

    `boxes_depth_px` (N, 4) are xyxy boxes in depth-image pixel coordinates (pixel centres at
    integers). Returns (depth (N,), fraction of valid samples (N,)); depth is NaN where no
    sample was valid.
    """
    n = len(boxes_depth_px)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    h, w = depth_m.shape
    b = np.asarray(boxes_depth_px, np.float64)
    centre = 0.5 * (b[:, :2] + b[:, 2:])
    half = 0.5 * central_fraction * (b[:, 2:] - b[:, :2])
    # Sample positions at the centres of a samples x samples partition of the central region.
    t = (np.arange(samples) + 0.5) / samples * 2.0 - 1.0  # in (-1, 1)
    xs = centre[:, 0:1] + half[:, 0:1] * t[None, :]  # (N, S)
    ys = centre[:, 1:2] + half[:, 1:2] * t[None, :]
    inside_x = (xs > -0.5) & (xs < w - 0.5)
    inside_y = (ys > -0.5) & (ys < h - 0.5)
    ix = np.clip(np.rint(xs), 0, w - 1).astype(np.intp)
    iy = np.clip(np.rint(ys), 0, h - 1).astype(np.intp)
    vals = depth_m[iy[:, :, None], ix[:, None, :]].astype(np.float64)  # (N, S, S)
    valid = (vals > 0) & np.isfinite(vals) & inside_y[:, :, None] & inside_x[:, None, :]
    vals = np.where(valid, vals, np.inf).reshape(n, -1)
    count = valid.reshape(n, -1).sum(axis=1)
    vals.sort(axis=1)
    # Linear interpolation between order statistics of the valid samples (numpy's default).
    pos = percentile / 100.0 * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    rows = np.arange(n)
    frac = pos - lo
    v_lo, v_hi = vals[rows, lo], vals[rows, hi]
    with np.errstate(invalid="ignore"):
        depth = np.where(count > 0, v_lo + frac * (v_hi - v_lo), np.nan)
    return depth, count / float(samples * samples)


def depth_boxes(depth: DepthMap, boxes_xyxy: np.ndarray) -> np.ndarray:
    """Source-image boxes -> depth-image pixel coordinates (the DepthMap's affine mapping)."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    scale = np.array([depth.scale_x, depth.scale_y, depth.scale_x, depth.scale_y])
    offset = np.array([depth.offset_x, depth.offset_y, depth.offset_x, depth.offset_y])
    return (b - offset) / scale


def depth_sigma(z: np.ndarray, cfg: LiftingConfig) -> np.ndarray:
    """Std of the depth estimate, growing with depth."""
    return np.maximum(cfg.depth_sigma_rel * z + cfg.depth_sigma_quad * z**2, cfg.depth_sigma_min_m)


def lift_detections(
    camera: CameraModel,
    boxes_xyxy: np.ndarray,
    depth: DepthMap | None = None,
    detection_depth_m: np.ndarray | None = None,
    config: LiftingConfig | None = None,
    class_ids: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> LiftedObjects:
    """Positions in the vehicle frame, covariances and metric sizes of detections.

    `camera` is the calibration; when the depth map says the source image had another size,
    the camera is scaled to it (boxes are in source-image pixels). Depth comes from `depth`
    (robust statistic over the box) and, where the map has too few valid samples, from
    `detection_depth_m` (the detector's per-object depth, 0 = none), with a larger std.
    `class_ids` and `class_names` select ``centre_offset_m``.
    """
    cfg = config or LiftingConfig()
    if depth is not None and depth.image_width > 0 and depth.image_height > 0:
        size = (int(depth.image_width), int(depth.image_height))
        if size != camera.size:  # boxes refer to a resized stream: same lens, scaled pixels
            camera = camera.scaled(*size)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    n = len(boxes)
    z = np.full(n, np.nan)
    source = np.zeros(n, np.uint8)
    if depth is not None and n and depth.depth_m.size:
        zd, frac = box_depths(
            depth.depth_m,
            depth_boxes(depth, boxes),
            cfg.central_fraction,
            cfg.samples,
            cfg.percentile,
        )
        ok = np.isfinite(zd) & (frac >= cfg.min_valid_fraction)
        z[ok] = zd[ok]
        source[ok] = SOURCE_DEPTH_MAP
    if detection_depth_m is not None and n:
        dd = np.asarray(detection_depth_m, np.float64).reshape(-1)
        use = (source == SOURCE_NONE) & np.isfinite(dd) & (dd > 0)
        z[use] = dd[use]
        source[use] = SOURCE_DETECTION
    if cfg.centre_offset_m and class_ids is not None and class_names is not None:
        names = np.asarray(class_names, dtype=object)
        cids = np.asarray(class_ids).reshape(-1)
        known = (cids >= 0) & (cids < len(names))
        offsets = np.array(
            [
                cfg.centre_offset_m.get(str(names[c]), 0.0) if k else 0.0
                for c, k in zip(cids, known, strict=True)
            ]
        )
    else:
        offsets = np.zeros(n)

    have = source != SOURCE_NONE
    pos_cam = np.full((n, 3), np.nan)
    cov_cam = np.full((n, 3, 3), np.nan)
    sizes = np.full((n, 2), np.nan)
    if have.any():
        b = boxes[have]
        zz = z[have]
        cx, cy = 0.5 * (b[:, 0] + b[:, 2]), 0.5 * (b[:, 1] + b[:, 3])
        # Centre and the four edge midpoints, back-projected at the object's depth.
        uv = np.concatenate(
            [
                np.column_stack([cx, cy]),
                np.column_stack([b[:, 0], cy]),
                np.column_stack([b[:, 2], cy]),
                np.column_stack([cx, b[:, 1]]),
                np.column_stack([cx, b[:, 3]]),
            ]
        )
        m = len(b)
        xy = camera.undistort_points(uv)  # normalized ray coordinates
        sizes[have, 0] = np.abs(xy[2 * m : 3 * m, 0] - xy[m : 2 * m, 0]) * zz
        sizes[have, 1] = np.abs(xy[4 * m :, 1] - xy[3 * m : 4 * m, 1]) * zz
        ray = np.column_stack([xy[:m], np.ones(m)])
        p = ray * zz[:, None]
        # Move from the visible surface to the object centre along the ray (per class).
        off = offsets[have]
        p = p + ray / np.linalg.norm(ray, axis=1, keepdims=True) * off[:, None]
        pos_cam[have] = p
        # Covariance: p = (x_n z, y_n z, z) with x_n = (u - cx) / fx (pinhole Jacobian; the
        # distortion's effect on it is second order).
        sig_z = depth_sigma(zz, cfg)
        sig_z = np.where(source[have] == SOURCE_DETECTION, sig_z * cfg.fallback_sigma_scale, sig_z)
        fx, fy = camera.K[0, 0], camera.K[1, 1]
        J = np.zeros((m, 3, 3))
        J[:, 0, 0] = zz / fx
        J[:, 1, 1] = zz / fy
        J[:, 0, 2] = xy[:m, 0]
        J[:, 1, 2] = xy[:m, 1]
        J[:, 2, 2] = 1.0
        var = np.zeros((m, 3, 3))
        var[:, 0, 0] = var[:, 1, 1] = cfg.pixel_sigma_px**2
        var[:, 2, 2] = sig_z**2
        cov_cam[have] = J @ var @ np.swapaxes(J, 1, 2)

    R = camera.T_vehicle_camera[:3, :3]
    pos_veh = np.full((n, 3), np.nan)
    pos_veh[have] = camera.camera_to_vehicle(pos_cam[have])
    cov_veh = np.full((n, 3, 3), np.nan)
    cov_veh[have] = R @ cov_cam[have] @ R.T
    return LiftedObjects(pos_veh, cov_veh, pos_cam, z, sizes, source)
