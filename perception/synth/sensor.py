"""What the camera adds on top of the ideal rendering: haze, vignetting, white balance,
exposure drift, optical blur and noise. None of it changes labels or depth."""

from __future__ import annotations

import math

import cv2
import numpy as np

from perception.synth.appearance import SkyLook
from perception.synth.config import SensorConfig
from perception.synth.rng import FRAME, SENSOR, rng_for

NOISE_PAD = 16  # the noise pattern is this much larger than the image; frames crop it


class Sensor:
    def __init__(
        self, seed: int, width: int, height: int, config: SensorConfig, sky: SkyLook, fog: bool
    ) -> None:
        self.seed = seed
        self.config = config
        self.fog_distance_m = sky.fog_distance_m if fog else 0.0
        self.fog_image = np.empty((height, width, 3), np.uint8)
        self.fog_image[:] = np.clip(sky.fog_bgr, 0, 255).astype(np.uint8)
        rng = rng_for(seed, SENSOR)
        self.noise_std = float(rng.uniform(*config.noise_std))
        self.blur_sigma = float(rng.uniform(*config.blur_sigma_px))
        vignetting = float(rng.uniform(*config.vignetting))
        wb = 1.0 + rng.uniform(-0.06, 0.06, 3)
        self.flicker_period_s = float(rng.uniform(5.0, 20.0))
        self.flicker_phase = float(rng.uniform(0, 2 * math.pi))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
        vig = 1.0 - vignetting * np.clip(r2 / 2.0, 0, 1)
        self.gain = (vig[..., None] * wb[None, None, :].astype(np.float32)).astype(np.float32)
        n = rng.normal(0.0, self.noise_std, (height + NOISE_PAD, width + NOISE_PAD, 3))
        self.noise_pos = np.clip(n, 0, 255).astype(np.uint8)
        self.noise_neg = np.clip(-n, 0, 255).astype(np.uint8)

    def haze(self, image: np.ndarray, inv_depth: np.ndarray) -> np.ndarray:
        """Blend towards the fog colour by distance: keep exp(-z / fog_distance) of the light."""
        if self.fog_distance_m <= 0:
            return image
        arg = np.zeros(inv_depth.shape, np.float32)
        np.divide(np.float32(-1.0 / self.fog_distance_m), inv_depth, out=arg, where=inv_depth > 0)
        keep = cv2.exp(arg)
        return cv2.blendLinear(image, self.fog_image, keep, 1.0 - keep)

    def apply(self, image: np.ndarray, inv_depth: np.ndarray, index: int, t: float) -> np.ndarray:
        out = self.haze(image, inv_depth)
        if not self.config.enabled:
            return out
        exposure = 1.0 + self.config.exposure_flicker * math.sin(
            2 * math.pi * t / self.flicker_period_s + self.flicker_phase
        )
        out = cv2.multiply(out, self.gain, scale=exposure, dtype=cv2.CV_8U)
        if self.blur_sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), self.blur_sigma)
        if self.noise_std > 0.05:
            rng = rng_for(self.seed, FRAME, index)
            dy, dx = (int(v) for v in rng.integers(0, NOISE_PAD, 2))
            h, w = out.shape[:2]
            cv2.add(out, self.noise_pos[dy : dy + h, dx : dx + w], dst=out)
            cv2.subtract(out, self.noise_neg[dy : dy + h, dx : dx + w], dst=out)
        return out
