"""The solids an agent is built from: a few boxes per class, in the agent's own frame.

Agent frame: x forward, y left, z up, origin at the centre of the footprint on the surface
the agent stands on. Each part is a box (centre, size l/w/h) whose six faces (front, rear,
left, right, top, bottom) name a material *slot*; the appearance fills the slots of each
look (paint, clothes, ...). Every part lies inside the agent's label box (l, w, h), so the
3D ground truth encloses what is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Material slots of agents (indices into a look's material table).
SLOTS: tuple[str, ...] = (
    "body_front", "body_rear", "body_side", "body_top", "cabin_front", "cabin_rear",
    "cabin_side", "cabin_top", "wheel_side", "wheel_end", "under", "cargo_front",
    "cargo_rear", "cargo_side", "cargo_top", "chassis", "shirt", "trousers", "face",
    "hair", "head_side", "skin", "frame", "tyre_side", "tyre_end", "helmet",
)  # fmt: skip
SLOT = {name: i for i, name in enumerate(SLOTS)}


@dataclass
class Parts:
    """Boxes in the agent frame: centres (P, 3), sizes (P, 3), material slots (P, 6)."""

    centres: np.ndarray
    sizes: np.ndarray
    slots: np.ndarray


def _faces(front: str, rear: str, left: str, right: str, top: str, bottom: str) -> list[int]:
    return [SLOT[front], SLOT[rear], SLOT[left], SLOT[right], SLOT[top], SLOT[bottom]]


def _all(slot: str) -> list[int]:
    return [SLOT[slot]] * 6


class _Builder:
    def __init__(self) -> None:
        self.rows: list[list[float]] = []
        self.slots: list[list[int]] = []

    def box(
        self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, slots: list[int]
    ) -> None:
        self.rows.append([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2, x1 - x0, y1 - y0, z1 - z0])
        self.slots.append(slots)

    def parts(self) -> Parts:
        a = np.asarray(self.rows, np.float64)
        return Parts(a[:, :3].copy(), a[:, 3:].copy(), np.asarray(self.slots, np.int32))


def _car_body(b: _Builder, length: float, width: float, height: float) -> None:
    """A car's body and cabin (glasshouse): shared by the full and the far level of detail."""
    hl, hw = length / 2, width / 2
    b.box(
        -hl,
        hl,
        -hw,
        hw,
        0.2 * height,
        0.62 * height,
        _faces("body_front", "body_rear", "body_side", "body_side", "body_top", "under"),
    )
    cw = 0.44 * width
    b.box(
        -0.4 * length,
        0.16 * length,
        -cw,
        cw,
        0.62 * height,
        height,
        _faces("cabin_front", "cabin_rear", "cabin_side", "cabin_side", "cabin_top", "under"),
    )


def car(length: float, width: float, height: float) -> Parts:
    """Body, cabin (glasshouse) and two axles of wheels."""
    b = _Builder()
    _car_body(b, length, width, height)
    wl = min(0.68, 0.18 * length) / 2
    ww = 0.47 * width
    for ax in (0.31 * length, -0.31 * length):
        b.box(
            ax - wl,
            ax + wl,
            -ww,
            ww,
            0.0,
            0.3 * height,
            _faces("wheel_end", "wheel_end", "wheel_side", "wheel_side", "under", "under"),
        )
    return b.parts()


def truck(length: float, width: float, height: float) -> Parts:
    """Cab, cargo box, chassis and two or three axles."""
    b = _Builder()
    hl, hw = length / 2, width / 2
    cab_l = 2.3
    b.box(
        hl - cab_l,
        hl,
        -0.98 * hw,
        0.98 * hw,
        0.45,
        0.8 * height,
        _faces("cabin_front", "cabin_rear", "cabin_side", "cabin_side", "cabin_top", "under"),
    )
    b.box(
        -hl,
        hl - cab_l - 0.15,
        -hw,
        hw,
        1.0,
        height,
        _faces("cargo_front", "cargo_rear", "cargo_side", "cargo_side", "cargo_top", "under"),
    )
    b.box(-hl + 0.3, hl - 0.2, -0.4 * width, 0.4 * width, 0.45, 1.0, _all("chassis"))
    axles = [hl - 1.3, -hl + 1.6] + ([-hl + 2.7] if length > 8.0 else [])
    ww = 0.48 * width
    for ax in axles:
        b.box(
            ax - 0.5,
            ax + 0.5,
            -ww,
            ww,
            0.0,
            1.0,
            _faces("wheel_end", "wheel_end", "wheel_side", "wheel_side", "under", "under"),
        )
    return b.parts()


def _head(b: _Builder, x: float, z1: float, size: float, helmet: bool) -> None:
    top = "helmet" if helmet else "hair"
    b.box(
        x - 0.45 * size,
        x + 0.45 * size,
        -0.42 * size,
        0.42 * size,
        z1 - size,
        z1,
        _faces("face", top, "head_side", "head_side", top, "skin"),
    )


def pedestrian(length: float, width: float, height: float, gait: float, moving: bool) -> Parts:
    """Legs and arms that swing with the gait phase, torso, head."""
    b = _Builder()
    swing = 0.5 * max(length - 0.2, 0.0) * (math.sin(gait) if moving else 0.0)
    leg_l, leg_w = 0.18, 0.15 * width / 0.6
    hip = 0.17 * width
    leg_top = 0.47 * height
    max_dx = length / 2 - leg_l / 2
    for sign in (1.0, -1.0):
        dx = float(np.clip(sign * swing, -max_dx, max_dx))
        b.box(
            dx - leg_l / 2,
            dx + leg_l / 2,
            sign * hip - leg_w / 2,
            sign * hip + leg_w / 2,
            0.0,
            leg_top,
            _all("trousers"),
        )
    torso_l = min(0.3, length)
    b.box(
        -torso_l / 2,
        torso_l / 2,
        -0.33 * width,
        0.33 * width,
        leg_top - 0.03,
        0.84 * height,
        _faces("shirt", "shirt", "shirt", "shirt", "shirt", "trousers"),
    )
    arm_l = 0.12
    for sign in (1.0, -1.0):
        dx = float(np.clip(-sign * 0.6 * swing, -(length - arm_l) / 2, (length - arm_l) / 2))
        b.box(
            dx - arm_l / 2,
            dx + arm_l / 2,
            sign * 0.34 * width,
            sign * 0.5 * width,
            0.5 * height,
            0.82 * height,
            _all("shirt"),
        )
    head = min(0.16 * height, 0.24)
    _head(b, 0.0, height, head, helmet=False)
    return b.parts()


def cyclist(length: float, width: float, height: float, gait: float) -> Parts:
    """Two wheels, frame and handlebar, and a rider leaning forward."""
    b = _Builder()
    hl = length / 2
    d = 0.68
    for cx in (hl - d / 2, -hl + d / 2):
        b.box(
            cx - d / 2,
            cx + d / 2,
            -0.03,
            0.03,
            0.0,
            d,
            _faces("tyre_end", "tyre_end", "tyre_side", "tyre_side", "tyre_end", "tyre_end"),
        )
    b.box(-hl + d / 2, hl - d / 2, -0.03, 0.03, 0.5, 0.6, _all("frame"))
    bar = 0.46 * width
    b.box(hl - d / 2 - 0.12, hl - d / 2 - 0.04, -bar, bar, 0.95, 1.0, _all("frame"))
    pedal = 0.12 * math.sin(gait)
    for sign in (1.0, -1.0):
        dx = sign * pedal
        b.box(-0.2 + dx, 0.1 + dx, sign * 0.06, sign * 0.2, 0.3, 0.95, _all("trousers"))
    b.box(
        -0.35,
        -0.02,
        -0.3 * width,
        0.3 * width,
        0.9,
        height - 0.3,
        _faces("shirt", "shirt", "shirt", "shirt", "shirt", "trousers"),
    )
    for sign in (1.0, -1.0):
        arm = 0.36 * width
        b.box(
            -0.05,
            hl - d / 2 - 0.1,
            sign * arm - 0.05,
            sign * arm + 0.05,
            height - 0.52,
            height - 0.42,
            _all("shirt"),
        )
    _head(b, -0.12, height, 0.25, helmet=True)
    return b.parts()


def far_detail(cls: str, length: float, width: float, height: float) -> Parts:
    """Fewer boxes for agents only a few pixels high (level of detail): same extent, same
    materials, a fraction of the faces."""
    b = _Builder()
    hl, hw = length / 2, width / 2
    if cls == "car":
        _car_body(b, length, width, height)
        b.box(
            -0.4 * length,
            0.4 * length,
            -0.47 * width,
            0.47 * width,
            0.0,
            0.2 * height,
            _all("wheel_end"),
        )
    elif cls == "truck":
        b.box(
            hl - 2.3,
            hl,
            -0.98 * hw,
            0.98 * hw,
            0.0,
            0.8 * height,
            _faces("cabin_front", "cabin_rear", "cabin_side", "cabin_side", "cabin_top", "under"),
        )
        b.box(
            -hl,
            hl - 2.45,
            -hw,
            hw,
            0.0,
            height,
            _faces("cargo_front", "cargo_rear", "cargo_side", "cargo_side", "cargo_top", "under"),
        )
    elif cls == "pedestrian":
        d = min(0.3, length) / 2
        b.box(-d, d, -0.33 * width, 0.33 * width, 0.0, 0.47 * height, _all("trousers"))
        b.box(-d, d, -0.45 * width, 0.45 * width, 0.47 * height, height, _all("shirt"))
    elif cls == "cyclist":
        b.box(-hl, hl, -0.03, 0.03, 0.0, 0.68, _all("tyre_end"))
        b.box(-0.35, 0.1, -0.3 * width, 0.3 * width, 0.68, height, _all("shirt"))
    else:
        raise ValueError(f"unknown agent class {cls!r}")
    return b.parts()


def single_box(cls: str, length: float, width: float, height: float) -> Parts:
    """One box for agents only a few pixels high."""
    b = _Builder()
    hl, hw = length / 2, width / 2
    if cls == "car":
        b.box(
            -hl,
            hl,
            -hw,
            hw,
            0.0,
            height,
            _faces("body_front", "body_rear", "body_side", "body_side", "cabin_top", "under"),
        )
    elif cls == "truck":
        b.box(
            -hl,
            hl,
            -hw,
            hw,
            0.0,
            height,
            _faces("cabin_front", "cargo_rear", "cargo_side", "cargo_side", "cargo_top", "under"),
        )
    elif cls == "pedestrian":
        d = min(0.3, length) / 2
        b.box(-d, d, -0.4 * width, 0.4 * width, 0.0, height, _all("shirt"))
    elif cls == "cyclist":
        b.box(-hl, hl, -0.2 * width, 0.2 * width, 0.0, height, _all("shirt"))
    else:
        raise ValueError(f"unknown agent class {cls!r}")
    return b.parts()
