"""Typed configuration of 3D lifting and the tracker, filled from a commented YAML file.

The defaults live twice on purpose: here (so code that builds a config without a file works)
and in ``perception/configs/tracker.yaml`` (where each value is explained for users). A test
checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from perception.config import from_dict
from perception.errors import UserError


def _f(default: Any, help: str) -> Any:
    """A field with a help text (shown by the node's --help through perception.config)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class LiftingConfig:
    """How a detection's 3D position is read from the depth map."""

    central_fraction: float = _f(0.5, "share of the box's width and height sampled (centred)")
    samples: int = _f(12, "depth samples per box side (samples x samples grid)")
    percentile: float = _f(30.0, "percentile of the valid samples taken as the object's depth")
    min_valid_fraction: float = _f(0.2, "fewer valid samples than this: use the fallback")
    depth_sigma_rel: float = _f(0.08, "depth std as a fraction of the depth")
    depth_sigma_quad: float = _f(0.0, "extra depth std per metre squared of depth (stereo-like)")
    depth_sigma_min_m: float = _f(0.2, "floor of the depth std, metres")
    pixel_sigma_px: float = _f(2.0, "std of the box centre, pixels (lateral uncertainty)")
    fallback_sigma_scale: float = _f(2.0, "std multiplier when the detection's depth_m is used")
    occlusion_aware: bool = _f(True, "ignore depth samples inside nearer overlapping boxes")
    occluder_bottom_gap: float = _f(
        0.05, "a box is nearer when its bottom edge is lower by this share of the other's height"
    )
    ground_prior: bool = _f(True, "fuse the depth with the ground-plane depth of the box bottom")
    ground_z_m: float = _f(0.0, "height of the road in the vehicle frame, metres")
    ground_sigma_px: float = _f(1.0, "std of the box's bottom edge, pixels (ground depth)")
    ground_sigma_rel: float = _f(0.05, "ground depth std for slope and pitch, share of depth")
    ground_gate_chi2: float = _f(25.0, "depths disagreeing more (squared, in stds): not fused")
    ground_max_m: float = _f(150.0, "ground-plane depths beyond this are not used, metres")
    ground_border_px: float = _f(2.0, "boxes this close to the image's lower border: not used")
    centre_offset_m: dict[str, float] = _f(
        {"car": 1.8, "truck": 3.5, "pedestrian": 0.25, "cyclist": 0.5},
        "per class name: metres added along the ray, visible surface -> object centre",
    )


@dataclass
class AssociationConfig:
    """ByteTrack's score split and the cost thresholds of each association step."""

    high_score: float = _f(0.5, "detections at or above this score are 'high' (step 2)")
    low_score: float = _f(0.1, "detections below this score are dropped; between: 'low'")
    new_track_score: float = _f(0.6, "an unmatched high detection starts a track from this score")
    first_max_cost: float = _f(0.8, "step 2 (high dets): largest accepted cost (1-IoU fused)")
    lost_3d_chi2: float = _f(7.81, "step 2b: lost tracks re-found by 3D distance up to (0: off)")
    second_min_iou: float = _f(0.5, "step 3 (low dets): smallest accepted IoU")
    tentative_max_cost: float = _f(0.7, "tentative tracks: largest accepted cost")
    weight_3d: float = _f(0.3, "share of the 3D Mahalanobis term in the step 2 cost (0: IoU)")
    chi2_3d: float = _f(11.34, "3D squared Mahalanobis distance that counts as full cost")
    gate_3d: float = _f(
        0.0, "3D squared Mahalanobis distance beyond which a pair never matches (0: no hard gate)"
    )
    fuse_score: bool = _f(False, "multiply IoU by the detection score (ByteTrack, MOT17)")


@dataclass
class LifecycleConfig:
    """When tracks are confirmed, lost and removed."""

    min_hits: int = _f(2, "associated frames before a tentative track is confirmed")
    tentative_max_misses: int = _f(1, "missed frames before a tentative track is removed")
    max_lost_s: float = _f(2.0, "seconds without a detection before a lost track is removed")
    confirm_on_first_frame: bool = _f(True, "tracks born in the very first frame are confirmed")
    duplicate_iou: float = _f(0.85, "tracked and lost tracks overlapping more: drop the younger")


@dataclass
class BoxFilterConfig:
    """Constant-velocity Kalman filter on the image box (centre x, y, width, height)."""

    meas_std: float = _f(0.05, "box measurement std as a fraction of the box size")
    meas_std_min_px: float = _f(1.0, "floor of the box measurement std, pixels")
    accel_std: float = _f(2.0, "white-noise acceleration std, box sizes per s^2")
    init_velocity_std: float = _f(1.0, "initial velocity std, box sizes per s")


@dataclass
class MotionConfig:
    """Constant-velocity Kalman filter on the position in the vehicle frame."""

    accel_std_mps2: float = _f(1.5, "white-noise acceleration std, m/s^2 (x and y)")
    accel_std_z_mps2: float = _f(0.3, "white-noise acceleration std, m/s^2 (z, up)")
    init_velocity_std_mps: float = _f(8.0, "initial velocity std, m/s")
    default_position_std_m: float = _f(1.0, "position std when a detection has no covariance")
    outlier_chi2: float = _f(25.0, "reject a position whose squared Mahalanobis distance exceeds")
    max_position_outliers: int = _f(5, "rejections in a row after which the 3D state restarts")
    size_smoothing: float = _f(0.3, "weight of a new metric size measurement (EMA)")


@dataclass
class OutputConfig:
    """Which tracks update() returns."""

    publish_tentative: bool = _f(False, "include tentative tracks")
    publish_lost: bool = _f(True, "include lost tracks (predicted, not seen this frame)")
    max_lost_publish_s: float = _f(0.15, "publish lost tracks for at most this long")
    lost_max_outside: float = _f(
        0.3, "lost tracks with more of their box outside the image: hidden"
    )
    lost_max_covered: float = _f(0.5, "lost tracks covered more by a nearer track's box: hidden")


@dataclass
class TrackerConfig:
    """Everything the tracker node's tracking part is configured by."""

    lifting: LiftingConfig = field(default_factory=LiftingConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    box_filter: BoxFilterConfig = field(default_factory=BoxFilterConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        """Raise UserError on values the tracker cannot work with."""
        a, lc, lf = self.association, self.lifecycle, self.lifting
        if not 0.0 <= a.low_score <= a.high_score <= 1.0:
            raise UserError("association: need 0 <= low_score <= high_score <= 1")
        if not 0.0 <= a.weight_3d < 1.0:
            raise UserError("association.weight_3d must be in [0, 1)")
        if not (0 < a.first_max_cost <= 1 and 0 < a.tentative_max_cost <= 1):
            raise UserError("association: max costs must be in (0, 1]")
        if not 0 < a.second_min_iou <= 1:
            raise UserError("association.second_min_iou must be in (0, 1]")
        if a.chi2_3d <= 0:
            raise UserError("association.chi2_3d must be positive")
        if lc.min_hits < 1 or lc.tentative_max_misses < 0 or lc.max_lost_s < 0:
            raise UserError("lifecycle: min_hits >= 1, tentative_max_misses >= 0, max_lost_s >= 0")
        if not 0 < lf.central_fraction <= 1 or lf.samples < 1 or not 0 <= lf.percentile <= 100:
            raise UserError("lifting: central_fraction in (0, 1], samples >= 1, percentile 0-100")
        if not 0 < self.motion.size_smoothing <= 1:
            raise UserError("motion.size_smoothing must be in (0, 1]")
        for name, v in (
            ("box_filter.meas_std", self.box_filter.meas_std),
            ("box_filter.accel_std", self.box_filter.accel_std),
            ("motion.accel_std_mps2", self.motion.accel_std_mps2),
            ("motion.init_velocity_std_mps", self.motion.init_velocity_std_mps),
            ("motion.default_position_std_m", self.motion.default_position_std_m),
            ("lifting.depth_sigma_min_m", lf.depth_sigma_min_m),
        ):
            if not v > 0:
                raise UserError(f"{name} must be positive, got {v}")


def default_config_path() -> Path:
    """The commented YAML shipped with the package."""
    return Path(str(resources.files("perception") / "configs" / "tracker.yaml"))


def load_tracker_config(path: str | Path | None = None) -> TrackerConfig:
    """Read a tracker YAML (the packaged default when `path` is None); unknown keys and values
    of the wrong type are a UserError naming the key. Missing keys keep their defaults."""
    p = Path(path) if path is not None else default_config_path()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"tracker config {p} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"tracker config {p} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"tracker config {p} must hold a map of sections")
    try:
        cfg = from_dict(TrackerConfig, data)
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None
    cfg.validate()
    return cfg
