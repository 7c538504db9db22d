"""Tracks -> the array fields of a ``perception.msgs.TrackedObjects`` message.

The message requires finite numbers everywhere. A track whose position was never measured (no
depth for any of its detections) is sent with position and velocity 0 and variance
``UNKNOWN_VARIANCE`` on the diagonal of its covariance: subscribers must read the covariance,
as with any estimate. An unknown (or non-finite) metric size is sent as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.tracking.byte import TrackSet

UNKNOWN_VARIANCE = 1e6  # m^2 and (m/s)^2: "not measured"
_UNKNOWN_COV = np.eye(6) * UNKNOWN_VARIANCE


def tracks_to_msg_fields(tracks: TrackSet) -> dict[str, Any]:
    """ids, class_ids, scores, boxes_xyxy, position_m, velocity_mps, covariance, size_m, age_s,
    states with the message's dtypes: pass them as keyword arguments to ``TrackedObjects(...)``
    together with the envelope (stamp_ns of the source frame, camera, class_names)."""
    known = np.isfinite(tracks.positions_m).all(axis=1)
    cov = np.where(known[:, None, None], tracks.covariances, _UNKNOWN_COV)
    sizes = tracks.sizes_m
    return {
        "ids": tracks.ids.astype(np.int64),
        "class_ids": tracks.class_ids.astype(np.int32),
        "scores": tracks.scores.astype(np.float32),
        "boxes_xyxy": tracks.boxes_xyxy.astype(np.float32).reshape(-1, 4),
        "position_m": np.where(known[:, None], tracks.positions_m, 0.0).astype(np.float32),
        "velocity_mps": np.where(known[:, None], tracks.velocities_mps, 0.0).astype(np.float32),
        "covariance": cov.astype(np.float32).reshape(-1, 6, 6),
        "size_m": np.where(np.isfinite(sizes), sizes, 0.0).astype(np.float32).reshape(-1, 2),
        "age_s": tracks.ages_s.astype(np.float32),
        "states": tracks.states.astype(np.uint8),
    }
