"""Assemble the boxes of one instant: agents (built from their parts), props, sidewalks."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from perception.synth import shapes
from perception.synth.agents import AgentState
from perception.synth.appearance import Appearance
from perception.synth.layout import RoadLayout
from perception.synth.props import SIDEWALK, PropSet
from perception.synth.raster import BoxBatch


def agent_parts(a: AgentState) -> shapes.Parts:
    if a.cls == "car":
        return shapes.car(a.length, a.width, a.height)
    if a.cls == "truck":
        return shapes.truck(a.length, a.width, a.height)
    if a.cls == "pedestrian":
        moving = math.hypot(a.vx, a.vy) > 0.2
        return shapes.pedestrian(a.length, a.width, a.height, a.gait, moving)
    if a.cls == "cyclist":
        return shapes.cyclist(a.length, a.width, a.height, a.gait)
    raise ValueError(f"unknown agent class {a.cls!r}")


DETAIL_PX = 24.0  # agents less high than this on screen are built from fewer boxes ...
SINGLE_BOX_PX = 10.0  # ... and those less high than this from a single box
SHADOW_MAX_M = 80.0  # agents farther from the camera cast no shadow (too small to matter)


class AgentBuilder:
    """Turns agent states into boxes; rigid agents' parts are cached by track id."""

    def __init__(self, appearance: Appearance, cache_size: int = 2048) -> None:
        self.appearance = appearance
        self._cache: OrderedDict[tuple[int, int], tuple[shapes.Parts, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def _parts(self, a: AgentState, lod: int) -> tuple[shapes.Parts, np.ndarray]:
        """Parts and their material ids; lod 0 full, 1 fewer boxes, 2 one box."""
        animated = lod == 0 and a.cls in ("pedestrian", "cyclist")
        key = (a.track_id, lod)
        if not animated:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        if lod == 2:
            parts = shapes.single_box(a.cls, a.length, a.width, a.height)
        elif lod == 1:
            parts = shapes.far_detail(a.cls, a.length, a.width, a.height)
        else:
            parts = agent_parts(a)
        out = (parts, self.appearance.agent_materials(a.cls, a.look, parts.slots))
        if not animated:
            self._cache[key] = out
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def boxes(
        self,
        agents: list[AgentState],
        camera_xy: tuple[float, float] = (0.0, 0.0),
        focal_px: float = 0.0,
    ) -> BoxBatch:
        """All parts of all agents, owner k + 1 for agent k.

        The level of detail follows the agent's height on screen, estimated from its distance
        to the camera and the focal length `focal_px` (0 keeps full detail everywhere).
        """
        if not agents:
            return empty_batch()
        centres, sizes, mats, owners, poses = [], [], [], [], []
        for k, a in enumerate(agents):
            dist = math.hypot(a.x - camera_xy[0], a.y - camera_xy[1])
            height_px = focal_px * a.height / max(dist, 1e-6) if focal_px > 0 else math.inf
            lod = 2 if height_px < SINGLE_BOX_PX else 1 if height_px < DETAIL_PX else 0
            parts, materials = self._parts(a, lod)
            n = len(parts.centres)
            centres.append(parts.centres)
            sizes.append(parts.sizes)
            mats.append(materials)
            owners.append(np.full(n, k + 1, np.int32))
            poses.append(np.repeat([[a.x, a.y, a.z, a.yaw]], n, axis=0))
        pose = np.concatenate(poses)
        local = np.concatenate(centres)
        c, s = np.cos(pose[:, 3]), np.sin(pose[:, 3])
        world = np.column_stack(
            [
                pose[:, 0] + c * local[:, 0] - s * local[:, 1],
                pose[:, 1] + s * local[:, 0] + c * local[:, 1],
                pose[:, 2] + local[:, 2],
            ]
        )
        return BoxBatch(
            world, np.concatenate(sizes), pose[:, 3], np.concatenate(mats), np.concatenate(owners)
        )


def shadow_boxes(agents: list[AgentState], camera_xy: tuple[float, float]) -> BoxBatch:
    """The full 3D box of each agent near enough to cast a visible shadow."""
    near = [
        (k, s)
        for k, s in enumerate(agents)
        if math.hypot(s.x - camera_xy[0], s.y - camera_xy[1]) < SHADOW_MAX_M
    ]
    if not near:
        return empty_batch()
    a = np.array(
        [[s.x, s.y, s.z + s.height / 2, s.length, s.width, s.height, s.yaw] for _, s in near]
    )
    n = len(near)
    return BoxBatch(
        a[:, :3],
        a[:, 3:6],
        a[:, 6],
        np.zeros((n, 6), np.int32),
        np.array([k + 1 for k, _ in near], np.int32),
    )


def prop_boxes(props: PropSet, appearance: Appearance) -> BoxBatch:
    return BoxBatch(
        props.centres,
        props.sizes,
        props.yaws,
        appearance.prop_materials(props.kinds, props.looks),
        np.zeros(len(props), np.int32),
    )


def sidewalk_boxes(
    layout: RoadLayout, appearance: Appearance, x_min: float, x_max: float
) -> BoxBatch:
    """The raised sidewalks as two long boxes, ends snapped to the paving pattern so the
    texture stays fixed to the world as the ego moves."""
    kit = appearance.prop_kits[SIDEWALK, 0]
    step = appearance.sidewalk_period_m
    x0 = math.floor(x_min / step) * step
    x1 = math.ceil(x_max / step) * step
    rows = []
    for side in layout.sides:
        y = side.y(side.kerb_m + side.sidewalk_m / 2)
        rows.append(
            [
                (x0 + x1) / 2,
                y,
                layout.kerb_height_m / 2,
                x1 - x0,
                side.sidewalk_m,
                layout.kerb_height_m,
            ]
        )
    a = np.asarray(rows)
    return BoxBatch(a[:, :3], a[:, 3:6], np.zeros(2), np.stack([kit, kit]), np.zeros(2, np.int32))


def empty_batch() -> BoxBatch:
    return BoxBatch(
        np.zeros((0, 3)),
        np.zeros((0, 3)),
        np.zeros(0),
        np.zeros((0, 6), np.int32),
        np.zeros(0, np.int32),
    )
