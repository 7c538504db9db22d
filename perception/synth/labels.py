"""Ground truth of a rendered frame: one `ObjectLabel` per agent that can be seen.

Definitions (docs/synthetic.md):

* ``box_xyxy``: the agent's *visible* pixels (from the owner buffer) span columns u0..u1 and
  rows v0..v1; the box is [u0, v0, u1, v1], the centres of the extreme pixels (pixel centres
  at integer coordinates). This is KITTI's convention (0-based pixel indices), and it is the
  unbiased estimate of the surface's true extent: the rasteriser covers a pixel when a face
  passes within about half a pixel of its centre.
* ``occlusion``: 1 - visible pixels / pixels the agent would cover in the image if no other
  object hid it (its own parts do not count as occluders, the road and sky never occlude).
* ``truncation``: the share of the projected 3D box's bounding rectangle that lies outside
  the image (the box is clipped to the near plane first).
* an agent with at least one visible pixel is *labelled* when it has >= ``min_visible_px``
  visible pixels and a visible box at least ``min_box_height_px`` high; otherwise it is
  listed in ``SynthFrame.ignored`` (a "don't care" region) and not in ``objects``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.synth.agents import AgentState
from perception.synth.raster import FACE_CORNERS, Silhouette, box_corners, clip_near


@dataclass(frozen=True)
class ObjectLabel:
    """One object of one frame. Camera frame: x right, y down, z forward; vehicle frame:
    x forward, y left, z up. Sizes are the full box (length along the heading, width, height)."""

    track_id: int
    class_name: str
    box_xyxy: np.ndarray  # (4,) float32, [u0, v0, u1, v1] of the visible pixels
    truncation: float  # 0..1
    occlusion: float  # 0..1
    visible_px: int
    size_lwh: np.ndarray  # (3,) metres
    center_cam: np.ndarray  # (3,) centre of the 3D box, camera frame
    yaw_cam: float  # KITTI rotation_y: about the camera y axis, 0 = heading along +x_cam
    center_vehicle: np.ndarray  # (3,)
    yaw_vehicle: float  # heading about the vehicle z axis, 0 = same heading as the ego
    velocity_vehicle: np.ndarray  # (3,) velocity over ground, in vehicle axes, m/s
    relative_velocity_vehicle: np.ndarray  # (3,) rate of change of center_vehicle, m/s

    @property
    def depth_m(self) -> float:
        """z of the 3D box centre in the camera frame (the per-object depth of the datasets)."""
        return float(self.center_cam[2])


def wrap_angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def truncation(
    corners_cam: np.ndarray, K: np.ndarray, width: int, height: int, near: float
) -> float:
    """Share of the projected box's bounding rectangle outside the image."""
    if corners_cam[:, 2].min() >= near:
        pts = corners_cam
    else:
        clipped = [clip_near(corners_cam[face], near) for face in FACE_CORNERS]
        clipped = [c for c in clipped if len(c)]
        if not clipped:
            return 1.0
        pts = np.concatenate(clipped)
    p = pts @ K.T
    uv = p[:, :2] / p[:, 2:3]
    x0, y0 = uv.min(0).tolist()
    x1, y1 = uv.max(0).tolist()
    full = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    ix = max(0.0, min(x1, width - 0.5) - max(x0, -0.5))
    iy = max(0.0, min(y1, height - 0.5) - max(y0, -0.5))
    return min(max(1.0 - ix * iy / full, 0.0), 1.0)


@dataclass
class EgoState:
    """The ego vehicle in the world frame at a frame's capture time."""

    x: float
    y: float
    yaw: float
    vx: float
    vy: float
    yaw_rate: float

    @property
    def speed_mps(self) -> float:
        return math.hypot(self.vx, self.vy)


def make_labels(
    agents: list[AgentState],
    owner: np.ndarray,
    silhouettes: dict[int, Silhouette],
    inv_depth: np.ndarray,
    background_inv_depth: np.ndarray,
    T_world_vehicle: np.ndarray,
    T_vehicle_camera: np.ndarray,
    ego: EgoState,
    K: np.ndarray,
    near: float,
    min_visible_px: int,
    min_box_height_px: float,
) -> tuple[list[ObjectLabel], list[ObjectLabel]]:
    """Labels of the agents that show: (labelled, ignored).

    `inv_depth` is the rendered inverse depth and `background_inv_depth` that of the bare road
    and sky: silhouette pixels where the bare background still shows are edge pixels the
    face masks cover generously, not occluded ones, and do not count.
    """
    if not agents:
        return [], []
    height, width = owner.shape
    counts = np.bincount(owner.ravel().astype(np.int64), minlength=len(agents) + 1)
    T_wc = T_world_vehicle @ T_vehicle_camera
    R_cw, t_cw = T_wc[:3, :3].T, -T_wc[:3, :3].T @ T_wc[:3, 3]
    R_vw = T_world_vehicle[:3, :3].T
    t_vw = -R_vw @ T_world_vehicle[:3, 3]
    labelled: list[ObjectLabel] = []
    ignored: list[ObjectLabel] = []
    shown = [k for k in range(len(agents)) if counts[k + 1] > 0 and (k + 1) in silhouettes]
    if not shown:
        return labelled, ignored
    not_bare = cv2.compare(inv_depth, background_inv_depth, cv2.CMP_NE)  # 255 where drawn on
    # 3D quantities of all shown agents at once
    sel = [agents[k] for k in shown]
    st = np.array(
        [
            [a.x, a.y, a.z + a.height / 2, a.length, a.width, a.height, a.yaw, a.vx, a.vy]
            for a in sel
        ]
    )
    centres_w, sizes, yaws = st[:, 0:3], st[:, 3:6], st[:, 6]
    corners_c = box_corners(centres_w, sizes, yaws) @ R_cw.T + t_cw
    centres_c = centres_w @ R_cw.T + t_cw
    headings_w = np.column_stack([np.cos(yaws), np.sin(yaws), np.zeros(len(sel))])
    headings_c = headings_w @ R_cw.T
    centres_v = centres_w @ R_vw.T + t_vw
    v_world = np.column_stack([st[:, 7], st[:, 8], np.zeros(len(sel))])
    v_vehicle = v_world @ R_vw.T
    v_ego_vehicle = R_vw @ np.array([ego.vx, ego.vy, 0.0])
    # d/dt of R^T (p - e) = R^T (v - v_ego) - yaw_rate * z x p_vehicle
    spin = ego.yaw_rate * np.column_stack([-centres_v[:, 1], centres_v[:, 0], np.zeros(len(sel))])
    rel = v_vehicle - v_ego_vehicle - spin
    for j, k in enumerate(shown):
        a = agents[k]
        visible = int(counts[k + 1])
        sil = silhouettes[k + 1]
        h, w = sil.mask.shape
        mine = owner[sil.y0 : sil.y0 + h, sil.x0 : sil.x0 + w] == k + 1
        rows = np.flatnonzero(mine.any(1))
        cols = np.flatnonzero(mine.any(0))
        box = np.array(
            [sil.x0 + cols[0], sil.y0 + rows[0], sil.x0 + cols[-1], sil.y0 + rows[-1]], np.float32
        )
        region = np.s_[sil.y0 : sil.y0 + h, sil.x0 : sil.x0 + w]
        covered = cv2.bitwise_and(sil.mask, not_bare[region])
        unoccluded = max(cv2.countNonZero(covered), visible)
        hc = headings_c[j]
        label = ObjectLabel(
            track_id=a.track_id,
            class_name=a.cls,
            box_xyxy=box,
            truncation=truncation(corners_c[j], K, width, height, near),
            occlusion=min(max(1.0 - visible / unoccluded, 0.0), 1.0),
            visible_px=visible,
            size_lwh=sizes[j].copy(),
            center_cam=centres_c[j].copy(),
            yaw_cam=wrap_angle(math.atan2(-hc[2], hc[0])),
            center_vehicle=centres_v[j].copy(),
            yaw_vehicle=wrap_angle(a.yaw - ego.yaw),
            velocity_vehicle=v_vehicle[j].copy(),
            relative_velocity_vehicle=rel[j].copy(),
        )
        ok = visible >= min_visible_px and float(box[3] - box[1]) >= min_box_height_px
        (labelled if ok else ignored).append(label)
    return labelled, ignored
