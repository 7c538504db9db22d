"""The ByteTrack tracker: lifecycle, ids, real-time prediction, low-score stage, 3D, output."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.errors import UserError
from perception.msgs import TRACK_STATES, TrackedObjects
from perception.tracking import (
    Tracker,
    TrackerConfig,
    TrackState,
    load_tracker_config,
    tracks_to_msg_fields,
)
from perception.tracking.config import default_config_path
from perception.tracking.output import UNKNOWN_VARIANCE

NS = 1_000_000_000
DT_NS = NS // 10


def box(cx: float, cy: float, w: float = 40.0, h: float = 30.0) -> np.ndarray:
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def step(
    tracker: Tracker,
    k: int,
    boxes: list[np.ndarray],
    scores: list[float] | None = None,
    classes: list[int] | None = None,
    positions: np.ndarray | None = None,
    stamp_ns: int | None = None,
):  # type: ignore[no-untyped-def]
    n = len(boxes)
    return tracker.update(
        k * DT_NS if stamp_ns is None else stamp_ns,
        np.array(boxes).reshape(n, 4),
        np.array(scores if scores is not None else [0.9] * n),
        np.array(classes if classes is not None else [0] * n),
        positions,
    )


def test_ids_states_and_removal() -> None:
    tr = Tracker(TrackerConfig())
    out = step(tr, 0, [box(100, 100), box(300, 200)])
    assert out.ids.tolist() == [1, 2]  # first frame: confirmed at once
    assert all(t.state == TrackState.CONFIRMED for t in out)
    for k in range(1, 10):
        out = step(tr, k, [box(100 + 5 * k, 100), box(300 - 5 * k, 200)])
        assert out.ids.tolist() == [1, 2]
    # A new object is tentative (not published) until its second hit.
    out = step(tr, 10, [box(150, 100), box(250, 200), box(500, 300)])
    assert out.ids.tolist() == [1, 2]
    assert tr.all_tracks().states.tolist() == [1, 1, 0]
    out = step(tr, 11, [box(155, 100), box(245, 200), box(505, 300)])
    assert out.ids.tolist() == [1, 2, 3]
    # Object 1 disappears: lost (published for max_lost_publish_s), then removed.
    out = step(tr, 12, [box(240, 200), box(510, 300)])
    assert dict(zip(out.ids.tolist(), out.states.tolist(), strict=True)) == {
        1: TrackState.LOST,
        2: TrackState.CONFIRMED,
        3: TrackState.CONFIRMED,
    }
    out = step(tr, 14, [box(230, 200), box(520, 300)])
    assert out.ids.tolist() == [2, 3]  # still alive, but no longer published
    assert 1 in tr.all_tracks().ids
    step(tr, 12 + 21, [box(300, 200), box(600, 300)])  # 2.1 s later: gone
    assert 1 not in tr.all_tracks().ids
    # Ids are never reused, not even after a reset.
    seen = tr.all_tracks().ids.max()
    tr.reset()
    out = step(tr, 40, [box(100, 100)])
    assert out.ids[0] > seen


def test_false_positive_never_published_and_tentative_removed() -> None:
    tr = Tracker(TrackerConfig())
    step(tr, 0, [box(100, 100)])
    out = step(tr, 1, [box(102, 100), box(400, 300)])  # a one-frame false positive
    assert out.ids.tolist() == [1]
    for k in (2, 3):
        step(tr, k, [box(100 + 2 * k, 100)])
    assert tr.all_tracks().ids.tolist() == [1]  # tentative removed after its misses


def test_prediction_uses_real_elapsed_time() -> None:
    """200 px/s; a 0.5 s gap (frames dropped) is bridged: same id, box where it should be."""
    tr = Tracker(TrackerConfig())
    for k in range(10):
        step(tr, k, [box(100 + 20 * k, 150)])
    out = step(tr, 14, [box(100 + 20 * 14, 150)])
    assert out.ids.tolist() == [1] and out.states.tolist() == [TrackState.CONFIRMED]
    np.testing.assert_allclose(out.boxes_xyxy[0], box(380, 150), atol=3.0)
    # Irregular stamps (jitter of 30 ms) do not matter either.
    for k in range(15, 30):
        stamp = k * DT_NS + (30_000_000 if k % 2 else -30_000_000)
        out = step(tr, k, [box(100 + 20 * k + (6 if k % 2 else -6), 150)], stamp_ns=stamp)
    assert out.ids.tolist() == [1]
    # Predicted velocity in pixels per second, from the box filter's state.
    assert tr._t.box_mean[0, 4] == pytest.approx(200.0, rel=0.1)


def test_stamps_must_not_go_backwards_and_arrays_must_agree() -> None:
    tr = Tracker(TrackerConfig())
    step(tr, 5, [box(100, 100)])
    with pytest.raises(ValueError, match="older"):
        step(tr, 4, [box(100, 100)])
    step(tr, 5, [box(100, 100)])  # the same stamp again is fine (dt = 0)
    with pytest.raises(ValueError, match="scores"):
        tr.update(6 * DT_NS, np.zeros((2, 4)), np.ones(1), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        tr.update(6 * DT_NS, np.full((1, 4), np.nan), np.ones(1), np.zeros(1))
    with pytest.raises(ValueError, match="positions"):
        tr.update(6 * DT_NS, np.zeros((1, 4)), np.ones(1), np.zeros(1), np.zeros((2, 3)))
    # Empty frames advance time.
    out = tr.update(6 * DT_NS, np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert out.states.tolist() == [TrackState.LOST]
    tr.update(9 * DT_NS, np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert tr.all_tracks().states.tolist() == [TrackState.LOST]


def test_low_score_detections_keep_an_occluded_track() -> None:
    """ByteTrack's point: low-score boxes (an object partly occluded) continue the track, which
    stays confirmed and published; with the low stage off (low_score = high_score) the track
    is lost after one frame and drops out of the output."""
    for low_stage in (True, False):
        cfg = TrackerConfig()
        if not low_stage:
            cfg.association.low_score = cfg.association.high_score
        tr = Tracker(cfg)
        for k in range(5):
            step(tr, k, [box(100 + 5 * k, 100)])
        published = []
        for k in range(5, 15):
            out = step(tr, k, [box(100 + 5 * k, 100)], scores=[0.3])
            published.append(out.ids.tolist())
        if low_stage:
            assert published == [[1]] * 10
            assert tr.all_tracks().states.tolist() == [TrackState.CONFIRMED]
        else:
            assert published[0] == [1] and published[-1] == []
            assert tr.all_tracks().states.tolist() == [TrackState.LOST]
        out = step(tr, 15, [box(175, 100)])  # seen clearly again: the same id either way
        assert out.ids.tolist() == [1]


def test_class_vote_and_size_smoothing() -> None:
    tr = Tracker(TrackerConfig())
    for k in range(6):
        cls = 3 if k == 3 else 1
        out = tr.update(
            k * DT_NS,
            box(100, 100)[None],
            np.array([0.9]),
            np.array([cls]),
            sizes_m=np.array([[1.8, 1.5]]),
        )
        assert out.class_ids.tolist() == [1]
    np.testing.assert_allclose(out.sizes_m[0], [1.8, 1.5])


def test_3d_velocity_and_output_message() -> None:
    """A car at 30 m closing at 5 m/s and drifting left at 1 m/s."""
    tr = Tracker(TrackerConfig())
    rng = np.random.default_rng(0)
    cov = np.diag([1.0, 0.05, 0.05])
    for k in range(20):
        p = np.array([30.0 - 0.5 * k, 0.1 * k, 0.8])
        z = p + rng.normal(0, [1.0, 0.2, 0.2])
        out = tr.update(
            k * DT_NS,
            box(320 - 2 * k, 190, 40 + k, 30 + k)[None],
            np.array([0.9]),
            np.array([0]),
            z[None],
            cov[None],
        )
    np.testing.assert_allclose(out.velocities_mps[0][:2], [-5.0, 1.0], atol=1.0)
    np.testing.assert_allclose(out.positions_m[0], p, atol=1.5)
    # Second object without any depth: sent with 'unknown' covariance.
    out = tr.update(
        20 * DT_NS,
        np.stack([box(282, 190, 60, 50), box(500, 300)]),
        np.array([0.9, 0.9]),
        np.array([0, 1]),
        np.vstack([p + np.array([-0.5, 0.1, 0.0]), [np.nan] * 3]),
        np.stack([cov, cov]),
    )
    out = tr.update(
        21 * DT_NS,
        np.stack([box(280, 190, 61, 51), box(502, 300)]),
        np.array([0.9, 0.9]),
        np.array([0, 1]),
        np.vstack([p + np.array([-1.0, 0.2, 0.0]), [np.nan] * 3]),
        np.stack([cov, cov]),
    )
    fields = tracks_to_msg_fields(out)
    msg = TrackedObjects(
        stamp_ns=21 * DT_NS, camera="front", class_names=["car", "pedestrian"], **fields
    )
    msg.check()
    assert msg.ids.dtype == np.int64 and msg.covariance.dtype == np.float32
    assert msg.state_names == list(TRACK_STATES)
    assert msg.covariance[1, 0, 0] == pytest.approx(UNKNOWN_VARIANCE)
    assert np.all(msg.position_m[1] == 0)
    assert np.all(np.isfinite(msg.covariance))
    assert msg.age_s[0] == pytest.approx(2.1)
    np.testing.assert_allclose(msg.covariance[0], out.covariances[0], rtol=1e-5)


def test_3d_separates_overlapping_objects_at_different_depths() -> None:
    """A near pedestrian steps into the image position of a far one, which is missed this
    frame: its box overlaps the far track more than its own, but it is 8 m nearer. IoU alone
    swaps the identities; the 3D term does not."""
    cov = np.diag([0.5, 0.05, 0.05])
    near, far = np.array([8.0, 0.0, 0.9]), np.array([16.0, -0.3, 0.9])
    b_near, b_far = box(320, 190, 50, 100), box(340, 185, 46, 92)
    moved = box(336, 186, 48, 95)
    for weight, expect in ((0.3, 1), (0.0, 2)):
        cfg = TrackerConfig()
        cfg.association.weight_3d = weight
        tr = Tracker(cfg)
        for k in range(5):
            tr.update(
                k * DT_NS,
                np.stack([b_near, b_far]),
                np.array([0.9, 0.9]),
                np.zeros(2),
                np.stack([near, far]),
                np.stack([cov, cov]),
            )
        out = tr.update(5 * DT_NS, moved[None], np.array([0.9]), np.zeros(1), near[None], cov[None])
        assert out.ids[out.matched].tolist() == [expect]


def test_yaml_defaults_equal_dataclass_defaults_and_errors(tmp_path: Path) -> None:
    assert load_tracker_config() == TrackerConfig()
    doc = yaml.safe_load(default_config_path().read_text())
    assert set(doc) == {"lifting", "association", "lifecycle", "box_filter", "motion", "output"}
    for section in fields(TrackerConfig):  # every setting is documented in the file
        keys = {f.name for f in fields(getattr(TrackerConfig(), section.name))}
        assert set(doc[section.name]) == keys, section.name
    bad = tmp_path / "bad.yaml"
    bad.write_text("association:\n  high_scor: 0.5\n")
    with pytest.raises(UserError, match="high_scor"):
        load_tracker_config(bad)
    bad.write_text("association:\n  high_score: 0.05\n  low_score: 0.1\n")
    with pytest.raises(UserError, match="low_score"):
        load_tracker_config(bad)
    bad.write_text("lifecycle:\n  min_hits: two\n")
    with pytest.raises(UserError, match="integer"):
        load_tracker_config(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_tracker_config(tmp_path / "missing.yaml")
    partial = tmp_path / "partial.yaml"
    partial.write_text("output:\n  publish_tentative: true\n")
    cfg = load_tracker_config(partial)
    assert cfg.output.publish_tentative and cfg.association == TrackerConfig().association


def test_lost_track_refound_in_3d_when_its_box_drifted() -> None:
    """Step 2b: after a 1 s occlusion the detection no longer overlaps the lost track's image
    prediction, but its 3D position is where the track's 3D motion says: same id. Without
    step 2b (lost_3d_chi2 = 0) it becomes a new track."""
    cov = np.diag([0.3, 0.02, 0.02])
    for chi2, expect_same in ((7.81, True), (0.0, False)):
        cfg = TrackerConfig()
        cfg.association.lost_3d_chi2 = chi2
        tr = Tracker(cfg)
        for k in range(10):  # the box does not move in the image, the object moves left
            p = np.array([15.0, 0.15 * k, 0.9])
            tr.update(
                k * DT_NS, box(320, 190)[None], np.array([0.9]), np.zeros(1), p[None], cov[None]
            )
        for k in range(10, 20):  # occluded
            tr.update(k * DT_NS, np.zeros((0, 4)), np.zeros(0), np.zeros(0))
        p = np.array([15.0, 0.15 * 20, 0.9])
        out = tr.update(
            20 * DT_NS, box(240, 190)[None], np.array([0.9]), np.zeros(1), p[None], cov[None]
        )
        assert (out.ids[out.matched].tolist() == [1]) == expect_same


def test_lost_tracks_are_published_only_while_the_camera_could_see_them() -> None:
    """A missed detection of a visible object is bridged (the lost track is published); an
    object that left the image, or went behind a nearer tracked object, is not shown where
    its prediction says: it stays alive (lost) unpublished."""
    size = (640, 384)
    # Leaving the image to the right at 15 px per frame.
    tr = Tracker(TrackerConfig())
    for k in range(5):
        tr.update(
            k * DT_NS, box(560 + 15 * k, 200)[None], np.array([0.9]), np.array([0]), image_size=size
        )
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    assert len(tr.update(5 * DT_NS, *empty, image_size=size)) == 0  # 3/8 of the box outside
    assert tr.all_tracks().states.tolist() == [TrackState.LOST]
    # The same without the image size (unknown): published as lost.
    tr = Tracker(TrackerConfig())
    for k in range(5):
        step(tr, k, [box(560 + 15 * k, 200)])
    assert step(tr, 5, []).states.tolist() == [TrackState.LOST]
    # A missed detection in the middle of the image is bridged.
    tr = Tracker(TrackerConfig())
    for k in range(5):
        step(tr, k, [box(200 + 5 * k, 200)])
    assert tr.update(5 * DT_NS, *empty, image_size=size).states.tolist() == [TrackState.LOST]

    # A far object (bottom edge higher) passed by a nearer one that comes to cover it.
    tr = Tracker(TrackerConfig())
    far = box(300, 180, 40, 40)  # bottom at 200
    for k in range(5):
        near = box(200 + 20 * k, 200, 60, 60)  # bottom at 230: nearer
        tr.update(
            k * DT_NS,
            np.array([far, near]),
            np.array([0.9, 0.9]),
            np.array([0, 0]),
            image_size=size,
        )
    near = box(300, 200, 60, 60)  # covers the far box entirely; the far one is not detected
    out = tr.update(5 * DT_NS, near[None], np.array([0.9]), np.array([0]), image_size=size)
    assert out.ids.tolist() == [2]
    assert tr.all_tracks().states.tolist() == [TrackState.LOST, TrackState.CONFIRMED]


def test_update_reports_the_time_of_its_phases() -> None:
    tracker = Tracker(TrackerConfig())
    boxes = np.array([[10, 10, 50, 60], [100, 100, 140, 180]], np.float64)
    for i in range(3):
        tracker.update(i * 100_000_000, boxes + i, np.array([0.9, 0.8]), np.array([0, 1]))
    phases = tracker.last_phase_ms
    assert set(phases) == {"predict", "associate", "correct", "manage"}
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) > 0
