"""`SyntheticDrive`: an endless, seeded drive down a procedural street, frame by frame.

The world is a pure function of (seed, time): `frame(i)` renders time ``i / fps`` directly,
so frames can be asked for in any order (random access for training) and the same seed
always gives bit-identical frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from perception.camera import CameraModel
from perception.synth.agents import AgentState, Traffic
from perception.synth.appearance import Appearance
from perception.synth.classes import CLASSES
from perception.synth.config import DriveConfig
from perception.synth.labels import EgoState, ObjectLabel, make_labels
from perception.synth.layout import RoadLayout, draw_layout
from perception.synth.props import Roadside, draw_style
from perception.synth.raster import BoxBatch
from perception.synth.render import Renderer, yaw_pose
from perception.synth.rng import PROPS, rng_for
from perception.synth.scene import AgentBuilder, prop_boxes, shadow_boxes, sidewalk_boxes
from perception.synth.sensor import Sensor

BEHIND_M = 30.0  # scene extends this far behind the camera's view along the road
PROPS_BEYOND_M = 60.0  # roadside props are drawn this far past far_m (they fade in the haze)


@dataclass
class SynthFrame:
    """One rendered frame and its ground truth."""

    index: int
    stamp_ns: int  # capture time
    image_bgr: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32, z along the optical axis; 0 = no depth (sky, far)
    objects: list[ObjectLabel]  # labelled objects (see perception.synth.labels)
    ignored: list[ObjectLabel] = field(default_factory=list)  # visible but too small
    instance_map: np.ndarray | None = None  # (H, W) int32 track id per pixel, 0 = no agent
    ego: EgoState | None = None
    faces_drawn: int = 0

    @property
    def boxes_xyxy(self) -> np.ndarray:
        return np.array([o.box_xyxy for o in self.objects], np.float32).reshape(-1, 4)

    @property
    def class_ids(self) -> np.ndarray:
        return np.array([CLASSES.index(o.class_name) for o in self.objects], np.int64)

    @property
    def track_ids(self) -> np.ndarray:
        return np.array([o.track_id for o in self.objects], np.int64)


class SyntheticDrive:
    """A drive of one seed seen through one camera (rendered as an ideal pinhole of K)."""

    def __init__(self, seed: int, camera: CameraModel, config: DriveConfig | None = None) -> None:
        self.config = config = config or DriveConfig()
        config.validate()
        self.seed = int(seed)
        self.camera = camera
        self.layout: RoadLayout = draw_layout(self.seed, config.ego_speed_mps, config.ego_sway)
        self.appearance = Appearance(self.seed, self.layout)
        self.traffic = Traffic(self.seed, self.layout, config.traffic)
        self.roadside = Roadside(self.seed, self.layout, draw_style(rng_for(self.seed, PROPS, -1)))
        self.builder = AgentBuilder(self.appearance)
        self.renderer = Renderer(camera, self.appearance, self.seed, config.near_m, config.shadows)
        self.renderer.build_atlas(self.layout, self.seed)
        self.sensor = Sensor(
            self.seed, camera.width, camera.height, config.sensor, self.appearance.sky, config.fog
        )
        rays = self.renderer.view.rays_vehicle
        self._looks_ahead = bool((rays[..., 0] > 0).any())
        self._looks_behind = bool((rays[..., 0] < 0).any())

    # -- time -----------------------------------------------------------------------------
    def time_s(self, index: int) -> float:
        return index / self.config.fps

    def stamp_ns(self, index: int) -> int:
        return self.config.start_stamp_ns + round(index * 1e9 / self.config.fps)

    def ego(self, index: int) -> EgoState:
        return EgoState(*self.layout.ego_pose(self.time_s(index)))

    # -- world ----------------------------------------------------------------------------
    def _x_range(self, ego: EgoState, extra: float) -> tuple[float, float]:
        far = self.config.far_m + extra
        lo = ego.x - (far if self._looks_behind else BEHIND_M)
        hi = ego.x + (far if self._looks_ahead else BEHIND_M)
        return lo, hi

    def agents(self, index: int) -> list[AgentState]:
        """Agents near enough to be seen at frame `index` (within far_m of the ego)."""
        ego = self.ego(index)
        lo, hi = self._x_range(ego, 0.0)
        return self.traffic.at(self.time_s(index), lo, hi)

    def _camera_xy(self, ego: EgoState) -> tuple[float, float]:
        T_wc = yaw_pose(ego.x, ego.y, ego.yaw) @ self.camera.T_vehicle_camera
        return float(T_wc[0, 3]), float(T_wc[1, 3])

    def boxes(self, index: int, agents: list[AgentState]) -> BoxBatch:
        """Every box of the scene at frame `index`: agents (owner k + 1) then props (owner 0)."""
        ego = self.ego(index)
        focal = float(min(self.camera.K[0, 0], self.camera.K[1, 1]))
        batches = [self.builder.boxes(agents, self._camera_xy(ego), focal)]
        if self.config.roadside:
            lo, hi = self._x_range(ego, PROPS_BEYOND_M)
            batches.append(prop_boxes(self.roadside.in_range(lo, hi), self.appearance))
            batches.append(sidewalk_boxes(self.layout, self.appearance, lo, hi))
        return BoxBatch.concat(batches)

    # -- frames ---------------------------------------------------------------------------
    def frame(self, index: int) -> SynthFrame:
        """Render frame `index` (any order; the same index always gives the same frame)."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        return self.render(index, self.agents(index))

    def render(self, index: int, agents: list[AgentState]) -> SynthFrame:
        """Render the world of frame `index` with the given agents instead of its traffic
        (tests and staged scenes use this to place objects exactly)."""
        cfg = self.config
        t = self.time_s(index)
        ego = self.ego(index)
        T_wv = yaw_pose(ego.x, ego.y, ego.yaw)
        out = self.renderer.render(
            T_wv, ego.yaw, self.boxes(index, agents), shadow_boxes(agents, self._camera_xy(ego))
        )
        objects, ignored = make_labels(
            agents,
            out.owner,
            out.silhouettes,
            out.inv_depth,
            self.renderer.view.ground_inv_depth,
            T_wv,
            self.camera.T_vehicle_camera,
            ego,
            np.asarray(self.camera.K, np.float64),
            cfg.near_m,
            cfg.min_visible_px,
            cfg.min_box_height_px,
        )
        depth = np.zeros(out.inv_depth.shape, np.float32)
        np.divide(np.float32(1.0), out.inv_depth, out=depth, where=out.inv_depth > 1.0 / cfg.far_m)
        lut = np.zeros(len(agents) + 1, np.int32)
        lut[1:] = [a.track_id for a in agents]
        image = self.sensor.apply(out.image, out.inv_depth, index, t)
        return SynthFrame(
            index=index,
            stamp_ns=self.stamp_ns(index),
            image_bgr=image,
            depth_m=depth,
            objects=objects,
            ignored=ignored,
            instance_map=lut[out.owner],
            ego=ego,
            faces_drawn=out.faces_drawn,
        )

    def __getitem__(self, index: int) -> SynthFrame:
        return self.frame(index)

    def __iter__(self) -> Iterator[SynthFrame]:
        """Frames 0, 1, 2, ... (endless)."""
        i = 0
        while True:
            yield self.frame(i)
            i += 1

    def frames(self, start: int, count: int) -> Iterator[SynthFrame]:
        for i in range(start, start + count):
            yield self.frame(i)
