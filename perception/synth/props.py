"""The static roadside: buildings, walls, hedges, street lights and trees, segment by segment.

The roadside is cut into SEGMENT_M-long segments along X; each segment and side is drawn from
its own seeded generator, so any stretch of the (endless) street is built on demand without
history. Props are plain boxes (kind, look, centre, size, yaw); the scene module gives them
materials. They are never labelled, but they occlude and are occluded like everything else.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from perception.synth.layout import RoadLayout, RoadSide
from perception.synth.rng import PROPS, rng_for

SEGMENT_M = 25.0

# prop kinds
BUILDING, WALL, HEDGE, TRUNK, CROWN, POLE, LAMP, SIDEWALK = range(8)


@dataclass
class PropSet:
    """Boxes in the world frame: centre (N, 3), size l/w/h (N, 3), yaw (N,), kind, look."""

    centres: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    kinds: np.ndarray
    looks: np.ndarray

    @staticmethod
    def from_rows(rows: list[tuple[float, ...]]) -> PropSet:
        a = np.asarray(rows, np.float64).reshape(-1, 9)
        return PropSet(
            a[:, 0:3], a[:, 3:6], a[:, 6], a[:, 7].astype(np.int32), a[:, 8].astype(np.int64)
        )

    @staticmethod
    def concat(sets: list[PropSet]) -> PropSet:
        if not sets:
            return PropSet.from_rows([])
        return PropSet(
            np.concatenate([s.centres for s in sets]),
            np.concatenate([s.sizes for s in sets]),
            np.concatenate([s.yaws for s in sets]),
            np.concatenate([s.kinds for s in sets]),
            np.concatenate([s.looks for s in sets]),
        )

    def __len__(self) -> int:
        return len(self.kinds)


@dataclass(frozen=True)
class RoadsideStyle:
    """Per-drive character of the roadside (drawn once per seed)."""

    building_p: float  # chance a lot holds buildings
    height_range: tuple[float, float]
    tree_p: float  # chance a tree slot holds a tree
    pole_offset_m: tuple[float, float]  # street-light position within a segment, per side


def draw_style(rng: np.random.Generator) -> RoadsideStyle:
    urban = rng.random() < 0.6
    return RoadsideStyle(
        building_p=float(rng.uniform(0.6, 0.95) if urban else rng.uniform(0.2, 0.6)),
        height_range=(6.0, float(rng.uniform(14.0, 28.0))) if urban else (3.5, 9.0),
        tree_p=float(rng.uniform(0.1, 0.5) if urban else rng.uniform(0.4, 0.9)),
        pole_offset_m=(float(rng.uniform(0, SEGMENT_M)), float(rng.uniform(0, SEGMENT_M))),
    )


class Roadside:
    """All props of a drive; ``in_range(x_min, x_max)`` gives those of the overlapping segments."""

    def __init__(self, seed: int, layout: RoadLayout, style: RoadsideStyle) -> None:
        self.seed = seed
        self.layout = layout
        self.style = style
        self._cache: OrderedDict[tuple[int, int], PropSet] = OrderedDict()

    def in_range(self, x_min: float, x_max: float) -> PropSet:
        sets = []
        for k in range(math.floor(x_min / SEGMENT_M), math.floor(x_max / SEGMENT_M) + 1):
            for s in (0, 1):
                sets.append(self._segment(k, s))
        return PropSet.concat(sets)

    def _segment(self, k: int, s: int) -> PropSet:
        key = (k, s)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._make_segment(k, s)
            self._cache[key] = hit
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return hit

    def _make_segment(self, k: int, s: int) -> PropSet:
        rng = rng_for(self.seed, PROPS, k, s)
        side = self.layout.sides[s]
        kh = self.layout.kerb_height_m
        x0 = k * SEGMENT_M
        rows: list[tuple[float, ...]] = []

        def box(
            kind: int,
            x: float,
            dist: float,
            z0: float,
            size: tuple[float, float, float],
            yaw: float = 0.0,
            look: int = 0,
        ) -> None:
            rows.append((x, side.y(dist), z0 + 0.5 * size[2], *size, yaw, kind, look))

        # street light in the furniture strip next to the kerb, reaching over the road
        pole_x = x0 + self.style.pole_offset_m[s]
        pole_d = side.kerb_m + 0.45
        pole_h = float(rng.uniform(6.0, 8.0))
        box(POLE, pole_x, pole_d, kh, (0.18, 0.18, pole_h))
        box(POLE, pole_x, pole_d - 0.9, kh + pole_h - 0.12, (0.1, 1.8, 0.1))
        box(LAMP, pole_x, pole_d - 1.7, kh + pole_h - 0.25, (0.35, 0.6, 0.15))
        # trees in the same strip, kept clear of the pole
        for slot in (0.25, 0.75):
            tx = x0 + slot * SEGMENT_M + float(rng.uniform(-3, 3))
            if rng.random() > self.style.tree_p or abs(tx - pole_x) < 4.0:
                continue
            trunk_h = float(rng.uniform(1.8, 3.2))
            crown = float(rng.uniform(2.2, 4.5))
            td = side.kerb_m + min(0.9, 0.3 * side.sidewalk_m + 0.3)
            box(TRUNK, tx, td, kh, (0.3, 0.3, trunk_h + 0.5), look=int(rng.integers(1 << 30)))
            look = int(rng.integers(1 << 30))
            box(CROWN, tx, td, kh + trunk_h, (crown, crown, crown * 0.9), look=look)
            top = 0.65 * crown
            box(CROWN, tx, td, kh + trunk_h + 0.6 * crown, (top, top, 0.6 * top), math.pi / 4, look)
        # the lot behind the sidewalk
        self._lot(rng, side, x0, rows)
        return PropSet.from_rows(rows)

    def _lot(
        self, rng: np.random.Generator, side: RoadSide, x0: float, rows: list[tuple[float, ...]]
    ) -> None:
        def box(
            kind: int, x: float, dist: float, size: tuple[float, float, float], look: int
        ) -> None:
            rows.append((x, side.y(dist), 0.5 * size[2], *size, 0.0, kind, look))

        r = rng.random()
        front = side.lot_m
        if r < self.style.building_p:
            cursor = x0 + float(rng.uniform(0.0, 2.0))
            while True:
                length = float(rng.uniform(8.0, 24.0))
                if cursor + length > x0 + SEGMENT_M:
                    length = x0 + SEGMENT_M - cursor - float(rng.uniform(0.0, 1.0))
                if length < 5.0:
                    break
                depth = float(rng.uniform(8.0, 16.0))
                height = float(rng.uniform(*self.style.height_range))
                look = int(rng.integers(1 << 30))
                box(BUILDING, cursor + length / 2, front + depth / 2, (length, depth, height), look)
                cursor += length + float(rng.choice([0.0, 0.0, rng.uniform(1.0, 6.0)]))
        elif r < self.style.building_p + 0.4 * (1 - self.style.building_p):
            kind = WALL if rng.random() < 0.5 else HEDGE
            thick = 0.3 if kind == WALL else float(rng.uniform(0.8, 1.4))
            height = float(rng.uniform(1.0, 2.4))
            length = SEGMENT_M - float(rng.uniform(0.0, 4.0))
            box(
                kind,
                x0 + SEGMENT_M / 2,
                front + thick / 2,
                (length, thick, height),
                int(rng.integers(1 << 30)),
            )
        # else: an open lot, the ground and the horizon show through
