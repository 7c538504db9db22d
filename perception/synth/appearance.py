"""How a drive looks: lighting, sky, and the materials of every agent and prop, per seed.

A `Material` is a texture pyramid plus how it maps onto a face: stretched once over the face
(car panels, faces of people) or tiled by physical size (facades, paving, foliage). Agents
pick a *look* (a palette entry) and props a variant; each resolves to one material id per
face through the kit tables built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from perception.synth import textures as tx
from perception.synth.layout import RoadLayout
from perception.synth.props import BUILDING, CROWN, HEDGE, LAMP, POLE, SIDEWALK, TRUNK, WALL
from perception.synth.rng import APPEARANCE, rng_for
from perception.synth.shapes import SLOT, SLOTS

N_LOOKS = 12  # palette entries per agent class
N_PROP_LOOKS = 8  # variants per prop kind
N_PROP_KINDS = 8

PAINTS: list[tx.Colour] = [
    (235, 235, 235), (190, 190, 186), (120, 120, 118), (32, 32, 34), (95, 45, 25),
    (40, 40, 175), (170, 95, 45), (55, 85, 45), (150, 180, 200), (45, 65, 95),
    (40, 185, 225), (30, 110, 215),
]  # fmt: skip
PAINT_WEIGHTS = np.array([5, 4, 4, 4, 2, 2, 2, 1, 1, 1, 0.5, 0.5])
CLOTHES: list[tx.Colour] = [
    (40, 40, 40), (130, 80, 30), (60, 60, 160), (200, 200, 200), (100, 100, 100),
    (40, 120, 40), (30, 170, 220), (120, 50, 120), (90, 140, 180), (60, 40, 30),
]  # fmt: skip
SKINS: list[tx.Colour] = [(150, 180, 225), (110, 145, 200), (70, 100, 150), (45, 65, 100)]
HAIRS: list[tx.Colour] = [(20, 20, 25), (30, 50, 80), (60, 110, 160), (150, 150, 155)]
WALLS: list[tx.Colour] = [
    (180, 195, 210), (150, 160, 170), (110, 130, 160), (200, 205, 205), (90, 100, 140),
    (160, 175, 150), (60, 80, 130), (140, 140, 140),
]  # fmt: skip


def jitter(rng: np.random.Generator, c: tx.Colour, amount: float = 0.08) -> tx.Colour:
    f = 1.0 + rng.uniform(-amount, amount, 3)
    return (float(c[0] * f[0]), float(c[1] * f[1]), float(c[2] * f[2]))


def _pick(rng: np.random.Generator, palette: list[tx.Colour]) -> tx.Colour:
    return jitter(rng, palette[int(rng.integers(len(palette)))])


@dataclass
class Material:
    """A texture pyramid (level 0 first) and its mapping: tile_m = (s, t) metres per repeat,
    or None to stretch the texture once over each face."""

    levels: list[np.ndarray]
    tile_m: tuple[float, float] | None
    mean_bgr: np.ndarray  # mean colour, used for faces too small to texture


MAX_TEXTURE_PX = 4096  # pre-tiled textures stop growing at this many pixels a side


def material(
    texture: np.ndarray,
    tile_m: tuple[float, float] | None = None,
    cover_m: tuple[float, float] | None = None,
) -> Material:
    """A material; a tiled one is pre-tiled to cover `cover_m` metres (s, t) in one image, as
    warping inside the image is several times faster than OpenCV's wrap-around border."""
    mean = np.asarray(cv2.mean(texture)[:3], np.float32)
    if tile_m is not None and cover_m is not None:
        h, w = texture.shape[:2]
        nx = max(1, min(int(np.ceil(cover_m[0] / tile_m[0])), MAX_TEXTURE_PX // w))
        ny = max(1, min(int(np.ceil(cover_m[1] / tile_m[1])), MAX_TEXTURE_PX // h))
        texture = np.tile(texture, (ny, nx, 1))
        tile_m = (tile_m[0] * nx, tile_m[1] * ny)
    levels = [texture]
    while min(levels[-1].shape[:2]) >= 8:
        levels.append(cv2.pyrDown(levels[-1]))
    return Material(levels, tile_m, mean)


@dataclass(frozen=True)
class Lighting:
    """Sun and sky light: a face with world normal n gets ambient + sun * max(0, n . sun_dir)."""

    sun_dir: np.ndarray  # unit vector towards the sun, world frame
    sun_bgr: np.ndarray  # direct light per channel (1 = white at full strength)
    ambient_bgr: np.ndarray

    def shade(self, normals_world: np.ndarray) -> np.ndarray:
        """Per-channel light factors (N, 3) of faces with these world normals (N, 3)."""
        lam = np.clip(normals_world @ self.sun_dir, 0.0, None)
        return self.ambient_bgr[None, :] + lam[:, None] * self.sun_bgr[None, :]


@dataclass(frozen=True)
class SkyLook:
    zenith_bgr: np.ndarray
    horizon_bgr: np.ndarray
    cloud_bgr: np.ndarray
    cloud_cover: float  # 0 clear .. 1 overcast
    fog_bgr: np.ndarray
    fog_distance_m: float  # haze: a fraction exp(-z / fog_distance_m) of the light survives


def draw_lighting(rng: np.random.Generator) -> tuple[Lighting, SkyLook]:
    overcast = rng.random() < 0.3
    elev = math.radians(float(rng.uniform(12.0, 65.0)))
    az = float(rng.uniform(0.0, 2 * math.pi))
    sun_dir = np.array(
        [math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)]
    )
    brightness = float(rng.uniform(0.75, 1.1))
    warm = max(0.0, 1.0 - elev / math.radians(35.0)) * float(rng.uniform(0.0, 0.25))
    sun_tint = np.array([1.0 - warm, 1.0 - 0.4 * warm, 1.0])  # BGR: low sun is warmer
    if overcast:
        ambient = np.full(3, float(rng.uniform(0.75, 0.95)))
        sun = sun_tint * float(rng.uniform(0.05, 0.2))
        zenith = np.array([175.0, 170.0, 165.0])
        horizon = np.array([205.0, 200.0, 195.0])
        cover = float(rng.uniform(0.7, 1.0))
    else:
        ambient = np.array([0.5, 0.47, 0.45]) * float(rng.uniform(0.7, 1.1))
        sun = sun_tint * float(rng.uniform(0.55, 0.8))
        zenith = np.array([200.0, 140.0, 80.0]) * float(rng.uniform(0.85, 1.1))
        horizon = np.array([235.0, 215.0, 190.0]) * float(rng.uniform(0.9, 1.05))
        cover = float(rng.uniform(0.0, 0.6))
    fog = horizon * float(rng.uniform(0.9, 1.0))
    lighting = Lighting(sun_dir, sun * brightness, ambient * brightness)
    sky = SkyLook(
        zenith_bgr=np.clip(zenith * brightness, 0, 255),
        horizon_bgr=np.clip(horizon * brightness, 0, 255),
        cloud_bgr=np.clip(np.array([235.0, 235.0, 235.0]) * brightness, 0, 255),
        cloud_cover=cover,
        fog_bgr=np.clip(fog * brightness, 0, 255),
        fog_distance_m=float(
            rng.uniform(250.0, 900.0) if not overcast else rng.uniform(150.0, 400.0)
        ),
    )
    return lighting, sky


class Appearance:
    """Materials and kits of one drive."""

    def __init__(self, seed: int, layout: RoadLayout) -> None:
        rng = rng_for(seed, APPEARANCE)
        self.lighting, self.sky = draw_lighting(rng)
        self.materials: list[Material] = []
        self.agent_kits: dict[str, np.ndarray] = {}
        self._shared = {
            "wheel_side": self._add(tx.wheel_side(rng)),
            "wheel_end": self._add(tx.panel(rng, (26, 26, 28))),
            "under": self._add(tx.panel(rng, (34, 34, 36))),
            "chassis": self._add(tx.panel(rng, (38, 38, 40))),
            "tyre": self._add(tx.panel(rng, (20, 20, 22))),
        }
        self._build_cars(rng)
        self._build_trucks(rng)
        self._build_people(rng)
        self.prop_kits = self._build_props(rng, layout)

    def _add(
        self,
        texture: np.ndarray,
        tile_m: tuple[float, float] | None = None,
        cover_m: tuple[float, float] | None = None,
    ) -> int:
        self.materials.append(material(texture, tile_m, cover_m))
        return len(self.materials) - 1

    def _kit(self, entries: dict[str, int]) -> np.ndarray:
        kit = np.zeros(len(SLOTS), np.int32)
        for name, mid in entries.items():
            kit[SLOT[name]] = mid
        return kit

    def _build_cars(self, rng: np.random.Generator) -> None:
        kits = []
        p = PAINT_WEIGHTS / PAINT_WEIGHTS.sum()
        for _ in range(N_LOOKS):
            paint = jitter(rng, PAINTS[int(rng.choice(len(PAINTS), p=p))], 0.06)
            kits.append(
                self._kit(
                    {
                        "body_front": self._add(tx.body_end(rng, paint, front=True)),
                        "body_rear": self._add(tx.body_end(rng, paint, front=False)),
                        "body_side": self._add(tx.body_side(rng, paint)),
                        "body_top": self._add(tx.panel(rng, paint, grain=0.04)),
                        "cabin_front": self._add(tx.glass_end(rng, paint)),
                        "cabin_rear": self._add(tx.glass_end(rng, paint)),
                        "cabin_side": self._add(tx.glass_side(rng, paint)),
                        "cabin_top": self._add(tx.panel(rng, paint, grain=0.04)),
                        "wheel_side": self._shared["wheel_side"],
                        "wheel_end": self._shared["wheel_end"],
                        "under": self._shared["under"],
                    }
                )
            )
        self.agent_kits["car"] = np.stack(kits)

    def _build_trucks(self, rng: np.random.Generator) -> None:
        kits = []
        for _ in range(N_LOOKS):
            paint = _pick(rng, PAINTS)
            box = _pick(rng, [(230, 230, 230), (200, 200, 200), *PAINTS])
            logo = _pick(rng, PAINTS) if rng.random() < 0.5 else None
            kits.append(
                self._kit(
                    {
                        "cabin_front": self._add(tx.truck_front(rng, paint)),
                        "cabin_rear": self._add(tx.panel(rng, paint)),
                        "cabin_side": self._add(tx.truck_cab_side(rng, paint)),
                        "cabin_top": self._add(tx.panel(rng, paint)),
                        "cargo_front": self._add(tx.panel(rng, box)),
                        "cargo_rear": self._add(tx.cargo_rear(rng, box)),
                        "cargo_side": self._add(tx.cargo_side(rng, box, logo)),
                        "cargo_top": self._add(tx.panel(rng, box)),
                        "chassis": self._shared["chassis"],
                        "wheel_side": self._shared["wheel_side"],
                        "wheel_end": self._shared["wheel_end"],
                        "under": self._shared["under"],
                    }
                )
            )
        self.agent_kits["truck"] = np.stack(kits)

    def _build_people(self, rng: np.random.Generator) -> None:
        peds, riders = [], []
        for i in range(2 * N_LOOKS):
            skin = _pick(rng, SKINS)
            hair = _pick(rng, HAIRS)
            entries = {
                "shirt": self._add(tx.cloth(rng, _pick(rng, CLOTHES))),
                "trousers": self._add(tx.cloth(rng, _pick(rng, CLOTHES))),
                "face": self._add(tx.face(rng, skin, hair, side=False)),
                "head_side": self._add(tx.face(rng, skin, hair, side=True)),
                "hair": self._add(tx.panel(rng, hair, 8, 8, 0.1)),
                "skin": self._add(tx.panel(rng, skin, 8, 8, 0.05)),
            }
            if i < N_LOOKS:
                peds.append(self._kit(entries))
            else:
                entries.update(
                    {
                        "frame": self._add(tx.panel(rng, _pick(rng, PAINTS), 8, 8)),
                        "tyre_side": self._shared["wheel_side"],
                        "tyre_end": self._shared["tyre"],
                        "helmet": self._add(tx.panel(rng, _pick(rng, PAINTS), 8, 8)),
                    }
                )
                riders.append(self._kit(entries))
        self.agent_kits["pedestrian"] = np.stack(peds)
        self.agent_kits["cyclist"] = np.stack(riders)

    def _build_props(self, rng: np.random.Generator, layout: RoadLayout) -> np.ndarray:
        kits = np.zeros((N_PROP_KINDS, N_PROP_LOOKS, 6), np.int32)
        for v in range(N_PROP_LOOKS):
            wall = _pick(rng, WALLS)
            bay = (float(rng.uniform(2.4, 4.0)), float(rng.uniform(2.8, 3.6)))
            glass = jitter(rng, (95, 80, 65), 0.2)
            fac = self._add(
                tx.facade(rng, wall, rng.random() < 0.3, float(rng.uniform(0.3, 0.65)), glass),
                bay,
                (24.0, 28.0),
            )
            roof = self._add(tx.concrete(rng, (70, 72, 75)), (4.0, 2.0), (24.0, 16.0))
            kits[BUILDING, v] = [fac, fac, fac, fac, roof, roof]
            if rng.random() < 0.5:
                w = self._add(
                    tx.concrete(rng, _pick(rng, [(170, 172, 175), (140, 145, 150)]), 2),
                    (4.0, 1.0),
                    (25.0, 2.4),
                )
            else:
                w = self._add(
                    tx.brick_wall(rng, _pick(rng, [(60, 80, 150), (70, 90, 130)])),
                    (1.2, 0.6),
                    (25.0, 2.4),
                )
            kits[WALL, v] = w
            green = _pick(rng, [(40, 110, 50), (35, 90, 60), (50, 120, 80), (40, 100, 90)])
            kits[HEDGE, v] = self._add(tx.foliage(rng, green), (1.0, 1.0), (25.0, 2.0))
            kits[CROWN, v] = self._add(
                tx.foliage(rng, jitter(rng, green, 0.15)), (1.6, 1.6), (4.5, 4.5)
            )
            kits[TRUNK, v] = self._add(
                tx.bark(rng, _pick(rng, [(40, 60, 80), (60, 70, 80)])), (0.6, 1.2), (0.6, 3.8)
            )
        metal = self._add(tx.panel(rng, _pick(rng, [(120, 122, 125), (80, 90, 70), (60, 60, 62)])))
        kits[POLE] = metal
        head = self._add(tx.panel(rng, (110, 110, 112)))
        light = self._add(tx.lamp(rng))
        kits[LAMP] = [head, head, head, head, head, light]
        pave_m = float(rng.uniform(0.3, 0.8))
        grid = int(rng.choice([2, 4]))
        # the sidewalk boxes snap their ends to this period, so paving and kerb joints stay
        # fixed to the world as the ego moves
        self.sidewalk_period_m = pave_m * grid
        pave = self._add(
            tx.paving(rng, _pick(rng, [(150, 155, 160), (120, 130, 150), (165, 165, 160)]), grid),
            (self.sidewalk_period_m, self.sidewalk_period_m),
            (5.0, 400.0),
        )
        kerb = self._add(
            tx.concrete(rng, (175, 178, 180), 1, 16, 32),
            (self.sidewalk_period_m, layout.kerb_height_m),
            (400.0, layout.kerb_height_m),
        )
        kits[SIDEWALK] = [kerb, kerb, kerb, kerb, pave, kerb]
        return kits

    # -- lookups used by the scene ---------------------------------------------------------
    def agent_materials(self, cls: str, look: int, slots: np.ndarray) -> np.ndarray:
        kits = self.agent_kits[cls]
        return kits[look % len(kits)][slots]

    def prop_materials(self, kinds: np.ndarray, looks: np.ndarray) -> np.ndarray:
        return self.prop_kits[kinds, looks % N_PROP_LOOKS]
