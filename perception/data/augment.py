"""Augmentation that keeps boxes, dense depth and per-object depth consistent.

* Horizontal flip: the mirrored image is what a camera with principal point W-1-cx sees of
  the mirrored world; depth is unchanged.
* Scale and crop: resize by s, then cut (or pad) a window. Resizing an image by s is the same
  as multiplying the focal length by s, which breaks the link between apparent size and depth.
  Two ways to keep the sample consistent, chosen by ``depth_mode``:

  - ``"keep"``: depth stays the true metric z and the sample's K gets the new focal length
    (s fx, s fy) and principal point: exact, but the model must be told K.
  - ``"rescale"`` (default): depth is divided by s and K keeps the original focal length, so a
    model for one fixed camera sees objects whose size and depth agree (an object twice as
    large on screen is twice as near). Lateral positions (x, y in metres) are unchanged; the
    ground plane no longer lies exactly camera-height below the camera.
* Colour jitter: brightness, contrast, saturation, hue; geometry untouched.

Dense maps (depth, instance ids) are resampled with nearest neighbour so no depth is invented
across object edges and 0 (unknown) stays 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from perception.data.sample import Sample

DEPTH_MODES = ("rescale", "keep")


@dataclass
class AugmentConfig:
    hflip_p: float = 0.5
    scale_p: float = 0.5  # chance of a scale/crop; otherwise only a crop to output_size if set
    scale_range: tuple[float, float] = (0.8, 1.3)
    output_size: tuple[int, int] | None = None  # (width, height); None: the input size
    depth_mode: str = "rescale"  # "rescale" or "keep" (see the module docstring)
    colour_p: float = 0.8
    brightness: float = 0.25  # multiply by 1 +- this
    contrast: float = 0.25
    saturation: float = 0.3
    hue_deg: float = 6.0
    min_box_px: float = 2.0  # boxes thinner than this after cropping are dropped ...
    min_kept_fraction: float = 0.25  # ... as are boxes with less than this share left


def hflip(s: Sample) -> Sample:
    w = s.width
    boxes = s.boxes_xyxy.copy()
    boxes[:, 0], boxes[:, 2] = (w - 1) - s.boxes_xyxy[:, 2], (w - 1) - s.boxes_xyxy[:, 0]
    ignore = s.ignore_boxes_xyxy.copy()
    ignore[:, 0], ignore[:, 2] = (
        (w - 1) - s.ignore_boxes_xyxy[:, 2],
        (w - 1) - s.ignore_boxes_xyxy[:, 0],
    )
    K = s.K.copy()
    K[0, 2] = (w - 1) - K[0, 2]
    K[0, 1] = -K[0, 1]
    return replace(
        s,
        image_bgr=np.ascontiguousarray(s.image_bgr[:, ::-1]),
        boxes_xyxy=boxes,
        depth_m=np.ascontiguousarray(s.depth_m[:, ::-1]),
        K=K,
        ignore_boxes_xyxy=ignore,
        instance_map=None
        if s.instance_map is None
        else np.ascontiguousarray(s.instance_map[:, ::-1]),
    )


def _paste(src: np.ndarray, x0: int, y0: int, out_w: int, out_h: int) -> np.ndarray:
    """The window [x0, x0+out_w) x [y0, y0+out_h) of src, zero outside it."""
    out = np.zeros((out_h, out_w, *src.shape[2:]), src.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + out_w, src.shape[1]), min(y0 + out_h, src.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = src[sy0:sy1, sx0:sx1]
    return out


def _map_boxes(boxes: np.ndarray, sx: float, sy: float, x0: int, y0: int) -> np.ndarray:
    """Box coordinates through c' = s (c + 0.5) - 0.5 - offset (pixel centres at integers,
    as cv2.resize aligns them)."""
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = sx * (out[:, [0, 2]] + 0.5) - 0.5 - x0
    out[:, [1, 3]] = sy * (out[:, [1, 3]] + 0.5) - 0.5 - y0
    return out


def _clip_boxes(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    out = boxes.copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, w - 1.0)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, h - 1.0)
    return out


def scale_crop(
    s: Sample,
    scale: float,
    x0: int,
    y0: int,
    out_w: int,
    out_h: int,
    depth_mode: str = "rescale",
    min_box_px: float = 2.0,
    min_kept_fraction: float = 0.25,
) -> Sample:
    """Resize by `scale`, then take the window at (x0, y0) of size out_w x out_h (zero-padded
    where it leaves the resized image). Boxes are clipped; those mostly cut away are dropped."""
    if depth_mode not in DEPTH_MODES:
        raise ValueError(f"depth_mode must be one of {DEPTH_MODES}, got {depth_mode!r}")
    new_w, new_h = max(1, round(s.width * scale)), max(1, round(s.height * scale))
    sx, sy = new_w / s.width, new_h / s.height
    image = cv2.resize(
        s.image_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    depth = cv2.resize(s.depth_m, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
    inst = None
    if s.instance_map is not None:
        inst = cv2.resize(s.instance_map, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
        inst = _paste(inst, x0, y0, out_w, out_h)
    image, depth = _paste(image, x0, y0, out_w, out_h), _paste(depth, x0, y0, out_w, out_h)
    mapped = _map_boxes(s.boxes_xyxy, sx, sy, x0, y0)
    clipped = _clip_boxes(mapped, out_w, out_h)
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    keep = (
        (clipped[:, 2] - clipped[:, 0] >= min_box_px)
        & (clipped[:, 3] - clipped[:, 1] >= min_box_px)
        & (area(clipped) >= min_kept_fraction * np.maximum(area(mapped), 1e-9))
    )
    ign = _clip_boxes(_map_boxes(s.ignore_boxes_xyxy, sx, sy, x0, y0), out_w, out_h)
    ign = ign[area(ign) > 0]
    K = s.K.copy()
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += 0.5 * sx - 0.5 - x0
    K[1, 2] += 0.5 * sy - 0.5 - y0
    obj_depth = s.object_depth_m
    if depth_mode == "rescale":
        f = math.sqrt(sx * sy)  # the scale factor (sx and sy differ only by rounding)
        depth = (depth / np.float32(f)).astype(np.float32)
        obj_depth = (obj_depth / np.float32(f)).astype(np.float32)
        K[0, 0] /= f
        K[1, 1] /= f
        K[0, 1] /= f
    out = replace(
        s,
        image_bgr=image,
        boxes_xyxy=clipped.astype(np.float32),
        object_depth_m=obj_depth,
        depth_m=depth,
        K=K,
        ignore_boxes_xyxy=ign.astype(np.float32),
        instance_map=inst,
    )
    return out.select(keep)


def colour_jitter(s: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    img = s.image_bgr.astype(np.float32)
    b = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    img *= b
    mean = float(img.mean())
    img = (img - mean) * c + mean
    grey = img.mean(axis=2, keepdims=True)
    sat = 1.0 + rng.uniform(-cfg.saturation, cfg.saturation)
    img = (img - grey) * sat + grey
    out = np.clip(img, 0, 255).astype(np.uint8)
    if cfg.hue_deg > 0:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
        shift = round(rng.uniform(-cfg.hue_deg, cfg.hue_deg) / 2)  # OpenCV hue: 0..179
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return replace(s, image_bgr=out)


class Augment:
    """Random flip, scale/crop and colour jitter, drawn from the generator passed in."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        if self.config.depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth_mode must be one of {DEPTH_MODES}")

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        cfg = self.config
        if rng.random() < cfg.hflip_p:
            s = hflip(s)
        out_w, out_h = cfg.output_size or (s.width, s.height)
        scale = float(rng.uniform(*cfg.scale_range)) if rng.random() < cfg.scale_p else 1.0
        if scale != 1.0 or (out_w, out_h) != (s.width, s.height):
            new_w, new_h = round(s.width * scale), round(s.height * scale)
            x0 = int(rng.integers(min(0, new_w - out_w), max(0, new_w - out_w) + 1))
            y0 = int(rng.integers(min(0, new_h - out_h), max(0, new_h - out_h) + 1))
            s = scale_crop(
                s,
                scale,
                x0,
                y0,
                out_w,
                out_h,
                cfg.depth_mode,
                cfg.min_box_px,
                cfg.min_kept_fraction,
            )
        if rng.random() < cfg.colour_p:
            s = colour_jitter(s, rng, cfg)
        return s
