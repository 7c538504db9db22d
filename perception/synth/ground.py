"""The road surface as a texture atlas in world coordinates, and the sky.

The ground is the plane Z = 0; its colour at world point (X, Y) is read from an atlas that
covers Y in [-ATLAS_HALF_WIDTH_M, ATLAS_HALF_WIDTH_M] and one period of X (the pattern of
lane dashes and zebra crossings repeats every ATLAS_PERIOD_M). Because the ground seen from a
pixel is foreshortened along X far more than across, the atlas is stored at three X
resolutions side by side (anisotropic mip levels); each pixel reads the level that matches
its footprint, which keeps distant lane dashes from shimmering. Lookups wrap around in both
X (rows are clamped at the outermost lawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.synth import textures as tx
from perception.synth.appearance import Lighting, SkyLook, jitter
from perception.synth.layout import ATLAS_PERIOD_M, ZEBRA_WIDTH_M, ZEBRA_X_M, RoadLayout

ATLAS_RES_M = 0.05  # metres per atlas pixel at level 0 (both axes)
ATLAS_HALF_WIDTH_M = 40.0
LEVEL_FACTORS = (1, 4, 16)  # X down-sampling of the levels
LEVEL_MAX_FOOTPRINT_M = (0.15, 0.6)  # a pixel whose X footprint exceeds these uses coarser


@dataclass
class GroundAtlas:
    levels: list[np.ndarray]  # BGR uint8, lit, *transposed*: rows run along X, columns along
    # Y (column 0 at Y = +half_width_m); level i is down-sampled along X by LEVEL_FACTORS[i]
    level_rows_per_m: tuple[float, ...]
    period_m: float = ATLAS_PERIOD_M
    half_width_m: float = ATLAS_HALF_WIDTH_M
    res_m: float = ATLAS_RES_M


class _Painter:
    """Draw bands and rectangles in world metres onto the level-0 atlas."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.rows, self.cols = img.shape[:2]

    def row(self, y: float) -> int:
        return round((ATLAS_HALF_WIDTH_M - y) / ATLAS_RES_M)

    def col(self, x: float) -> int:
        return round(x / ATLAS_RES_M)

    def band(
        self, y0: float, y1: float, x0: float = 0.0, x1: float = ATLAS_PERIOD_M
    ) -> tuple[slice, slice]:
        r0, r1 = sorted((self.row(y0), self.row(y1)))
        r0, r1 = max(r0, 0), min(max(r1, r0 + 1), self.rows)
        c0, c1 = max(self.col(x0), 0), min(max(self.col(x1), self.col(x0) + 1), self.cols)
        return slice(r0, r1), slice(c0, c1)

    def paint(
        self, y0: float, y1: float, colour: np.ndarray, x0: float = 0.0, x1: float = ATLAS_PERIOD_M
    ) -> None:
        rs, cs = self.band(y0, y1, x0, x1)
        self.img[rs, cs] = colour

    def line(
        self, y: float, width: float, colour: np.ndarray, on_m: float = 0.0, period_m: float = 0.0
    ) -> None:
        """A marking along X centred on Y = y; dashed when on_m > 0."""
        if on_m <= 0:
            self.paint(y - width / 2, y + width / 2, colour)
            return
        x = 0.0
        while x < ATLAS_PERIOD_M - 1e-6:
            self.paint(y - width / 2, y + width / 2, colour, x, x + on_m)
            x += period_m


def build_atlas(layout: RoadLayout, rng: np.random.Generator, lighting: Lighting) -> GroundAtlas:
    rows = round(2 * ATLAS_HALF_WIDTH_M / ATLAS_RES_M)
    cols = round(ATLAS_PERIOD_M / ATLAS_RES_M)
    grass = jitter(
        rng, [(60, 120, 95), (70, 130, 120), (75, 115, 135), (60, 100, 80)][int(rng.integers(4))]
    )
    img = np.empty((rows, cols, 3), np.float32)
    img[:] = grass
    small = tx.fbm(rng, rows // 4, cols // 4, (60.0, 12.0, 3.0))
    img *= 1.0 + 0.3 * cv2.resize(small, (cols, rows))[..., None]
    p = _Painter(img)
    gravel = np.asarray(
        jitter(rng, [(120, 125, 130), (110, 130, 145), (95, 100, 105)][int(rng.integers(3))])
    )
    for side in layout.sides:
        p.paint(side.y(side.kerb_m), side.y(side.lot_m), gravel)
    asphalt = np.asarray(jitter(rng, (float(rng.uniform(65, 110)),) * 3, 0.05))
    rs, _ = p.band(layout.left.kerb_m, -layout.right.kerb_m)
    road_noise = 1.0 + 0.12 * tx.fbm(rng, rs.stop - rs.start, cols, (40.0, 8.0, 2.0))
    img[rs] = asphalt[None, None, :] * road_noise[..., None]
    # tyre tracks: slightly darker bands in every lane
    for lane in range(layout.lanes_each_way):
        for oncoming in (False, True):
            yc = layout.lane_y(lane, oncoming)
            for off in (-0.85, 0.85):
                r, c = p.band(yc + off - 0.25, yc + off + 0.25)
                img[r, c] *= 0.93
    # repair patches
    for _ in range(int(rng.integers(0, 6))):
        x0 = float(rng.uniform(0, ATLAS_PERIOD_M - 6))
        y0 = float(rng.uniform(-layout.lanes_edge_m, layout.lanes_edge_m - 2))
        r, c = p.band(y0, y0 + float(rng.uniform(1, 3)), x0, x0 + float(rng.uniform(2, 6)))
        img[r, c] *= float(rng.uniform(0.85, 1.1))
    if layout.bike_lane_bgr is not None:
        for side in layout.sides:
            r, c = p.band(
                side.y(layout.lanes_edge_m), side.y(layout.lanes_edge_m + layout.bike_width_m)
            )
            img[r, c] = 0.5 * img[r, c] + 0.5 * np.asarray(layout.bike_lane_bgr, np.float32)
    mark = np.asarray(layout.marking_bgr, np.float32)
    white = np.asarray((235, 235, 235), np.float32)
    width = 0.13
    if layout.centre_style == "double":
        p.line(-0.12, width, mark)
        p.line(0.12, width, mark)
    elif layout.centre_style == "solid":
        p.line(0.0, width, mark)
    else:
        p.line(0.0, width, mark, layout.dash_on_m, layout.dash_period_m)
    for lane in range(1, layout.lanes_each_way):
        for sgn in (-1.0, 1.0):
            p.line(
                sgn * lane * layout.lane_width_m,
                width,
                white,
                layout.dash_on_m,
                layout.dash_period_m,
            )
    for side in layout.sides:
        p.line(side.y(layout.lanes_edge_m), 0.15, white)
        if side.parking:
            p.line(side.y(layout.lanes_edge_m + layout.bike_width_m), 0.1, white, 1.0, 2.0)
    # zebra crossing: bars along X, 0.5 m wide, across the whole carriageway
    y = -layout.right.kerb_m + 0.5
    while y < layout.left.kerb_m - 0.5:
        p.paint(y, y + 0.5, white, ZEBRA_X_M, ZEBRA_X_M + ZEBRA_WIDTH_M)
        y += 1.0
    # worn paint: markings fade where the wear noise is high
    wear = 0.85 + 0.15 * tx.fbm(rng, rows // 4, cols // 4, (8.0, 2.0))
    img *= cv2.resize(wear, (cols, rows))[..., None]
    ground_normal = np.array([[0.0, 0.0, 1.0]])
    img *= lighting.shade(ground_normal)[0][None, None, :].astype(np.float32)
    level0 = np.clip(img, 0, 255).astype(np.uint8)
    levels = [
        np.ascontiguousarray(
            (
                level0
                if f == 1
                else cv2.resize(level0, (cols // f, rows), interpolation=cv2.INTER_AREA)
            ).transpose(1, 0, 2)
        )
        for f in LEVEL_FACTORS
    ]
    per_m = tuple(cols / f / ATLAS_PERIOD_M for f in LEVEL_FACTORS)
    return GroundAtlas(levels, per_m)


def sky_image(rays_vehicle: np.ndarray, sky: SkyLook, rng: np.random.Generator) -> np.ndarray:
    """Sky colours (H, W, 3) uint8 for unit rays (H, W, 3) in the vehicle frame.

    A gradient from the horizon to the zenith, with clouds on a flat layer 1.5 km up (read
    through the ray, so they shrink towards the horizon as real clouds do).
    """
    dz = rays_vehicle[..., 2]
    elev = np.arcsin(np.clip(dz, -1.0, 1.0))
    t = np.clip(elev / np.radians(35.0), 0.0, 1.0) ** 0.7
    col = (
        sky.horizon_bgr[None, None, :] * (1 - t[..., None])
        + sky.zenith_bgr[None, None, :] * t[..., None]
    )
    if sky.cloud_cover > 0.02:
        tile = tx.periodic_fbm(rng, 256, (64, 32, 8, 4))
        scale = 256 / 6000.0  # tile pixels per metre on the cloud layer
        dzp = np.maximum(dz, 0.02)
        # wrap here: remap holds coordinates in 16 bits and wraps negative ones with a seam
        mx = np.mod(rays_vehicle[..., 0] / dzp * 1500.0 * scale, 256.0).astype(np.float32)
        my = np.mod(rays_vehicle[..., 1] / dzp * 1500.0 * scale, 256.0).astype(np.float32)
        n = cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        thresh = 0.5 - sky.cloud_cover
        alpha = np.clip((n - thresh) * 3.0, 0.0, 1.0) * np.clip(elev / np.radians(6.0), 0.0, 1.0)
        alpha *= 0.85
        shade_c = sky.cloud_bgr[None, None, :] * (0.8 + 0.2 * np.clip(n[..., None], 0, 1))
        col = col * (1 - alpha[..., None]) + shade_c * alpha[..., None]
    return np.clip(col, 0, 255).astype(np.uint8)
