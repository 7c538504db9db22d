"""Simulated detections with ground truth, for testing and benchmarking the tracker.

Cars and pedestrians move at constant velocity in the vehicle frame; their 3D boxes are
projected through a calibrated camera to image boxes; a low-resolution depth map is drawn (the
ground plane, then objects near to far, each at its nearest face's depth) which also gives each
object's occluded fraction. Detections are the visible ground-truth boxes with box noise,
dropouts, scores that fall with occlusion (the low-score detections ByteTrack recovers),
occasional wrong classes, and random false positives. Depth gets a per-object, per-frame
relative error (like a network's) plus per-pixel noise and holes.

This is not the rendered synthetic drive of ``perception.synth``: it has no pixels to detect
on, only geometry, which is what tracking and lifting need and what makes the tests fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.camera import CameraModel
from perception.msgs import DepthMap

CLASS_NAMES = ["car", "pedestrian"]
_SIZES_LWH = {0: (4.5, 1.8, 1.5), 1: (0.6, 0.6, 1.75)}


@dataclass
class SimConfig:
    seed: int = 0
    duration_s: float = 20.0
    fps: float = 10.0
    objects: int = 8  # objects alive at a time, on average
    pedestrian_fraction: float = 0.3
    pedestrian_range_m: tuple[float, float] = (6.0, 30.0)  # where pedestrians cross the road
    max_range_m: float = 60.0
    box_noise_rel: float = 0.03  # std of each box edge, fraction of the box size
    dropout: float = 0.1  # probability a visible object is not detected in a frame
    false_positives_per_frame: float = 0.5
    wrong_class: float = 0.1  # probability a detection carries a wrong class
    depth_noise_rel: float = 0.05  # per object and frame, relative depth error (std)
    depth_pixel_noise_rel: float = 0.02  # per pixel, relative (std)
    depth_holes: float = 0.05  # fraction of depth pixels with no depth (0)
    depth_downscale: int = 4  # depth map resolution = image / this
    frame_drop: float = 0.0  # probability that a frame is missing (a gap in the stamps)
    min_visible: float = 0.3  # objects less visible than this are not ground truth


@dataclass
class SimObject:
    object_id: int
    class_id: int
    birth_s: float
    death_s: float
    position0: np.ndarray  # (3,) centre in the vehicle frame at birth
    velocity: np.ndarray  # (3,) m/s
    size_lwh: np.ndarray  # (3,)

    def position(self, t: float) -> np.ndarray:
        return self.position0 + self.velocity * (t - self.birth_s)


@dataclass
class SimFrame:
    stamp_ns: int
    # ground truth of the visible objects
    gt_ids: np.ndarray  # (K,)
    gt_class_ids: np.ndarray  # (K,)
    gt_boxes_xyxy: np.ndarray  # (K, 4)
    gt_positions: np.ndarray  # (K, 3) object centres, vehicle frame
    gt_velocities: np.ndarray  # (K, 3)
    gt_visible: np.ndarray  # (K,) visible fraction
    # detections
    boxes_xyxy: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    det_gt_ids: np.ndarray  # (N,) ground-truth id, -1 for false positives
    det_depth_m: np.ndarray  # (N,) the detector's own per-object depth
    depth: DepthMap = field(default_factory=DepthMap)


def _populate(rng: np.random.Generator, cfg: SimConfig) -> list[SimObject]:
    """Traffic that lives for the whole drive and enters and leaves the view on its own.

    Cars drive in lanes: same-direction lanes (y < 0 and the ego lane, ahead) at small
    relative speeds, oncoming lanes (y > 0) at -14..-20 m/s relative to the ego; cars of a lane
    share its speed up to 0.3 m/s, so they rarely pass through each other. Pedestrians cross
    the road at 0.8-1.6 m/s. Count scales with `cfg.objects` (about that many in view).
    """
    objs: list[SimObject] = []
    lanes = [(-3.5, False), (0.0, False), (3.5, True), (7.0, True)]
    span = 60.0 + 20.0 * cfg.duration_s  # metres of road the traffic is spread over
    cars_per_lane = max(1, round(cfg.objects * (1 - cfg.pedestrian_fraction) * span / 140.0))
    for y, oncoming in lanes:
        speed = rng.uniform(-20.0, -14.0) if oncoming else rng.uniform(-3.0, 3.0)
        # Oncoming traffic starts ahead and comes towards the ego; same-direction traffic is
        # spread behind and ahead (a lane faster than the ego brings cars into view).
        lo = 8.0 if y == 0.0 else -span / 2
        x = (
            lo + np.cumsum(rng.uniform(20.0, 45.0, cars_per_lane))
            if not oncoming
            else (np.cumsum(rng.uniform(20.0, 45.0, cars_per_lane)))
        )
        for x0 in x:
            size = np.array(_SIZES_LWH[0]) * rng.uniform(0.9, 1.1, 3)
            pos = np.array([x0, y + rng.normal(0, 0.2), size[2] / 2])
            vel = np.array([speed + rng.normal(0, 0.3), 0.0, 0.0])
            objs.append(SimObject(len(objs) + 1, 0, 0.0, np.inf, pos, vel, size))
    peds = max(1, round(cfg.objects * cfg.pedestrian_fraction * (1 + cfg.duration_s / 20)))
    for _ in range(peds):
        size = np.array(_SIZES_LWH[1]) * rng.uniform(0.9, 1.1, 3)
        speed = rng.uniform(0.8, 1.6) * rng.choice([-1.0, 1.0])
        y0 = rng.uniform(-12.0, 12.0) - speed * rng.uniform(0, cfg.duration_s)
        pos = np.array([rng.uniform(*cfg.pedestrian_range_m), y0, size[2] / 2])
        vel = np.array([rng.normal(0.0, 0.2), speed, 0.0])
        objs.append(SimObject(len(objs) + 1, 1, 0.0, np.inf, pos, vel, size))
    return objs


_UNIT_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


def _box_corners(centres: np.ndarray, lwh: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of axis-aligned (heading along x) boxes."""
    return centres[:, None, :] + _UNIT_CORNERS[None] * lwh[:, None, :]


class TrackingSimulation:
    """Frames of a simulated scene; iterate with :meth:`frames`."""

    def __init__(self, camera: CameraModel, config: SimConfig | None = None) -> None:
        self.cam = camera
        self.cfg = config or SimConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        self.objects = _populate(self.rng, self.cfg)
        self._ground = self._ground_depth()

    def _ground_depth(self) -> np.ndarray:
        """Depth of the road plane (z = 0 in the vehicle frame) per depth pixel; 0 above the
        horizon or beyond max range."""
        s = self.cfg.depth_downscale
        dw, dh = self.cam.width // s, self.cam.height // s
        u, v = np.meshgrid(np.arange(dw) * s + (s - 1) / 2, np.arange(dh) * s + (s - 1) / 2)
        rays_cam = self.cam.backproject(np.column_stack([u.ravel(), v.ravel()]), 1.0)
        R = self.cam.T_vehicle_camera[:3, :3]
        height = self.cam.T_vehicle_camera[2, 3]
        rz = rays_cam @ R[2]  # vehicle-frame z component of each ray (per unit camera depth)
        with np.errstate(divide="ignore"):
            z = np.where(rz < -1e-6, -height / rz, 0.0)
        z[z > 2 * self.cfg.max_range_m] = 0.0
        return z.reshape(dh, dw)

    def frames(self) -> list[SimFrame]:
        cfg = self.cfg
        out = []
        n = round(cfg.duration_s * cfg.fps)
        for i in range(n):
            if i > 0 and self.rng.random() < cfg.frame_drop:
                continue
            out.append(self._frame(i / cfg.fps, round(i * 1e9 / cfg.fps)))
        return out

    def _frame(self, t: float, stamp_ns: int) -> SimFrame:
        cfg, cam, rng = self.cfg, self.cam, self.rng
        s = cfg.depth_downscale
        alive = [o for o in self.objects if o.birth_s <= t < o.death_s]
        # Project every alive object at once; keep those fully in front of the camera, within
        # range and mostly inside the image.
        centres = np.array([o.position(t) for o in alive]).reshape(-1, 3)
        sizes = np.array([o.size_lwh for o in alive]).reshape(-1, 3)
        near = np.linalg.norm(centres[:, :2], axis=1) <= cfg.max_range_m
        corners = _box_corners(centres[near], sizes[near])
        z_cam = cam.vehicle_to_camera(corners.reshape(-1, 3))[:, 2].reshape(-1, 8)
        front = np.all(z_cam >= 1.0, axis=1)
        idx = np.flatnonzero(near)[front]
        uv = cam.project_vehicle(corners[front].reshape(-1, 3))[0].reshape(-1, 8, 2)
        boxes = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)
        clipped = np.clip(boxes, 0, [cam.width - 1, cam.height - 1] * 2)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
        inside = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
        ok = (area > 0) & (inside >= 0.6 * area)
        cand = [
            (float(z_cam[front][k].min()), alive[i], clipped[k], centres[i])
            for k, i in enumerate(idx)
            if ok[k]
        ]
        cand.sort(key=lambda x: x[0])
        depth = self._ground.copy()
        painted = np.zeros(depth.shape, bool)
        gt = []
        for z_near, o, box, c in cand:
            u0, v0 = (
                int(np.floor((box[0] - (s - 1) / 2) / s)),
                int(np.floor((box[1] - (s - 1) / 2) / s)),
            )
            u1, v1 = (
                int(np.ceil((box[2] - (s - 1) / 2) / s)),
                int(np.ceil((box[3] - (s - 1) / 2) / s)),
            )
            u0, v0 = max(u0, 0), max(v0, 0)
            region = (slice(v0, v1 + 1), slice(u0, u1 + 1))
            occluded = float(painted[region].mean()) if painted[region].size else 1.0
            free = ~painted[region]
            depth[region][free] = z_near * (1.0 + rng.normal(0.0, cfg.depth_noise_rel))
            painted[region] = True
            if 1.0 - occluded >= cfg.min_visible:
                gt.append((o, box, c, 1.0 - occluded, z_near))
        depth *= 1.0 + rng.normal(0.0, cfg.depth_pixel_noise_rel, depth.shape)
        depth[rng.random(depth.shape) < cfg.depth_holes] = 0.0
        depth_msg = DepthMap(
            stamp_ns=stamp_ns,
            camera=cam.name,
            image_width=cam.width,
            image_height=cam.height,
            scale_x=float(s),
            scale_y=float(s),
            offset_x=(s - 1) / 2,
            offset_y=(s - 1) / 2,
            depth_m=np.clip(depth, 0, 65000).astype(np.float16),
        )
        # Detections: visible objects, minus dropouts, with noise; then false positives.
        det_boxes: list[np.ndarray] = []
        scores: list[float] = []
        classes: list[int] = []
        gids: list[int] = []
        ddepth: list[float] = []
        for o, box, _c, vis, z_near in gt:
            if rng.random() < cfg.dropout:
                continue
            wh = box[2:] - box[:2]
            noisy = box + rng.normal(0.0, cfg.box_noise_rel, 4) * np.tile(wh, 2)
            noisy[2:] = np.maximum(noisy[2:], noisy[:2] + 2.0)
            det_boxes.append(noisy)
            # Confidence falls with occlusion and with range (small, far objects).
            far = float(np.linalg.norm(_c[:2])) / cfg.max_range_m
            base = 0.95 - 0.7 * (1.0 - vis) - 0.25 * far**2
            scores.append(float(np.clip(base + rng.normal(0, 0.05), 0.05, 1)))
            cls = o.class_id if rng.random() >= cfg.wrong_class else 1 - o.class_id
            classes.append(cls)
            gids.append(o.object_id)
            ddepth.append(z_near * (1.0 + rng.normal(0.0, 2 * cfg.depth_noise_rel)))
        for _ in range(rng.poisson(cfg.false_positives_per_frame)):
            w, h = rng.uniform(15, 120), rng.uniform(15, 100)
            x, y = rng.uniform(0, cam.width - w), rng.uniform(cam.height * 0.3, cam.height - h)
            det_boxes.append(np.array([x, y, x + w, y + h]))
            scores.append(float(rng.uniform(0.1, 0.75)))
            classes.append(int(rng.integers(2)))
            gids.append(-1)
            ddepth.append(float(rng.uniform(5, 50)))
        k = len(gt)
        return SimFrame(
            stamp_ns=stamp_ns,
            gt_ids=np.array([g[0].object_id for g in gt], np.int64),
            gt_class_ids=np.array([g[0].class_id for g in gt], np.int64),
            gt_boxes_xyxy=np.array([g[1] for g in gt]).reshape(k, 4),
            gt_positions=np.array([g[2] for g in gt]).reshape(k, 3),
            gt_velocities=np.array([g[0].velocity for g in gt]).reshape(k, 3),
            gt_visible=np.array([g[3] for g in gt]),
            boxes_xyxy=np.array(det_boxes).reshape(-1, 4),
            scores=np.array(scores),
            class_ids=np.array(classes, np.int64),
            det_gt_ids=np.array(gids, np.int64),
            det_depth_m=np.array(ddepth),
            depth=depth_msg,
        )
