"""Render one instant of the world through a pinhole camera: ground, sky, shadows, boxes.

The camera is rigidly mounted on the ego vehicle, which stays level on the flat road, so the
ground as seen from each pixel (its exact inverse depth, and the point it hits in the vehicle
frame) never changes during a drive: `CameraView` computes it once. Per frame only the ego's
pose moves the atlas lookup. Lens distortion is ignored: frames are rendered as the ideal
pinhole image of K (the same K the labels use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.camera import CameraModel
from perception.synth.appearance import Appearance
from perception.synth.ground import (
    LEVEL_MAX_FOOTPRINT_M,
    GroundAtlas,
    build_atlas,
    sky_image,
)
from perception.synth.layout import RoadLayout
from perception.synth.raster import (
    BoxBatch,
    Canvas,
    Rasteriser,
    Silhouette,
    box_corners,
    clip_near,
    cv_scalar,
)
from perception.synth.rng import APPEARANCE, rng_for

MAX_GROUND_DISTANCE_M = 20000.0  # farther rays count as sky
MAX_LOOKUP_M = 4000.0  # ground points farther than this read the atlas as if this far (the
# haze hides them, and cv2.remap holds coordinates in 16 bits)


def yaw_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """4x4 pose of a frame at (x, y, 0) rotated by yaw about Z."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[0, 3], T[1, 3] = x, y
    return T


class CameraView:
    """Per-pixel geometry of the ground and sky for a camera mounted on the vehicle."""

    def __init__(self, camera: CameraModel) -> None:
        self.camera = camera
        H, W = camera.height, camera.width
        K = np.asarray(camera.K, np.float64)
        u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
        rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1 rays, camera
        T_vc = camera.T_vehicle_camera
        R_vc, t_vc = T_vc[:3, :3], T_vc[:3, 3]
        self.height_m = float(t_vc[2])
        if self.height_m <= 0:
            raise ValueError("the camera must be mounted above the road (translation z > 0)")
        up_cam = R_vc.T @ np.array([0.0, 0.0, 1.0])
        denom = rays @ up_cam  # rays' rise per unit depth
        inv = np.where(denom < 0, -denom / self.height_m, 0.0)
        self.ground_mask = inv > 1.0 / MAX_GROUND_DISTANCE_M
        self.sky_mask = ~self.ground_mask
        self.ground_inv_depth = np.where(self.ground_mask, inv, 0.0).astype(np.float32)
        z = np.where(self.ground_mask, 1.0 / np.maximum(inv, 1e-12), 0.0)
        pts_v = (rays * z[..., None]) @ R_vc.T + t_vc
        reach = np.maximum(np.hypot(pts_v[..., 0], pts_v[..., 1]) / MAX_LOOKUP_M, 1.0)
        self.xv = np.where(self.ground_mask, pts_v[..., 0] / reach, 0.0).astype(np.float32)
        self.yv = np.where(self.ground_mask, pts_v[..., 1] / reach, 0.0).astype(np.float32)
        # X footprint of each pixel: how far along the road the next row down lies
        fp = np.abs(
            np.diff(pts_v[..., 0], axis=0, append=pts_v[-1:, :, 0] * 2 - pts_v[-2:-1, :, 0])
        )
        fp = np.maximum(fp, np.abs(np.diff(pts_v[..., 0], axis=1, append=pts_v[:, -1:, 0])))
        self.level = np.zeros((H, W), np.int8)
        for i, limit in enumerate(LEVEL_MAX_FOOTPRINT_M):
            self.level[fp > limit] = i + 1
        dirs = rays @ R_vc.T
        self.rays_vehicle = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        rows = np.flatnonzero(self.ground_mask.any(1))
        self.ground_rows = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)
        r0, r1 = self.ground_rows
        self.band_has_sky = bool(self.sky_mask[r0:r1].any())
        # per level: the row band it occupies and its mask there
        self.level_bands: list[tuple[int, int, np.ndarray, float]] = []
        for i in range(len(LEVEL_MAX_FOOTPRINT_M) + 1):
            sel = self.ground_mask & (self.level == i)
            rr = np.flatnonzero(sel.any(1))
            if len(rr):
                a, b = int(rr[0]), int(rr[-1]) + 1
                ext = float(np.abs(self.xv[sel]).max() + np.abs(self.yv[sel]).max())
                self.level_bands.append((a, b, sel[a:b].astype(np.uint8), ext))
            else:
                self.level_bands.append((0, 0, np.zeros((0, W), np.uint8), 0.0))


@dataclass
class RenderOutput:
    image: np.ndarray  # BGR uint8, before sensor effects and haze
    inv_depth: np.ndarray  # float32, 1/z, 0 where nothing (sky)
    owner: np.ndarray  # int16, agent index + 1, 0 elsewhere
    silhouettes: dict[int, Silhouette]
    faces_drawn: int


class Renderer:
    """Draws scenes of one drive (its appearance) through one camera."""

    def __init__(
        self,
        camera: CameraModel,
        appearance: Appearance,
        seed: int,
        near_m: float,
        shadows: bool = True,
    ) -> None:
        self.camera = camera
        self.view = CameraView(camera)
        self.appearance = appearance
        self.near = near_m
        self.shadows = shadows
        rng = rng_for(seed, APPEARANCE, 1)
        self.atlas: GroundAtlas | None = None
        self.sky = sky_image(self.view.rays_vehicle, appearance.sky, rng)
        self._ground_u8 = self.view.ground_mask.astype(np.uint8)
        self.raster = Rasteriser(
            camera.K, camera.width, camera.height, near_m, appearance.materials, appearance.lighting
        )
        lit = appearance.lighting
        sun_z = max(lit.sun_dir[2], 0.0)
        full = lit.ambient_bgr + sun_z * lit.sun_bgr
        gain = lit.ambient_bgr / np.maximum(full, 1e-6)
        self.shadow_gain = (float(gain[0]), float(gain[1]), float(gain[2]), 0.0)

    def set_atlas(self, atlas: GroundAtlas) -> None:
        self.atlas = atlas

    def build_atlas(self, layout: RoadLayout, seed: int) -> None:
        """Paint the drive's road surface and use it from now on."""
        self.set_atlas(build_atlas(layout, rng_for(seed, APPEARANCE, 2), self.appearance.lighting))

    # -- frame ----------------------------------------------------------------------------
    def ground(self, ego_x: float, ego_y: float, ego_yaw: float) -> np.ndarray:
        """Ground and sky colours for the ego at this pose.

        Each ground pixel reads the atlas at its world point (X, Y) = ego pose applied to the
        pixel's fixed vehicle-frame ground point; the maps are one `cv2.addWeighted` each.
        """
        atlas = self.atlas
        assert atlas is not None, "set_atlas() first"
        v = self.view
        img = self.sky.copy()
        r0, r1 = v.ground_rows
        if r1 <= r0:
            return img
        c, s = math.cos(ego_yaw), math.sin(ego_yaw)
        cols = atlas.levels[0].shape[1]
        k_y = 1.0 / atlas.res_m
        xv, yv = v.xv[r0:r1], v.yv[r0:r1]
        # atlas column from world Y (the levels are stored with X down the rows, so that an
        # image row, which runs across the road, reads one atlas row: cache-friendly)
        lateral = cv2.addWeighted(xv, -s * k_y, yv, -c * k_y, (atlas.half_width_m - ego_y) * k_y)
        np.minimum(np.maximum(lateral, 0.0, out=lateral), cols - 1.0, out=lateral)
        band = img[r0:r1]
        for level, (a, b, mask, extent) in enumerate(v.level_bands):
            if b <= a:
                continue
            # X wraps around the period; keep coordinates positive (wrapping negative ones
            # leaves a seam)
            x_off = (
                ego_x % atlas.period_m + (math.ceil(extent / atlas.period_m) + 1) * atlas.period_m
            )
            k = atlas.level_rows_per_m[level]
            along = cv2.addWeighted(v.xv[a:b], c * k, v.yv[a:b], -s * k, x_off * k)
            # fixed-point maps first: remap is about twice as fast on them
            m1, m2 = cv2.convertMaps(lateral[a - r0 : b - r0], along, cv2.CV_16SC2)
            part = cv2.remap(
                atlas.levels[level], m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
            )
            cv2.copyTo(part, mask, band[a - r0 : b - r0])
        return img

    def render(
        self,
        T_world_vehicle: np.ndarray,
        ego_yaw: float,
        boxes: BoxBatch,
        shadow_boxes: BoxBatch | None,
    ) -> RenderOutput:
        """Render boxes (owner k >= 1: agent k - 1) for the ego at this pose; shadow_boxes:
        the agents' full boxes, whose shadows darken the road."""
        T_wc = T_world_vehicle @ self.camera.T_vehicle_camera
        R_cw = T_wc[:3, :3].T
        t_cw = -R_cw @ T_wc[:3, 3]
        img = self.ground(float(T_world_vehicle[0, 3]), float(T_world_vehicle[1, 3]), ego_yaw)
        canvas = Canvas(img, self.view.ground_inv_depth.copy())
        if self.shadows and shadow_boxes is not None and len(shadow_boxes):
            self._shadows(canvas, shadow_boxes, R_cw, t_cw)
        sil = self.raster.draw(canvas, boxes, R_cw, t_cw)
        return RenderOutput(
            canvas.image, canvas.inv_depth, canvas.owner, sil, self.raster.faces_drawn
        )

    def _shadows(self, canvas: Canvas, boxes: BoxBatch, R_cw: np.ndarray, t_cw: np.ndarray) -> None:
        """Darken the road where agents block the sun (a box's shadow is the hull of its
        corners pushed along the sun direction onto Z = 0)."""
        sun = self.appearance.lighting.sun_dir
        if sun[2] < 0.05:
            return
        corners = box_corners(boxes.centres, boxes.sizes, boxes.yaws)  # (M, 8, 3)
        flat = corners - (corners[..., 2:3] / sun[2]) * sun[None, None, :]
        flat[..., 2] = 0.0
        cam = flat @ R_cw.T + t_cw
        z = cam[..., 2]
        H, W = canvas.inv_depth.shape
        K = np.asarray(self.camera.K, np.float64)
        uvw = cam @ K.T
        uv = uvw[..., :2] / np.maximum(uvw[..., 2:3], 1e-9)
        front = z.min(1) >= self.near
        show = (z.max(1) > self.near) & ~(
            front
            & (
                (uv[..., 0].max(1) < 0)
                | (uv[..., 1].max(1) < 0)
                | (uv[..., 0].min(1) >= W)
                | (uv[..., 1].min(1) >= H)
            )
        )
        mask = np.zeros((H, W), np.uint8)
        drawn = False
        for i in np.flatnonzero(show):
            if front[i]:  # projecting keeps convexity for points in front of the camera
                hull = cv2.convexHull(uv[i].astype(np.float32)).reshape(-1, 2)
            else:  # part behind the camera: clip the world hull at the near plane
                rel = (flat[i, :, :2] - boxes.centres[i, :2]).astype(np.float32)
                ring = cv2.convexHull(rel).reshape(-1, 2).astype(np.float64) + boxes.centres[i, :2]
                poly = clip_near(
                    np.column_stack([ring, np.zeros(len(ring))]) @ R_cw.T + t_cw, self.near
                )
                if len(poly) < 3:
                    continue
                p = poly @ K.T
                hull = p[:, :2] / p[:, 2:3]
            cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1, cv2.LINE_8, 4)
            drawn = True
        if not drawn:
            return
        cv2.bitwise_and(mask, self._ground_u8, dst=mask)
        rows = np.flatnonzero(mask.any(1))
        cols = np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            return
        sl = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        region = canvas.image[sl]
        dark = cv2.multiply(region, cv_scalar(*self.shadow_gain))
        cv2.copyTo(dark, mask[sl], region)
