"""3D lifting: each detection's position, uncertainty and metric size in the vehicle frame.

For every box, depth is sampled on a regular grid over the box's central region (boxes also
hold road, sky and whatever is behind the object near their edges), invalid pixels (0: no
depth) are dropped, and a low percentile of the rest is the object's depth: lower than the
median because background pixels are farther than the object, not at the minimum because a
single noisy or occluding pixel must not decide. The grid has the same number of samples for
every box, so all detections are handled at once with array operations. Samples inside the
box of a nearer detection (judged by the bottom edges: objects stand on the road) are dropped,
so an occluded object is not given its occluder's depth.

A second depth comes from the ground plane: the ray through the middle of the box's bottom
edge meets the road where the object stands. It does not depend on the depth network, and is
fused with the map's depth by inverse variance where the bottom edge is the ground contact
(not cut by the image border, not hidden by a nearer object) and the two agree.

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
SOURCE_GROUND = 3  # only the ground-plane estimate from the box's bottom edge


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
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust depth of each box from a depth image, vectorised over boxes.

    `boxes_depth_px` (N, 4) are xyxy boxes in depth-image pixel coordinates (pixel centres at
    integers), sampled over their central `central_fraction` of width and height. `exclude`
    = (pairs (P, 2) of [box i, occluder j], occluder boxes (P, 4) in depth-image pixels): the
    samples of box i inside an occluder's box are not used. Returns (depth (N,), fraction of
    the grid's samples that are valid (N,)); depth is NaN where no sample was valid.
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
    if exclude is not None and len(exclude[0]):
        pairs, occ = exclude
        i = pairs[:, 0]
        in_x = (xs[i] >= occ[:, 0:1]) & (xs[i] <= occ[:, 2:3])  # (P, S)
        in_y = (ys[i] >= occ[:, 1:2]) & (ys[i] <= occ[:, 3:4])
        hidden = np.zeros(valid.shape, bool)
        np.logical_or.at(hidden, i, in_y[:, :, None] & in_x[:, None, :])
        valid &= ~hidden
    vals = np.where(valid, vals, np.inf).reshape(n, -1)
    count = valid.reshape(n, -1).sum(axis=1)
    vals.sort(axis=1)
    # Linear interpolation between order statistics of the valid samples (numpy's default).
    pos = percentile / 100.0 * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    rows = np.arange(n)
    f = pos - lo
    v_lo, v_hi = vals[rows, lo], vals[rows, hi]
    with np.errstate(invalid="ignore"):
        depth = np.where(count > 0, v_lo + f * (v_hi - v_lo), np.nan)
    return depth, count / float(samples * samples)


def occluder_pairs(boxes_xyxy: np.ndarray, min_bottom_gap: float) -> np.ndarray:
    """(P, 2) pairs [i, j]: box j overlaps box i and is nearer, judged by the bottom edge.

    Objects stand on the road, so of two overlapping boxes the one whose bottom edge is lower
    in the image is the nearer one (the "pseudo-depth" of SparseTrack, Liu et al. 2023). This
    needs no depth, so it is not fooled when the depth read through a box is already the
    occluder's. `min_bottom_gap` (share of box i's height) keeps boxes side by side at the
    same distance from counting as occluders.
    """
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    if len(b) < 2:
        return np.zeros((0, 2), np.intp)
    overlap = (
        np.minimum(b[:, None, 2], b[None, :, 2]) > np.maximum(b[:, None, 0], b[None, :, 0])
    ) & (np.minimum(b[:, None, 3], b[None, :, 3]) > np.maximum(b[:, None, 1], b[None, :, 1]))
    gap = min_bottom_gap * (b[:, 3] - b[:, 1])
    lower = b[None, :, 3] > b[:, None, 3] + gap[:, None]
    i, j = np.nonzero(overlap & lower)
    return np.stack([i, j], axis=1)


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
    pairs = occluder_pairs(boxes, cfg.occluder_bottom_gap)
    if depth is not None and n and depth.depth_m.size:
        dboxes = depth_boxes(depth, boxes)
        exclude = (pairs, dboxes[pairs[:, 1]]) if cfg.occlusion_aware else None
        zd, frac = box_depths(
            depth.depth_m, dboxes, cfg.central_fraction, cfg.samples, cfg.percentile, exclude
        )
        ok = np.isfinite(zd) & (frac >= cfg.min_valid_fraction)
        z[ok] = zd[ok]
        source[ok] = SOURCE_DEPTH_MAP
    if detection_depth_m is not None and n:
        dd = np.asarray(detection_depth_m, np.float64).reshape(-1)
        use = (source == SOURCE_NONE) & np.isfinite(dd) & (dd > 0)
        z[use] = dd[use]
        source[use] = SOURCE_DETECTION
    sig_z = depth_sigma(z, cfg)
    sig_z = np.where(source == SOURCE_DETECTION, sig_z * cfg.fallback_sigma_scale, sig_z)
    if cfg.ground_prior and n:
        z, sig_z, source = _fuse_ground(camera, boxes, pairs, z, sig_z, source, cfg)
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
        fx, fy = camera.K[0, 0], camera.K[1, 1]
        J = np.zeros((m, 3, 3))
        J[:, 0, 0] = zz / fx
        J[:, 1, 1] = zz / fy
        J[:, 0, 2] = xy[:m, 0]
        J[:, 1, 2] = xy[:m, 1]
        J[:, 2, 2] = 1.0
        var = np.zeros((m, 3, 3))
        var[:, 0, 0] = var[:, 1, 1] = cfg.pixel_sigma_px**2
        var[:, 2, 2] = sig_z[have] ** 2
        cov_cam[have] = J @ var @ np.swapaxes(J, 1, 2)

    R = camera.T_vehicle_camera[:3, :3]
    pos_veh = np.full((n, 3), np.nan)
    pos_veh[have] = camera.camera_to_vehicle(pos_cam[have])
    cov_veh = np.full((n, 3, 3), np.nan)
    cov_veh[have] = R @ cov_cam[have] @ R.T
    return LiftedObjects(pos_veh, cov_veh, pos_cam, z, sizes, source)


def ground_depths(
    camera: CameraModel, boxes_xyxy: np.ndarray, cfg: LiftingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Depth of each box's bottom-edge midpoint on the ground plane, and its std.

    Objects stand on the road: the ray through the middle of the box's bottom edge meets the
    ground plane (vehicle z = ``ground_z_m``) where the object touches it. Its std comes from
    `ground_sigma_px` of the bottom edge (the depth's sensitivity to one pixel is measured by
    moving the point down a pixel: it grows as depth^2 / (f * camera height)) and
    `ground_sigma_rel` for road slope and pitch. NaN where the ray does not go down to the
    ground (at or above the horizon) or meets it beyond ``ground_max_m``.
    """
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    n = len(b)
    cx = 0.5 * (b[:, 0] + b[:, 2])
    uv = np.concatenate([np.column_stack([cx, b[:, 3]]), np.column_stack([cx, b[:, 3] + 1.0])])
    xy = camera.undistort_points(uv)
    rays = np.column_stack([xy, np.ones(2 * n)])  # camera frame, z = 1: the scale is the depth
    R, t = camera.T_vehicle_camera[:3, :3], camera.T_vehicle_camera[:3, 3]
    down = rays @ R[2]  # vehicle z component of each ray
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(down < -1e-9, (cfg.ground_z_m - t[2]) / down, np.nan)
    s[~(s > 0) | (s > cfg.ground_max_m)] = np.nan
    z, z_next = s[:n], s[n:]
    sigma = np.hypot(cfg.ground_sigma_px * np.abs(z - z_next), cfg.ground_sigma_rel * z)
    return z, sigma


def _fuse_ground(
    camera: CameraModel,
    boxes: np.ndarray,
    pairs: np.ndarray,
    z: np.ndarray,
    sig_z: np.ndarray,
    source: np.ndarray,
    cfg: LiftingConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance fusion of each box's depth with its ground-plane depth.

    Only boxes whose bottom edge is the object's ground contact: not cut by the image's lower
    border and not overlapped by a nearer box (which would hide the bottom: the edge would be
    the occluder's top). Where the two disagree by more than ``ground_gate_chi2`` (squared,
    in combined stds) the box is not on the road as assumed (a false positive, a slope) and
    keeps its own depth; where there is no other depth, the ground depth is used alone.
    """
    zg, sg = ground_depths(camera, boxes, cfg)
    usable = np.isfinite(zg) & (boxes[:, 3] < camera.height - 1.0 - cfg.ground_border_px)
    usable[pairs[:, 0]] = False
    have = source != SOURCE_NONE
    var, var_g = sig_z**2, sg**2
    with np.errstate(invalid="ignore"):
        agree = (z - zg) ** 2 <= cfg.ground_gate_chi2 * (var + var_g)
    fuse = usable & have & agree
    z, sig_z, source = z.copy(), sig_z.copy(), source.copy()
    w = var_g[fuse] / (var[fuse] + var_g[fuse])
    z[fuse] = w * z[fuse] + (1.0 - w) * zg[fuse]
    sig_z[fuse] = np.sqrt(var[fuse] * var_g[fuse] / (var[fuse] + var_g[fuse]))
    alone = usable & ~have
    z[alone], sig_z[alone], source[alone] = zg[alone], sg[alone], SOURCE_GROUND
    return z, sig_z, source
