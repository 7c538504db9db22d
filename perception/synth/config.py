"""Typed configuration of a synthetic drive. Every range is sampled once per seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from perception.errors import UserError


@dataclass
class TrafficConfig:
    """Which agents populate the world, and how densely."""

    vehicles: bool = True  # moving cars and trucks, same-direction and oncoming lanes
    parked: bool = True  # parked cars along the kerb (where the drive has a parking lane)
    pedestrians: bool = True  # walking along sidewalks and across zebra crossings
    cyclists: bool = True  # riding in the bike lanes
    density: float = 1.0  # multiplies how many agents there are (gaps shrink as 1/density)
    truck_fraction: float = 0.15  # share of moving vehicles that are trucks


@dataclass
class SensorConfig:
    """Camera effects applied after rendering (the labels and depth are unaffected)."""

    enabled: bool = True
    noise_std: tuple[float, float] = (0.5, 4.0)  # Gaussian noise, 8-bit levels
    blur_sigma_px: tuple[float, float] = (0.3, 1.0)  # optical blur (Gaussian sigma)
    vignetting: tuple[float, float] = (0.0, 0.3)  # brightness loss in the corners
    exposure_flicker: float = 0.04  # relative amplitude of the slow exposure drift


@dataclass
class DriveConfig:
    """A synthetic drive: timing, extent of the world, traffic, looks, label rules."""

    fps: float = 10.0  # frame rate: frame i is captured at start_stamp_ns + i / fps
    start_stamp_ns: int = 0
    near_m: float = 0.1  # near clipping plane
    far_m: float = 150.0  # agents beyond are not spawned; depth beyond is 0 (no depth)
    ego_speed_mps: tuple[float, float] = (6.0, 14.0)  # mean ego speed, drawn per seed
    ego_sway: bool = True  # the ego varies its speed and drifts a little in its lane
    roadside: bool = True  # buildings, walls, hedges, poles and trees
    shadows: bool = True  # drop shadows of agents on the road
    fog: bool = True  # atmospheric haze that grows with distance
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    min_visible_px: int = 20  # objects with fewer visible pixels are not labelled ...
    min_box_height_px: float = 8.0  # ... nor those whose visible box is lower than this

    def validate(self) -> None:
        """Raise UserError on values the generator cannot honour."""
        if not self.fps > 0:
            raise UserError(f"fps must be positive, got {self.fps}")
        if not 0 < self.near_m < self.far_m:
            raise UserError(f"need 0 < near_m < far_m, got {self.near_m}, {self.far_m}")
        if self.far_m > 250.0:
            raise UserError("far_m must be at most 250 m (16-bit depth PNGs hold < 256 m)")
        lo, hi = self.ego_speed_mps
        if not 0 <= lo <= hi:
            raise UserError(f"ego_speed_mps must be a range 0 <= lo <= hi, got {lo, hi}")
        if self.traffic.density < 0:
            raise UserError("traffic density must be >= 0")
