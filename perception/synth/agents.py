"""Traffic as a pure function of time: every agent's pose is analytic in t.

Agents move in *streams*: a lane, bike lane, parking lane or sidewalk walkway with one
direction and one mean speed. Along a stream, agents sit at fixed stream coordinates xi
(placed block by block, each block from its own seeded generator) and move as
``X(t) = xi + direction * speed * t + a sin(w t + p)``, ``Y(t) = y + b sin(w2 t + p2)``. The
small sinusoids give every agent its own speed and heading; their amplitudes are bounded by
the free space to the neighbours, so agents of a stream never overlap. Zebra crossings add
pedestrians who wait at the kerb, cross, wait and cross back.

Nothing here draws: the scene module turns agent states into textured boxes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from perception.synth.classes import CLASS_SIZES
from perception.synth.config import TrafficConfig
from perception.synth.layout import (
    ATLAS_PERIOD_M,
    ZEBRA_WIDTH_M,
    ZEBRA_X_M,
    RoadLayout,
    RoadSide,
    zebra_centres,
)
from perception.synth.rng import CROSSING, STREAM_BLOCK, rng_for, zigzag

BLOCK_M = 240.0  # stream length generated per block (in stream coordinates)
MAX_PER_BLOCK = 256  # track ids reserve this many agents per block and stream
N_STREAMS = 32  # track ids reserve this many streams; the last is the zebra crossings
CROSSING_STREAM = N_STREAMS - 1
# The ego's extent along its lane in the vehicle frame (origin below the rear axle), metres.
EGO_REAR_M, EGO_FRONT_M = -1.0, 3.7
STRIDE_M = {"pedestrian": 1.4, "cyclist": 2.1}  # distance per gait / pedal cycle


@dataclass(frozen=True)
class Stream:
    """A path agents follow, with its traffic statistics."""

    index: int
    kind: str  # "vehicle", "parked", "cyclist", "pedestrian"
    y: float  # world Y of the path
    z: float  # height of the surface it runs on (sidewalks are raised)
    direction: float  # +1 drives towards +X, -1 towards -X
    speed: float  # mean speed, m/s
    min_gap: float  # minimum free space between consecutive agents, m
    mean_extra_gap: float  # mean of the exponential extra gap, m (already / density)
    long_amp_max: float  # bound of the along-path wobble amplitude, m
    lat_amp_max: float  # bound of the sideways wobble amplitude, m
    truck_fraction: float = 0.0
    keep_clear: tuple[float, float] | None = None  # stream-coordinate interval left free


@dataclass(frozen=True)
class AgentState:
    """One agent at one instant, in the world frame."""

    track_id: int
    cls: str
    length: float
    width: float
    height: float
    x: float  # centre of the footprint
    y: float
    z: float  # height of the surface the agent stands on
    yaw: float  # heading, radians, counter-clockwise from +X
    vx: float  # velocity over ground, m/s
    vy: float
    look: int  # appearance variant
    gait: float  # walking / pedalling phase, radians


@dataclass(frozen=True)
class _Block:
    """The agents of one block of a stream, as arrays (one entry per agent)."""

    track_id: np.ndarray
    truck: np.ndarray  # bool: a truck in a vehicle stream
    size: np.ndarray  # (n, 3) length, width, height
    xi: np.ndarray  # stream coordinate of the centre at t = 0
    long_amp: np.ndarray
    long_omega: np.ndarray
    long_phase: np.ndarray
    lat_amp: np.ndarray
    lat_omega: np.ndarray
    lat_phase: np.ndarray
    yaw_offset: np.ndarray
    look: np.ndarray
    gait_phase: np.ndarray


@dataclass(frozen=True)
class _Crosser:
    track_id: int
    length: float
    width: float
    height: float
    x: float
    y_start: float
    y_end: float
    speed: float
    wait_s: float
    phase_s: float
    look: int


def _track_id(stream: int, block: int, j: int) -> int:
    return 1 + stream + N_STREAMS * (zigzag(block) * MAX_PER_BLOCK + j)


def _ranges(cls: str) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of a class's length, width, height as arrays."""
    s = CLASS_SIZES[cls]
    r = np.array([s.length, s.width, s.height])
    return r[:, 0], r[:, 1]


def _size(rng: np.random.Generator, cls: str) -> tuple[float, float, float]:
    s = CLASS_SIZES[cls]
    return (
        float(rng.uniform(*s.length)),
        float(rng.uniform(*s.width)),
        float(rng.uniform(*s.height)),
    )


class Traffic:
    """All agents of a drive; ``at(t, x_min, x_max)`` lists those within an X range."""

    def __init__(self, seed: int, layout: RoadLayout, config: TrafficConfig) -> None:
        self.seed = seed
        self.layout = layout
        self.config = config
        self.streams = self._make_streams()
        self._cache: OrderedDict[tuple[int, int], _Block] = OrderedDict()

    # -- streams --------------------------------------------------------------------------
    def _make_streams(self) -> list[Stream]:
        cfg, lay = self.config, self.layout
        rng = rng_for(self.seed, STREAM_BLOCK, -1)
        density = max(cfg.density, 0.0)
        if density == 0.0:
            return []
        out: list[Stream] = []

        def add(**kw: object) -> None:
            out.append(Stream(index=len(out), **kw))  # type: ignore[arg-type]

        v_ego = lay.ego_speed_mps
        if cfg.vehicles:
            for lane in range(lay.lanes_each_way):
                ego = lane == lay.ego_lane
                # the ego's slot in its own lane: xi of the ego is 0, plus both wobbles
                clear = None
                if ego:
                    margin = 2.0 * lay.ego_long_amp_m + 5.0
                    clear = (EGO_REAR_M - margin, EGO_FRONT_M + margin)
                speed = v_ego if ego else max(2.0, v_ego + float(rng.uniform(-4.0, 4.0)))
                add(
                    kind="vehicle",
                    y=lay.lane_y(lane, oncoming=False),
                    z=0.0,
                    direction=1.0,
                    speed=speed,
                    min_gap=6.0,
                    mean_extra_gap=float(rng.uniform(15.0, 40.0)) / density,
                    long_amp_max=min(6.0, 0.3 * speed / (2 * math.pi / 12.0)),
                    lat_amp_max=0.25,
                    truck_fraction=cfg.truck_fraction,
                    keep_clear=clear,
                )
                add(
                    kind="vehicle",
                    y=lay.lane_y(lane, oncoming=True),
                    z=0.0,
                    direction=-1.0,
                    speed=float(rng.uniform(7.0, 15.0)),
                    min_gap=8.0,
                    mean_extra_gap=float(rng.uniform(20.0, 60.0)) / density,
                    long_amp_max=4.0,
                    lat_amp_max=0.25,
                    truck_fraction=cfg.truck_fraction,
                )
        for side in lay.sides:
            direction = 1.0 if side.sign < 0 else -1.0
            if cfg.cyclists:
                add(
                    kind="cyclist",
                    y=lay.bike_y(side),
                    z=0.0,
                    direction=direction,
                    speed=float(rng.uniform(3.5, 7.0)),
                    min_gap=6.0,
                    mean_extra_gap=float(rng.uniform(40.0, 120.0)) / density,
                    long_amp_max=3.0,
                    lat_amp_max=0.15,
                )
            if cfg.parked and side.parking:
                add(
                    kind="parked",
                    y=lay.parking_y(side),
                    z=0.0,
                    direction=direction,
                    speed=0.0,
                    min_gap=0.8,
                    mean_extra_gap=float(rng.uniform(2.0, 12.0)) / density,
                    long_amp_max=0.0,
                    lat_amp_max=0.0,
                    truck_fraction=0.04,
                )
            if cfg.pedestrians:
                for frac, walk_dir in ((0.45, 1.0), (0.75, -1.0)):
                    add(
                        kind="pedestrian",
                        y=side.y(side.kerb_m + frac * side.sidewalk_m),
                        z=lay.kerb_height_m,
                        direction=walk_dir,
                        speed=float(rng.uniform(0.9, 1.6)),
                        min_gap=1.5,
                        mean_extra_gap=float(rng.uniform(8.0, 40.0)) / density,
                        long_amp_max=0.6,
                        lat_amp_max=0.12,
                    )
        assert len(out) < CROSSING_STREAM
        return out

    # -- blocks ---------------------------------------------------------------------------
    def _block(self, stream: Stream, block: int) -> _Block:
        key = (stream.index, block)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        agents = self._make_block(stream, block)
        self._cache[key] = agents
        if len(self._cache) > 512:
            self._cache.popitem(last=False)
        return agents

    def _make_block(self, stream: Stream, block: int) -> _Block:
        """The agents of one block of a stream: random classes, sizes and gaps (all drawn as
        arrays, then placed one after the other until the block is full)."""
        rng = rng_for(self.seed, STREAM_BLOCK, stream.index, block)
        start, end = block * BLOCK_M, (block + 1) * BLOCK_M
        n = min(MAX_PER_BLOCK, int(BLOCK_M / (stream.min_gap + 0.4)) + 1)  # can't fit more
        if stream.kind in ("vehicle", "parked"):
            truck = rng.random(n) < stream.truck_fraction
        else:
            truck = np.zeros(n, bool)
        base = "car" if stream.kind in ("vehicle", "parked") else stream.kind
        lo = np.where(truck[:, None], _ranges("truck")[0], _ranges(base)[0])
        hi = np.where(truck[:, None], _ranges("truck")[1], _ranges(base)[1])
        size = lo + (hi - lo) * rng.random((n, 3))  # length, width, height
        gaps = stream.min_gap + rng.exponential(stream.mean_extra_gap, n)
        if stream.kind == "parked":  # now and then an empty stretch of kerb
            gaps += (rng.random(n) < 0.12) * rng.uniform(8.0, 30.0, n)
        first = start + 0.5 * stream.min_gap + 0.5 * rng.exponential(stream.mean_extra_gap)
        rear = first + np.concatenate([[0.0], np.cumsum(size[:, 0] + gaps)[:-1]])
        front = rear + size[:, 0]
        count = int(np.argmin(front + 0.5 * stream.min_gap <= end)) if n else 0
        if n and front[-1] + 0.5 * stream.min_gap <= end:
            count = n
        rear, front, size = rear[:count], front[:count], size[:count]
        # free space on each side (block edges count as walls) bounds the along-path wobble
        before = np.concatenate([[rear[0] - start], (rear[1:] - front[:-1]) / 2]) if count else rear
        after = np.concatenate([(rear[1:] - front[:-1]) / 2, [end - front[-1]]]) if count else rear
        amp = np.clip(np.minimum(before, after) - 1.0, 0.0, stream.long_amp_max)
        amp = amp * rng.uniform(0.2, 1.0, count)
        centre = 0.5 * (rear + front)
        long_period = rng.uniform(8.0, 30.0, count)
        long_phase = rng.uniform(0, 2 * math.pi, count)
        lat_amp = rng.uniform(0.0, stream.lat_amp_max, count)
        lat_period = rng.uniform(5.0, 20.0, count)
        lat_phase = rng.uniform(0, 2 * math.pi, count)
        yaw_jitter = rng.normal(0.0, 0.04, count) if stream.kind == "parked" else np.zeros(count)
        looks = rng.integers(1 << 30, size=count)
        gait = rng.uniform(0, 2 * math.pi, count)
        keep = np.ones(count, bool)
        if stream.keep_clear is not None:  # agents that would run into the ego: empty slots
            c0, c1 = stream.keep_clear
            half = 0.5 * size[:, 0] + amp
            keep = ~((centre + half > c0) & (centre - half < c1))
        ids = np.array([_track_id(stream.index, block, j) for j in range(count)], np.int64)
        return _Block(
            track_id=ids[keep],
            truck=truck[:count][keep],
            size=size[keep],
            xi=centre[keep],
            long_amp=amp[keep],
            long_omega=2 * math.pi / long_period[keep],
            long_phase=long_phase[keep],
            lat_amp=lat_amp[keep],
            lat_omega=2 * math.pi / lat_period[keep],
            lat_phase=lat_phase[keep],
            yaw_offset=yaw_jitter[keep],
            look=looks[keep],
            gait_phase=gait[keep],
        )

    # -- states ---------------------------------------------------------------------------
    def _stream_states(
        self, stream: Stream, t: float, x_min: float, x_max: float
    ) -> list[AgentState]:
        shift = stream.direction * stream.speed * t
        margin = stream.long_amp_max + 15.0
        b0 = math.floor((x_min - shift - margin) / BLOCK_M)
        b1 = math.floor((x_max - shift + margin) / BLOCK_M)
        out: list[AgentState] = []
        base_yaw = 0.0 if stream.direction > 0 else math.pi
        base_cls = "car" if stream.kind in ("vehicle", "parked") else stream.kind
        stride = STRIDE_M.get(base_cls, 1.0)
        for block in range(b0, b1 + 1):
            b = self._block(stream, block)
            s_long = b.long_omega * t + b.long_phase
            sin_long = np.sin(s_long)
            x = b.xi + shift + b.long_amp * sin_long
            sel = np.flatnonzero((x >= x_min) & (x <= x_max))
            if not len(sel):
                continue
            s_lat = b.lat_omega[sel] * t + b.lat_phase[sel]
            y = stream.y + b.lat_amp[sel] * np.sin(s_lat)
            vx = stream.direction * stream.speed + b.long_amp[sel] * b.long_omega[sel] * np.cos(
                s_long[sel]
            )
            vy = b.lat_amp[sel] * b.lat_omega[sel] * np.cos(s_lat)
            moving = np.hypot(vx, vy) > 0.3
            yaw = np.where(moving, np.arctan2(vy, vx), base_yaw + b.yaw_offset[sel])
            travelled = stream.speed * t + stream.direction * b.long_amp[sel] * sin_long[sel]
            gait = b.gait_phase[sel] + 2 * math.pi * travelled / stride
            rows = zip(
                b.track_id[sel].tolist(), b.truck[sel].tolist(), b.size[sel].tolist(),
                x[sel].tolist(), y.tolist(), yaw.tolist(), vx.tolist(), vy.tolist(),
                b.look[sel].tolist(), gait.tolist(), strict=True,
            )  # fmt: skip
            for tid, truck, (ln, wd, ht), xi, yi, yawi, vxi, vyi, look, gi in rows:
                out.append(
                    AgentState(
                        track_id=tid,
                        cls="truck" if truck else base_cls,
                        length=ln,
                        width=wd,
                        height=ht,
                        x=xi,
                        y=yi,
                        z=stream.z,
                        yaw=yawi,
                        vx=vxi,
                        vy=vyi,
                        look=look,
                        gait=gi,
                    )
                )
        return out

    def _crossers(self, x_min: float, x_max: float) -> list[_Crosser]:
        lay = self.layout
        out: list[_Crosser] = []
        for xc in zebra_centres(x_min - 5.0, x_max + 5.0):
            k = round((xc - 0.5 * ZEBRA_WIDTH_M - ZEBRA_X_M) / ATLAS_PERIOD_M)
            rng = rng_for(self.seed, CROSSING, k)
            count = int(rng.choice([0, 1, 1, 2, 3]))
            for j in range(count):
                size = _size(rng, "pedestrian")
                start_side: RoadSide = lay.right if rng.random() < 0.5 else lay.left
                end_side = lay.left if start_side is lay.right else lay.right
                out.append(
                    _Crosser(
                        track_id=_track_id(CROSSING_STREAM, k, j),
                        length=size[0],
                        width=size[1],
                        height=size[2],
                        x=float(xc + rng.uniform(-1.2, 1.2)),
                        y_start=start_side.y(start_side.kerb_m + rng.uniform(0.4, 1.2)),
                        y_end=end_side.y(end_side.kerb_m + rng.uniform(0.4, 1.2)),
                        speed=float(rng.uniform(1.0, 1.6)),
                        wait_s=float(rng.uniform(3.0, 20.0)),
                        phase_s=float(rng.uniform(0.0, 200.0)),
                        look=int(rng.integers(1 << 30)),
                    )
                )
        return out

    def _crosser_state(self, c: _Crosser, t: float) -> AgentState:
        span = abs(c.y_end - c.y_start)
        walk = span / c.speed
        period = 2 * (c.wait_s + walk)
        tau = (t + c.phase_s) % period
        direction = math.copysign(1.0, c.y_end - c.y_start)
        if tau < c.wait_s:  # waiting at the start
            y, vy, heading, walked = c.y_start, 0.0, direction, 0.0
        elif tau < c.wait_s + walk:  # crossing
            d = (tau - c.wait_s) * c.speed
            y, vy, heading, walked = c.y_start + direction * d, direction * c.speed, direction, d
        elif tau < 2 * c.wait_s + walk:  # waiting at the far side
            y, vy, heading, walked = c.y_end, 0.0, -direction, span
        else:  # crossing back
            d = (tau - 2 * c.wait_s - walk) * c.speed
            y, vy, heading, walked = c.y_end - direction * d, -direction * c.speed, -direction, d
        lay = self.layout
        on_walk = (y < 0 and -y > lay.right.kerb_m) or (y > 0 and y > lay.left.kerb_m)
        return AgentState(
            track_id=c.track_id,
            cls="pedestrian",
            length=c.length,
            width=c.width,
            height=c.height,
            x=c.x,
            y=y,
            z=lay.kerb_height_m if on_walk else 0.0,
            yaw=heading * math.pi / 2,
            vx=0.0,
            vy=vy,
            look=c.look,
            gait=2 * math.pi * walked / STRIDE_M["pedestrian"] if vy != 0.0 else 0.0,
        )

    def at(self, t: float, x_min: float, x_max: float) -> list[AgentState]:
        """States of all agents whose centre lies in [x_min, x_max] at time t."""
        out: list[AgentState] = []
        for stream in self.streams:
            out.extend(self._stream_states(stream, t, x_min, x_max))
        if self.config.pedestrians and self.config.density > 0:
            out.extend(self._crosser_state(c, t) for c in self._crossers(x_min, x_max))
        return out
