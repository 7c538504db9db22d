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
from functools import lru_cache

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


_NO_SAMPLE = np.finfo(np.float64).max  # an invalid depth sample: sorts after every depth


@lru_cache(maxsize=8)
def _unit_grid(samples: int) -> np.ndarray:
    """Centres of `samples` equal cells of (-1, 1) (read-only: it is shared)."""
    t = (np.arange(samples) + 0.5) / samples * 2.0 - 1.0
    t.flags.writeable = False
    return t


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
    # Sample positions (N, 2, S): x then y of each box, at the centres of a samples x samples
    # partition of the central region. x and y go through every step together.
    grid = centre[:, :, None] + half[:, :, None] * _unit_grid(samples)
    end = np.array([[w - 0.5], [h - 0.5]])  # the image's far edges in x and y
    inside = (grid > -0.5) & (grid < end)
    idx = np.rint(grid)
    np.maximum(idx, 0.0, out=idx)
    np.minimum(idx, end - 0.5, out=idx)  # the last pixel
    idx = idx.astype(np.intp)
    # One flat gather (N, S, S), rows y, columns x: faster than indexing with two arrays.
    flat = (idx[:, 1] * w)[:, :, None] + idx[:, 0, None, :]
    vals = depth_m.reshape(-1).take(flat).astype(np.float64)
    valid = (vals > 0) & np.isfinite(vals)
    valid &= inside[:, 1, :, None] & inside[:, 0, None, :]
    if exclude is not None and len(exclude[0]):
        pairs, occ = exclude
        i = pairs[:, 0]
        g = grid[i]  # (P, 2, S)
        in_occ = (g >= occ[:, :2, None]) & (g <= occ[:, 2:, None])
        # Repeated i (several occluders) apply one after the other.
        np.logical_and.at(valid, i, ~(in_occ[:, 1, :, None] & in_occ[:, 0, None, :]))
    # Invalid samples sort after every depth. The fill is finite, not inf, so a box without
    # valid samples gives no inf - inf below (no warning to silence; its depth becomes NaN).
    vals = np.where(valid, vals, _NO_SAMPLE).reshape(n, -1)
    count = np.add.reduce(valid.reshape(n, -1), axis=1)
    vals.sort(axis=1)
    # Linear interpolation between order statistics of the valid samples (numpy's default).
    last = np.maximum(count - 1, 0)
    pos = percentile / 100.0 * last
    lo = pos.astype(np.intp)  # pos >= 0: truncation is the floor
    hi = np.minimum(lo + 1, last)
    rows = np.arange(n)
    v_lo, v_hi = vals[rows, lo], vals[rows, hi]
    depth = np.where(count > 0, v_lo + (pos - lo) * (v_hi - v_lo), np.nan)
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
    x0, y0, x1, y1 = b.T[:, :, None]  # columns (N, 1); their transposes are rows (1, N)
    nearer = y1 + min_bottom_gap * (y1 - y0) < y1.T  # [i, j]: j's bottom edge lower than i's
    nearer &= np.minimum(x1, x1.T) > np.maximum(x0, x0.T)  # overlap in x
    nearer &= np.minimum(y1, y1.T) > np.maximum(y0, y0.T)  # and in y
    return np.array(nearer.nonzero()).T


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
    if n == 0:
        no_rows = np.zeros((0, 3))
        return LiftedObjects(
            no_rows,
            np.zeros((0, 3, 3)),
            no_rows.copy(),
            np.zeros(0),
            np.zeros((0, 2)),
            np.zeros(0, np.uint8),
        )
    # Every step works on all rows: a row without depth has z = NaN, which makes its position
    # and size NaN by itself (no gathers and scatters of the rows with depth).
    pairs = occluder_pairs(boxes, cfg.occluder_bottom_gap)
    if depth is not None and depth.depth_m.size:
        dboxes = depth_boxes(depth, boxes)
        exclude = (pairs, dboxes[pairs[:, 1]]) if cfg.occlusion_aware else None
        zd, frac = box_depths(
            depth.depth_m, dboxes, cfg.central_fraction, cfg.samples, cfg.percentile, exclude
        )
        from_map = np.isfinite(zd) & (frac >= cfg.min_valid_fraction)
        z = np.where(from_map, zd, np.nan)
        source = from_map * np.uint8(SOURCE_DEPTH_MAP)  # SOURCE_NONE (0) elsewhere
    else:
        z = np.full(n, np.nan)
        source = np.zeros(n, np.uint8)
    from_detection = None
    if detection_depth_m is not None:
        dd = np.asarray(detection_depth_m, np.float64).reshape(-1)
        from_detection = (source == SOURCE_NONE) & np.isfinite(dd) & (dd > 0)
        z = np.where(from_detection, dd, z)
        source = np.where(from_detection, np.uint8(SOURCE_DETECTION), source)
    sig_z = depth_sigma(z, cfg)
    if from_detection is not None:
        sig_z = np.where(from_detection, sig_z * cfg.fallback_sigma_scale, sig_z)

    # Rays of the box centre, the four edge midpoints (left, right, top, bottom) and the point
    # a pixel below the bottom one (the ground prior's slope), undistorted in one call.
    uv = np.empty((6, n, 2))
    uv[:4] = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    uv[1:3, :, 0] = boxes[:, 0::2].T
    uv[3, :, 1] = boxes[:, 1]
    _ground_points_into(uv[4:], boxes)
    xy = camera.undistort_points(uv.reshape(-1, 2)).reshape(6, n, 2)  # normalized coordinates
    rays = np.ones((3, n, 3))  # centre, bottom, below the bottom; camera frame, z = 1
    rays[0, :, :2] = xy[0]
    rays[1:, :, :2] = xy[4:]
    if cfg.ground_prior:
        zg, sg = _ground_depths_of_rays(camera, rays[1:].reshape(-1, 3), cfg)
        z, sig_z, source = _fuse_ground(camera, boxes, pairs, z, sig_z, source, zg, sg, cfg)

    # Metric width and height: x of right - left and y of bottom - top, at the depth.
    spans = xy[2:5:2] - xy[1:4:2]  # (2, n, 2)
    sizes = np.abs(spans.diagonal(axis1=0, axis2=2)) * z[:, None]
    ray = rays[0]
    p = ray * z[:, None]
    offsets = _centre_offsets(cfg, class_ids, class_names)
    if offsets is not None:
        # Move from the visible surface to the object centre along the ray (per class).
        norm = np.sqrt(np.add.reduce(ray * ray, axis=1, keepdims=True))
        p += ray / norm * offsets[:, None]
    R, t = camera.T_vehicle_camera[:3, :3], camera.T_vehicle_camera[:3, 3]
    # Covariance: first-order propagation of the pixel and depth noise through
    # p = (x_n z, y_n z, z) with x_n = (u - cx) / fx (pinhole Jacobian J; the distortion's
    # effect on it is second order), in the camera frame, then rotated to the vehicle frame.
    J = np.zeros((n, 3, 3))
    J[:, 0, 0] = z / camera.K[0, 0]
    J[:, 1, 1] = z / camera.K[1, 1]
    J[:, :2, 2] = xy[0]
    J[:, 2, 2] = 1.0
    var = np.zeros((n, 3, 3))
    var[:, 0, 0] = var[:, 1, 1] = cfg.pixel_sigma_px**2
    var[:, 2, 2] = sig_z**2
    cov = R @ (J @ var @ np.swapaxes(J, 1, 2)) @ R.T
    cov[source == SOURCE_NONE] = np.nan  # matrix products need not carry NaN through zeros
    return LiftedObjects(p @ R.T + t, cov, p, z, sizes, source)


def _centre_offsets(
    cfg: LiftingConfig, class_ids: np.ndarray | None, class_names: list[str] | None
) -> np.ndarray | None:
    """Per detection, the distance from its visible surface to its centre (None: no offsets)."""
    if not (cfg.centre_offset_m and class_ids is not None and class_names is not None):
        return None
    per_class = [cfg.centre_offset_m.get(str(name), 0.0) for name in class_names]
    # Looked up at id + 1 with clipping: ids out of range land on a zero at either end.
    table = np.array([0.0, *per_class, 0.0])
    return table.take(np.asarray(class_ids).reshape(-1) + 1, mode="clip")


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
    uv = np.empty((2, n, 2))
    _ground_points_into(uv, b)
    rays = np.ones((2 * n, 3))  # camera frame, z = 1: the scale is the depth
    rays[:, :2] = camera.undistort_points(uv.reshape(-1, 2))
    return _ground_depths_of_rays(camera, rays, cfg)


def _ground_points_into(uv: np.ndarray, boxes: np.ndarray) -> None:
    """Write into ``uv`` (2, N, 2) each box's bottom-edge midpoint, then the point a pixel
    below it (the ground depth's sensitivity to the bottom edge)."""
    uv[:, :, 0] = 0.5 * (boxes[:, 0] + boxes[:, 2])
    uv[0, :, 1] = boxes[:, 3]
    np.add(boxes[:, 3], 1.0, out=uv[1, :, 1])


def _ground_depths_of_rays(
    camera: CameraModel, rays: np.ndarray, cfg: LiftingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ground_depths` from the rays (2N, 3) (z = 1) of the bottom-edge midpoints, then
    of the points a pixel below them."""
    R, t = camera.T_vehicle_camera[:3, :3], camera.T_vehicle_camera[:3, 3]
    down = rays @ R[2]  # vehicle z component of each ray
    s = np.full(len(rays), np.nan)
    np.divide(cfg.ground_z_m - t[2], down, out=s, where=down < -1e-9)
    s = np.where((s > 0) & (s <= cfg.ground_max_m), s, np.nan)
    n = len(s) // 2
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
    zg: np.ndarray,
    sg: np.ndarray,
    cfg: LiftingConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance fusion of each box's depth with its ground-plane depth `zg` (std `sg`).

    Only boxes whose bottom edge is the object's ground contact: not cut by the image's lower
    border and not overlapped by a nearer box (which would hide the bottom: the edge would be
    the occluder's top). Where the two disagree by more than ``ground_gate_chi2`` (squared,
    in combined stds) the box is not on the road as assumed (a false positive, a slope) and
    keeps its own depth; where there is no other depth, the ground depth is used alone.
    """
    usable = np.isfinite(zg) & (boxes[:, 3] < camera.height - 1.0 - cfg.ground_border_px)
    usable[pairs[:, 0]] = False
    have = source != SOURCE_NONE
    var, var_g = sig_z**2, sg**2
    var_sum = var + var_g
    fuse = usable & have
    fuse &= (z - zg) ** 2 <= cfg.ground_gate_chi2 * var_sum  # NaN rows compare False
    alone = usable & ~have
    w = var_g / var_sum
    z = np.where(fuse, w * z + (1.0 - w) * zg, np.where(alone, zg, z))
    sig_z = np.where(fuse, np.sqrt(var * var_g / var_sum), np.where(alone, sg, sig_z))
    return z, sig_z, np.where(alone, np.uint8(SOURCE_GROUND), source)
