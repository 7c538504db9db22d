"""How objects look in views and rendered videos: one colour per class, the same label texts.

Shared by the Foxglove view channels and the rendered review so that a car is the same colour
and says the same thing in both.
"""

from __future__ import annotations

import math

import numpy as np

# Distinct, readable colours (RGB, 0..255), indexed by class id modulo the length.
_PALETTE_RGB = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 190),
        (0, 128, 128),
        (170, 110, 40),
    ],
    dtype=np.uint8,
)


def class_rgb(class_id: int) -> tuple[int, int, int]:
    """The class's colour, RGB 0..255."""
    r, g, b = _PALETTE_RGB[int(class_id) % len(_PALETTE_RGB)]
    return int(r), int(g), int(b)


def class_bgr(class_id: int) -> tuple[int, int, int]:
    """The class's colour for OpenCV drawing (BGR 0..255)."""
    r, g, b = class_rgb(class_id)
    return b, g, r


def class_name(names: list[str], class_id: int) -> str:
    return names[class_id] if 0 <= class_id < len(names) else f"class {class_id}"


def ground_distance_m(position_m: np.ndarray) -> float:
    """Distance on the ground from the vehicle origin to a vehicle-frame point (x forward, y
    left): what "23 m away" means to a driver."""
    return math.hypot(float(position_m[0]), float(position_m[1]))


def detection_label(name: str, score: float, depth_m: float) -> str:
    return f"{name} {score:.2f} {depth_m:.1f}m"


def track_label(track_id: int, name: str, distance_m: float, speed_mps: float) -> str:
    return f"#{track_id} {name} {distance_m:.1f}m {speed_mps:.1f}m/s"
