"""Multi-object tracking in the vehicle frame: 3D lifting, ByteTrack association, Kalman filters.

Typical use (what the tracker node does per frame)::

    cfg = load_tracker_config()            # perception/configs/tracker.yaml
    tracker = Tracker(cfg)
    lifted = lift_detections(camera, det.boxes_xyxy, depth_msg, det.depth_m, cfg.lifting,
                             det.class_ids, det.class_names)
    tracks = tracker.update(det.stamp_ns, det.boxes_xyxy, det.scores, det.class_ids,
                            lifted.positions_vehicle, lifted.covariances_vehicle,
                            lifted.sizes_m)
    msg = TrackedObjects(stamp_ns=det.stamp_ns, ..., **tracks_to_msg_fields(tracks))
"""

from perception.tracking.byte import Track, Tracker, TrackSet, TrackState
from perception.tracking.config import TrackerConfig, load_tracker_config
from perception.tracking.lifting import LiftedObjects, lift_detections
from perception.tracking.output import tracks_to_msg_fields

__all__ = [
    "LiftedObjects",
    "Track",
    "TrackSet",
    "TrackState",
    "Tracker",
    "TrackerConfig",
    "lift_detections",
    "load_tracker_config",
    "tracks_to_msg_fields",
]
