"""Procedural texture painters: small BGR images drawn with numpy and OpenCV.

Each painter takes a generator and the colours it needs and returns a uint8 image. Textures
are mapped onto faces either stretched (once per face: car panels) or tiled by physical size
(facades, paving); see `perception.synth.appearance.Material`.
"""

from __future__ import annotations

import cv2
import numpy as np

Colour = tuple[float, float, float]  # BGR, 0..255


def noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in about [-1, 1], features about `cell` pixels wide."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) * 0.6


def periodic_fbm(rng: np.random.Generator, size: int, cells: tuple[int, ...]) -> np.ndarray:
    """Like `fbm` on a square tile that repeats seamlessly (each cell must divide size)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for cell in cells:
        n = size // cell
        g = np.pad(rng.standard_normal((n, n)).astype(np.float32), 2, mode="wrap")
        big = cv2.resize(g, ((n + 4) * cell, (n + 4) * cell), interpolation=cv2.INTER_CUBIC)
        out += amp * 0.6 * big[2 * cell : 2 * cell + size, 2 * cell : 2 * cell + size]
        amp *= 0.55
        total += amp
    return out / total


def fbm(rng: np.random.Generator, h: int, w: int, cells: tuple[float, ...]) -> np.ndarray:
    """Sum of noise octaves (largest first), normalised to about [-1, 1]."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for cell in cells:
        out += amp * noise(rng, h, w, cell)
        total += amp
        amp *= 0.55
    return out / total


def scaled(c: Colour, f: float) -> Colour:
    return (c[0] * f, c[1] * f, c[2] * f)


def fill(h: int, w: int, colour: Colour) -> np.ndarray:
    return np.broadcast_to(np.asarray(colour, np.float32), (h, w, 3)).copy()


def finish(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
    """Fill a rectangle given in fractions of the width and height."""
    h, w = img.shape[:2]
    img[round(y0 * h) : max(round(y1 * h), round(y0 * h) + 1),
        round(x0 * w) : max(round(x1 * w), round(x0 * w) + 1)] = colour  # fmt: skip


def _grain(
    rng: np.random.Generator, img: np.ndarray, amount: float, cell: float = 3.0
) -> np.ndarray:
    n = 1.0 + amount * fbm(rng, img.shape[0], img.shape[1], (cell * 4, cell))
    return img * n[..., None]


# -- vehicles ------------------------------------------------------------------------------
def body_side(rng: np.random.Generator, paint: Colour) -> np.ndarray:
    h, w = 24, 96
    img = fill(h, w, paint)
    img[int(0.78 * h) :] *= 0.75  # rocker panel in shadow
    img[:2] = img[:2] * 1.15  # shoulder line catches the light
    for fx in (0.36, 0.63):
        x = int(fx * w)
        img[1 : int(0.85 * h), x] *= 0.5  # door seams
        rect(img, fx + 0.05, 0.18, fx + 0.1, 0.26, (40, 40, 40))  # handles
    for fx in (0.19, 0.81):  # wheel arches
        cv2.ellipse(img, (int(fx * w), h + 3), (10, 14), 0, 0, 360, (22, 22, 22), -1)
    return finish(_grain(rng, img, 0.05))


def body_end(rng: np.random.Generator, paint: Colour, front: bool) -> np.ndarray:
    h, w = 24, 48
    img = fill(h, w, paint)
    lamp: Colour = (215, 228, 235) if front else (35, 30, 190)
    rect(img, 0.04, 0.12, 0.26, 0.36, lamp)
    rect(img, 0.74, 0.12, 0.96, 0.36, lamp)
    if front:
        rect(img, 0.32, 0.22, 0.68, 0.55, (38, 38, 38))  # grille
    else:
        rect(img, 0.3, 0.1, 0.7, 0.2, scaled(paint, 0.8))  # boot lid edge
    rect(img, 0.36, 0.6, 0.64, 0.78, (225, 225, 225))  # plate
    rect(img, 0.0, 0.8, 1.0, 1.0, (45, 45, 48))  # bumper
    return finish(_grain(rng, img, 0.05))


def glass_side(rng: np.random.Generator, paint: Colour) -> np.ndarray:
    h, w = 16, 64
    grad = np.linspace(1.25, 0.8, h, dtype=np.float32)[:, None, None]
    img = fill(h, w, (72, 64, 58)) * grad
    for x0, x1 in ((0.0, 0.07), (0.47, 0.53), (0.93, 1.0)):
        rect(img, x0, 0.0, x1, 1.0, paint)
    rect(img, 0.0, 0.0, 1.0, 0.12, paint)
    rect(img, 0.0, 0.88, 1.0, 1.0, paint)
    return finish(_grain(rng, img, 0.04))


def glass_end(rng: np.random.Generator, paint: Colour) -> np.ndarray:
    h, w = 16, 48
    grad = np.linspace(1.3, 0.85, h, dtype=np.float32)[:, None, None]
    img = fill(h, w, (70, 62, 55)) * grad
    rect(img, 0.0, 0.0, 1.0, 0.15, paint)
    rect(img, 0.0, 0.0, 0.08, 1.0, paint)
    rect(img, 0.92, 0.0, 1.0, 1.0, paint)
    return finish(_grain(rng, img, 0.04))


def panel(
    rng: np.random.Generator, colour: Colour, h: int = 16, w: int = 32, grain: float = 0.06
) -> np.ndarray:
    return finish(_grain(rng, fill(h, w, colour), grain))


def wheel_side(rng: np.random.Generator) -> np.ndarray:
    h = w = 32
    img = fill(h, w, (28, 28, 30))
    cv2.circle(img, (16, 16), 15, (18, 18, 18), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, (16, 16), 8, (120, 122, 125), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, (16, 16), 3, (60, 60, 60), -1)
    return finish(_grain(rng, img, 0.05))


def cargo_side(rng: np.random.Generator, colour: Colour, logo: Colour | None) -> np.ndarray:
    h, w = 32, 128
    img = fill(h, w, colour)
    img[:, ::8] *= 0.82  # ribs
    img[-2:] *= 0.6
    if logo is not None:
        rect(img, 0.2, 0.35, 0.8, 0.6, logo)
    return finish(_grain(rng, img, 0.05))


def cargo_rear(rng: np.random.Generator, colour: Colour) -> np.ndarray:
    h, w = 32, 32
    img = fill(h, w, colour)
    img[:, 15:17] *= 0.5  # door split
    for x in (0.42, 0.56):
        rect(img, x, 0.3, x + 0.03, 0.7, (70, 70, 70))  # bars
    rect(img, 0.02, 0.86, 0.14, 0.96, (35, 30, 190))
    rect(img, 0.86, 0.86, 0.98, 0.96, (35, 30, 190))
    return finish(_grain(rng, img, 0.05))


def truck_front(rng: np.random.Generator, paint: Colour) -> np.ndarray:
    h, w = 32, 32
    img = fill(h, w, paint)
    grad = np.linspace(1.25, 0.85, 14, dtype=np.float32)[:, None, None]
    img[2:16, 2:30] = np.asarray((70, 62, 55), np.float32) * grad[:, :, :] * np.ones((1, 28, 1))
    rect(img, 0.25, 0.6, 0.75, 0.85, (40, 40, 42))
    rect(img, 0.03, 0.78, 0.18, 0.88, (215, 228, 235))
    rect(img, 0.82, 0.78, 0.97, 0.88, (215, 228, 235))
    return finish(_grain(rng, img, 0.05))


def truck_cab_side(rng: np.random.Generator, paint: Colour) -> np.ndarray:
    h, w = 32, 32
    img = fill(h, w, paint)
    rect(img, 0.45, 0.08, 0.92, 0.45, (72, 64, 58))  # side window
    img[:, 10] *= 0.55  # door seam
    return finish(_grain(rng, img, 0.05))


# -- people --------------------------------------------------------------------------------
def cloth(rng: np.random.Generator, colour: Colour) -> np.ndarray:
    img = fill(16, 16, colour)
    img = _grain(rng, img, 0.12, cell=2.0)
    if rng.random() < 0.25:  # stripes
        img[::4] *= 0.7
    return finish(img)


def face(rng: np.random.Generator, skin: Colour, hair: Colour, side: bool) -> np.ndarray:
    h = w = 16
    img = fill(h, w, skin)
    img[: 4 if not side else 7] = hair
    if not side:
        img[7:9, 4:6] = (40, 40, 50)
        img[7:9, 10:12] = (40, 40, 50)
    return finish(_grain(rng, img, 0.05))


# -- roadside ------------------------------------------------------------------------------
def facade(
    rng: np.random.Generator, wall: Colour, brick: bool, window_w: float, glass: Colour
) -> np.ndarray:
    h = w = 64
    img = fill(h, w, wall)
    if brick:
        img[::4] *= 0.82
        for r in range(0, h, 8):
            img[r : r + 4, ::8] *= 0.85
            img[r + 4 : r + 8, 4::8] *= 0.85
    img = _grain(rng, img, 0.08)
    x0, x1 = 0.5 - window_w / 2, 0.5 + window_w / 2
    rect(img, x0 - 0.03, 0.22, x1 + 0.03, 0.8, (200, 200, 200))  # frame
    grad = np.linspace(1.35, 0.75, 36, dtype=np.float32)
    win = np.asarray(glass, np.float32)[None, None, :] * grad[:, None, None]
    c0, c1 = round(x0 * w), round(x1 * w)
    img[15:51, c0:c1] = win * np.ones((1, c1 - c0, 1), np.float32)
    img[32, c0:c1] *= 0.6  # transom
    rect(img, x0 - 0.05, 0.8, x1 + 0.05, 0.84, scaled(wall, 0.7))  # sill
    return finish(img)


def concrete(
    rng: np.random.Generator, colour: Colour, joints: int = 0, h: int = 32, w: int = 64
) -> np.ndarray:
    img = _grain(rng, fill(h, w, colour), 0.1, cell=4.0)
    for k in range(joints):
        img[:, int(k * w / joints)] *= 0.7
    return finish(img)


def brick_wall(rng: np.random.Generator, colour: Colour) -> np.ndarray:
    h, w = 32, 64
    img = _grain(rng, fill(h, w, colour), 0.1)
    img[::4] = (170, 175, 180)
    for r in range(0, h, 8):
        img[r : r + 4, ::8] = (170, 175, 180)
        img[r + 4 : r + 8, 4::8] = (170, 175, 180)
    return finish(img)


def foliage(rng: np.random.Generator, colour: Colour, size: int = 32) -> np.ndarray:
    n = fbm(rng, size, size, (8.0, 3.0, 1.5))
    img = fill(size, size, colour) * (1.0 + 0.45 * n)[..., None]
    return finish(img)


def bark(rng: np.random.Generator, colour: Colour) -> np.ndarray:
    h, w = 32, 16
    streak = noise(rng, 1, w, 2.0)
    img = fill(h, w, colour) * (1.0 + 0.3 * streak)[..., None]
    return finish(_grain(rng, img, 0.1))


def paving(rng: np.random.Generator, colour: Colour, grid: int) -> np.ndarray:
    size = 32
    img = _grain(rng, fill(size, size, colour), 0.08, cell=4.0)
    step = size // grid
    img[::step] *= 0.72
    img[:, ::step] *= 0.72
    return finish(img)


def lamp(rng: np.random.Generator) -> np.ndarray:
    img = fill(8, 16, (150, 150, 150))
    img[5:] = (225, 240, 245)
    return finish(_grain(rng, img, 0.03))
