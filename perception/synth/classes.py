"""The object classes the generator labels, and the sizes it draws them with.

Sizes are uniform ranges around the KITTI training-set means (car 3.88 x 1.63 x 1.53 m,
pedestrian 0.84 x 0.66 x 1.76 m, cyclist 1.76 x 0.60 x 1.74 m, truck ~10 x 2.6 x 3.3 m), so a
model trained on synthetic drives learns priors that carry over to real data.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}


@dataclass(frozen=True)
class SizeRange:
    """Uniform ranges (min, max) in metres of a class's box length, width and height."""

    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]


CLASS_SIZES: dict[str, SizeRange] = {
    "car": SizeRange(length=(3.6, 4.9), width=(1.55, 1.95), height=(1.35, 1.75)),
    "truck": SizeRange(length=(6.5, 12.0), width=(2.3, 2.6), height=(2.8, 3.8)),
    "pedestrian": SizeRange(length=(0.5, 0.95), width=(0.5, 0.75), height=(1.5, 1.95)),
    "cyclist": SizeRange(length=(1.6, 1.9), width=(0.5, 0.7), height=(1.6, 1.85)),
}
