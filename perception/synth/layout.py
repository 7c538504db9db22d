"""The road a drive happens on: a straight, flat street, drawn once per seed.

World frame: X along the road (the ego drives towards +X), Y to the left, Z up, the road
surface at Z = 0, the centre line at Y = 0. Traffic keeps to the right: lanes in the ego's
direction lie at Y < 0, oncoming lanes at Y > 0. Across each half, from the centre outwards:
car lanes, a bike lane, an optional parking lane, the kerb, a raised sidewalk, a setback strip
at ground level, then the lots with buildings, walls or hedges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.synth.rng import LAYOUT, rng_for

ATLAS_PERIOD_M = 96.0  # the road surface repeats every this many metres along X
ZEBRA_X_M = 50.0  # zebra crossings at X = ZEBRA_X_M + k * ATLAS_PERIOD_M ...
ZEBRA_WIDTH_M = 4.0  # ... each this wide along X


@dataclass(frozen=True)
class RoadSide:
    """One half of the street (right: Y < 0, left: Y > 0); distances from the centre line."""

    sign: float  # -1 for the right half (ego direction), +1 for the left half (oncoming)
    parking: bool  # has a parking lane along the kerb
    kerb_m: float  # distance from the centre line to the kerb
    sidewalk_m: float  # sidewalk width (raised by the kerb height)
    setback_m: float  # ground-level strip between sidewalk and lots
    lot_m: float  # distance from the centre line to the front of the lots

    def y(self, distance_m: float) -> float:
        """World Y of a point at this distance from the centre line on this side."""
        return self.sign * distance_m


@dataclass(frozen=True)
class RoadLayout:
    lanes_each_way: int
    lane_width_m: float
    bike_width_m: float
    parking_width_m: float
    kerb_height_m: float
    right: RoadSide
    left: RoadSide
    ego_lane: int  # 0 = the lane next to the centre line
    ego_speed_mps: float
    # ego sway: X(t) = v t + a_long sin(w_long t + p_long), Y(t) = y_lane + a_lat sin(...)
    ego_long_amp_m: float
    ego_long_omega: float
    ego_long_phase: float
    ego_lat_amp_m: float
    ego_lat_omega: float
    ego_lat_phase: float
    # markings
    marking_bgr: tuple[int, int, int]
    centre_style: str  # "solid", "double", "dashed"
    dash_on_m: float
    dash_period_m: float
    bike_lane_bgr: tuple[int, int, int] | None  # tinted bike lanes, or None for plain asphalt

    def lane_y(self, lane: int, oncoming: bool) -> float:
        """Centre Y of car lane `lane` (0 = next to the centre line)."""
        y = (lane + 0.5) * self.lane_width_m
        return y if oncoming else -y

    @property
    def lanes_edge_m(self) -> float:
        """Distance from the centre line to the outer edge of the car lanes."""
        return self.lanes_each_way * self.lane_width_m

    def bike_y(self, side: RoadSide) -> float:
        return side.y(self.lanes_edge_m + 0.5 * self.bike_width_m)

    def parking_y(self, side: RoadSide) -> float:
        return side.y(self.lanes_edge_m + self.bike_width_m + 0.5 * self.parking_width_m)

    @property
    def sides(self) -> tuple[RoadSide, RoadSide]:
        return (self.right, self.left)

    def ego_pose(self, t: float) -> tuple[float, float, float, float, float, float]:
        """Ego (x, y, yaw, vx, vy, yaw_rate) in the world at time t (analytic, so cheap)."""
        lane_y = self.lane_y(self.ego_lane, oncoming=False)
        a, w, p = self.ego_long_amp_m, self.ego_long_omega, self.ego_long_phase
        b, w2, p2 = self.ego_lat_amp_m, self.ego_lat_omega, self.ego_lat_phase
        x = self.ego_speed_mps * t + a * (math.sin(w * t + p) - math.sin(p))
        y = lane_y + b * math.sin(w2 * t + p2)
        vx = self.ego_speed_mps + a * w * math.cos(w * t + p)
        vy = b * w2 * math.cos(w2 * t + p2)
        ax = -a * w * w * math.sin(w * t + p)
        ay = -b * w2 * w2 * math.sin(w2 * t + p2)
        yaw = math.atan2(vy, vx)
        speed2 = vx * vx + vy * vy
        yaw_rate = (vx * ay - vy * ax) / speed2 if speed2 > 1e-6 else 0.0
        return x, y, yaw, vx, vy, yaw_rate


def draw_layout(seed: int, ego_speed_mps: tuple[float, float], sway: bool) -> RoadLayout:
    """Draw the street of a seed."""
    rng = rng_for(seed, LAYOUT)
    lanes = int(rng.choice([1, 2, 2]))
    lane_w = float(rng.uniform(3.1, 3.7))
    bike_w = float(rng.uniform(1.3, 2.0))
    park_w = float(rng.uniform(2.1, 2.5))
    kerb_h = float(rng.uniform(0.1, 0.18))

    def side(sign: float) -> RoadSide:
        parking = bool(rng.random() < 0.7)
        kerb = lanes * lane_w + bike_w + (park_w if parking else 0.0)
        sidewalk = float(rng.uniform(2.5, 5.0))
        setback = float(rng.choice([0.0, rng.uniform(0.5, 6.0)]))
        return RoadSide(sign, parking, kerb, sidewalk, setback, kerb + sidewalk + setback)

    right, left = side(-1.0), side(1.0)
    speed = float(rng.uniform(*ego_speed_mps))
    long_amp = float(rng.uniform(0.0, 4.0)) if sway else 0.0
    lat_amp = float(rng.uniform(0.0, 0.25)) if sway else 0.0
    long_w = 2 * math.pi / float(rng.uniform(15.0, 40.0))
    # keep the speed variation within half the mean speed: the ego never stops or reverses
    long_amp = min(long_amp, 0.5 * speed / long_w)
    white = (235, 235, 235)
    yellow = (60, 200, 235)
    colours = [white, white, yellow]
    marking = colours[int(rng.integers(len(colours)))]
    period = float(rng.choice([6.0, 8.0, 12.0]))
    bike_tint = None
    if rng.random() < 0.35:
        tints = [(70, 70, 150), (80, 140, 90), (140, 90, 70)]
        bike_tint = tints[int(rng.integers(len(tints)))]
    return RoadLayout(
        lanes_each_way=lanes,
        lane_width_m=lane_w,
        bike_width_m=bike_w,
        parking_width_m=park_w,
        kerb_height_m=kerb_h,
        right=right,
        left=left,
        ego_lane=int(rng.integers(lanes)),
        ego_speed_mps=speed,
        ego_long_amp_m=long_amp,
        ego_long_omega=long_w,
        ego_long_phase=float(rng.uniform(0, 2 * math.pi)),
        ego_lat_amp_m=lat_amp,
        ego_lat_omega=2 * math.pi / float(rng.uniform(8.0, 25.0)),
        ego_lat_phase=float(rng.uniform(0, 2 * math.pi)),
        marking_bgr=marking,
        centre_style=str(rng.choice(["solid", "double", "dashed"])),
        dash_on_m=float(min(3.0, period / 2)),
        dash_period_m=period,
        bike_lane_bgr=bike_tint,
    )


def zebra_centres(x_min: float, x_max: float) -> np.ndarray:
    """World X of the zebra-crossing centres within [x_min, x_max]."""
    k0 = math.floor((x_min - ZEBRA_X_M) / ATLAS_PERIOD_M)
    k1 = math.ceil((x_max - ZEBRA_X_M) / ATLAS_PERIOD_M)
    xs = ZEBRA_X_M + ATLAS_PERIOD_M * np.arange(k0, k1 + 1) + 0.5 * ZEBRA_WIDTH_M
    return xs[(xs >= x_min) & (xs <= x_max)]
