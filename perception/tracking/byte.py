"""ByteTrack-style multi-object tracker with a 3D constant-velocity filter per track.

ByteTrack (Zhang et al., ECCV 2022, https://arxiv.org/abs/2110.06864) keeps every detection
box, not just the confident ones: high-score detections are associated first, then the
low-score ones, which are often the same objects partly occluded, keep the remaining tracks
alive instead of being discarded as background. :meth:`Tracker.update` follows the paper's
steps; what is added here:

- prediction by the real time between frames (stamps in ns), so dropped frames and gaps are
  predicted, not counted as one step;
- a second Kalman filter on the object's position in the vehicle frame, giving velocity with a
  covariance, and a 3D Mahalanobis term in the first association that separates objects which
  overlap in the image at different depths; position measurements far outside the track's
  uncertainty (an occluder's depth read through the box) are rejected as outliers;
- explicit states (tentative, confirmed, lost, removed) with thresholds in seconds and hits,
  configured from a commented YAML (``perception/configs/tracker.yaml``);
- the class by a score-weighted vote over the track's history, so one misclassified frame does
  not flip it; ids that only ever increase and are never reused.

The tracks live in one table of arrays (a row per track), so every step is a handful of array
operations whatever the number of objects: 100 objects take about a millisecond.
Velocities are relative to the ego vehicle: the vehicle frame moves with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np

from perception.msgs import TRACK_STATES
from perception.tracking.config import TrackerConfig
from perception.tracking.kalman import BoxFilter, PositionFilter, xywh_to_xyxy
from perception.tracking.matching import (
    fused_cost_pairs,
    iou_matrix_xyxy,
    linear_assignment,
    mahalanobis_sq_pairs,
)


class TrackState(IntEnum):
    """Track lifecycle. The first three codes are those of ``msgs.TRACK_STATES``."""

    TENTATIVE = 0  # started, not yet seen in `min_hits` frames; not published by default
    CONFIRMED = 1  # matched to a detection in this frame
    LOST = 2  # confirmed before, not matched this frame: predicted only
    REMOVED = 3  # gone for good; its id is never used again


assert tuple(s.name.lower() for s in TrackState)[:3] == TRACK_STATES


@dataclass(frozen=True, slots=True)
class Track:
    """One published track (a snapshot: later updates do not change it)."""

    track_id: int
    state: TrackState
    box_xyxy: np.ndarray  # (4,) filtered box, pixels of the source image
    score: float  # latest associated detection score
    class_id: int  # score-weighted vote over the track's detections
    position_m: np.ndarray  # (3,) vehicle frame; NaN if never measured
    velocity_mps: np.ndarray  # (3,) relative to the ego vehicle; NaN if never measured
    covariance: np.ndarray  # (6, 6) of [x, y, z, vx, vy, vz]; NaN if never measured
    size_m: np.ndarray  # (2,) metric width, height; NaN if unknown
    age_s: float  # since the track began
    time_since_seen_s: float  # since its last detection (0 when matched this frame)

    @property
    def has_position(self) -> bool:
        return bool(np.all(np.isfinite(self.position_m)))

    @property
    def matched(self) -> bool:
        return self.state == TrackState.CONFIRMED or (
            self.state == TrackState.TENTATIVE and self.time_since_seen_s == 0.0
        )


@dataclass(frozen=True)
class TrackSet:
    """The tracks of one frame as arrays (row i is one track); iterate for :class:`Track`s."""

    stamp_ns: int
    ids: np.ndarray  # (K,) int64
    states: np.ndarray  # (K,) uint8, TrackState codes (= indices into msgs.TRACK_STATES)
    boxes_xyxy: np.ndarray  # (K, 4)
    scores: np.ndarray  # (K,)
    class_ids: np.ndarray  # (K,) int64
    positions_m: np.ndarray  # (K, 3), NaN rows: never measured
    velocities_mps: np.ndarray  # (K, 3)
    covariances: np.ndarray  # (K, 6, 6)
    sizes_m: np.ndarray  # (K, 2)
    ages_s: np.ndarray  # (K,)
    time_since_seen_s: np.ndarray  # (K,)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Track]:
        for i in range(len(self.ids)):
            yield self[i]

    def __getitem__(self, i: int) -> Track:
        return Track(
            track_id=int(self.ids[i]),
            state=TrackState(int(self.states[i])),
            box_xyxy=self.boxes_xyxy[i],
            score=float(self.scores[i]),
            class_id=int(self.class_ids[i]),
            position_m=self.positions_m[i],
            velocity_mps=self.velocities_mps[i],
            covariance=self.covariances[i],
            size_m=self.sizes_m[i],
            age_s=float(self.ages_s[i]),
            time_since_seen_s=float(self.time_since_seen_s[i]),
        )

    @property
    def matched(self) -> np.ndarray:
        """(K,) bool: associated with a detection in this frame."""
        return self.time_since_seen_s == 0.0


@dataclass
class _Table:
    """Every live track as a row of arrays. Rows are kept in creation (= id) order."""

    ids: np.ndarray  # (M,) int64
    state: np.ndarray  # (M,) int8 TrackState
    box_mean: np.ndarray  # (M, 8) cx, cy, w, h and their rates (px, px/s)
    box_cov: np.ndarray  # (M, 4, 3) per coordinate var(p), cov(p, v), var(v)
    has_pos: np.ndarray  # (M,) bool: the 3D filter is initialised
    pos_mean: np.ndarray  # (M, 6) x, y, z, vx, vy, vz (vehicle frame)
    pos_cov: np.ndarray  # (M, 6, 6)
    pos_outliers: np.ndarray  # (M,) consecutive rejected position measurements
    score: np.ndarray  # (M,) latest detection score
    votes: np.ndarray  # (M, C) score-weighted class votes
    size_m: np.ndarray  # (M, 2) smoothed metric width, height (NaN: unknown)
    hits: np.ndarray  # (M,) associated frames
    misses: np.ndarray  # (M,) consecutive misses while tentative
    start_ns: np.ndarray  # (M,) int64
    last_seen_ns: np.ndarray  # (M,) int64

    @classmethod
    def empty(cls) -> _Table:
        return cls(
            ids=np.zeros(0, np.int64),
            state=np.zeros(0, np.int8),
            box_mean=np.zeros((0, 8)),
            box_cov=np.zeros((0, 4, 3)),
            has_pos=np.zeros(0, bool),
            pos_mean=np.zeros((0, 6)),
            pos_cov=np.zeros((0, 6, 6)),
            pos_outliers=np.zeros(0, np.int64),
            score=np.zeros(0),
            votes=np.zeros((0, 1)),
            size_m=np.zeros((0, 2)),
            hits=np.zeros(0, np.int64),
            misses=np.zeros(0, np.int64),
            start_ns=np.zeros(0, np.int64),
            last_seen_ns=np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, mask: np.ndarray) -> None:
        if mask.all():
            return
        for name in _TABLE_FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def extend(self, other: _Table) -> None:
        c = max(self.votes.shape[1], other.votes.shape[1])
        self.ensure_classes(c)
        other.ensure_classes(c)
        for name in _TABLE_FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def ensure_classes(self, n: int) -> None:
        if self.votes.shape[1] < n:
            votes = np.zeros((len(self.votes), n))
            votes[:, : self.votes.shape[1]] = self.votes
            self.votes = votes


_TABLE_FIELDS = tuple(f.name for f in fields(_Table))


@dataclass
class _Detections:
    """The detections of one frame above the low score, validated."""

    boxes_xyxy: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    positions: np.ndarray  # (N, 3), NaN rows: unknown
    position_covs: np.ndarray  # (N, 3, 3)
    has_position: np.ndarray  # (N,) bool
    sizes_m: np.ndarray  # (N, 2), NaN rows: unknown


_EMPTY_MATCH = np.zeros((0, 2), np.intp)
# Plain ints for the hot path (IntEnum attribute lookups cost a microsecond each).
_TENTATIVE, _CONFIRMED, _LOST, _REMOVED = (int(s) for s in TrackState)


class Tracker:
    """ByteTrack association + box and 3D Kalman filters. One instance per camera stream."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.cfg = config or TrackerConfig()
        self.cfg.validate()
        self.box_filter = BoxFilter(self.cfg.box_filter)
        self.pos_filter = PositionFilter(self.cfg.motion)
        self._t = _Table.empty()
        self._next_id = 1
        self._last_stamp_ns: int | None = None
        self._boxes = np.zeros((0, 4))  # this frame's predicted boxes, xyxy
        self.frames = 0
        self.removed = 0  # tracks removed so far
        self.rejected_positions = 0  # position measurements rejected as outliers so far

    @property
    def num_tracks(self) -> int:
        """Live tracks of every state but removed."""
        return len(self._t)

    # -- the algorithm ---------------------------------------------------------------------
    def update(
        self,
        stamp_ns: int,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        positions_vehicle: np.ndarray | None = None,
        position_covs: np.ndarray | None = None,
        sizes_m: np.ndarray | None = None,
    ) -> TrackSet:
        """Advance to `stamp_ns` (capture time, ns) and associate this frame's detections.

        `boxes_xyxy` (N, 4) source-image pixels, `scores` (N,), `class_ids` (N,);
        `positions_vehicle` (N, 3) and `position_covs` (N, 3, 3) from 3D lifting (NaN rows: no
        position); `sizes_m` (N, 2) metric width and height. Returns the tracks to publish (see
        ``output`` in the config). Raises ValueError on inconsistent arrays or a stamp older
        than the previous one. An empty frame (N = 0) still advances and ages the tracks.
        """
        a, life = self.cfg.association, self.cfg.lifecycle
        dets = self._prepare(
            boxes_xyxy, scores, class_ids, positions_vehicle, position_covs, sizes_m
        )
        first_frame = self._last_stamp_ns is None
        dt = self._advance_clock(stamp_ns)
        T = self._t

        # Step 1: predict every track to this frame's capture time; split detections by score.
        self._predict(dt)
        self._boxes = xywh_to_xyxy(T.box_mean[:, :4])  # predicted boxes, used by each step
        high = np.flatnonzero(dets.scores >= a.high_score)
        low = np.flatnonzero(dets.scores < a.high_score)
        pool = np.flatnonzero((T.state == _CONFIRMED) | (T.state == _LOST))
        tentative = np.flatnonzero(T.state == _TENTATIVE)

        # Step 2: high-score detections against all confirmed and lost tracks (IoU + 3D).
        # (Matched tracks are corrected once, after all steps: no later step looks at them.)
        m, left_pool, left_high = self._associate(pool, dets, high, a.first_max_cost, True)
        rows, det = [pool[m[:, 0]]], [high[m[:, 1]]]

        # Step 2b: lost tracks left over against high-score detections left over, by 3D
        # distance alone: during a long occlusion the image box drifts (visible boxes shrink
        # as objects disappear), the 3D prediction does not.
        lost = pool[left_pool]
        lost = lost[T.state[lost] == _LOST]
        if a.lost_3d_chi2 > 0 and len(lost) and len(left_high):
            m, _, still_left = self._associate_3d(lost, dets, high[left_high], a.lost_3d_chi2)
            rows.append(lost[m[:, 0]])
            det.append(high[left_high][m[:, 1]])
            left_high = left_high[still_left]

        # Step 3: low-score detections against the tracks that were being tracked (not lost)
        # and found no high-score match: occluded objects score low but are still there.
        left = pool[left_pool]
        tracked = left[T.state[left] == _CONFIRMED]
        m, unmatched, _ = self._associate(tracked, dets, low, 1.0 - a.second_min_iou, False)
        rows.append(tracked[m[:, 0]])
        det.append(low[m[:, 1]])
        T.state[tracked[unmatched]] = _LOST

        # Step 3b: tentative tracks get the high-score detections nothing else took; a miss
        # beyond `tentative_max_misses` removes them (most are false positives).
        high_left = high[left_high]
        m, unmatched, left_high = self._associate(
            tentative, dets, high_left, a.tentative_max_cost, True
        )
        rows.append(tentative[m[:, 0]])
        det.append(high_left[m[:, 1]])
        missed = tentative[unmatched]
        T.misses[missed] += 1
        T.state[missed[T.misses[missed] > life.tentative_max_misses]] = _REMOVED
        self._apply(np.concatenate(rows), dets, np.concatenate(det), stamp_ns)

        # Step 4: unmatched confident detections start new tracks.
        new = high_left[left_high]
        new = new[dets.scores[new] >= a.new_track_score]
        self._start_tracks(dets, new, stamp_ns, first_frame and life.confirm_on_first_frame)

        # Step 5: remove tracks lost for too long, and lost duplicates of tracked objects.
        T = self._t
        lost_for = (stamp_ns - T.last_seen_ns) * 1e-9
        T.state[(T.state == _LOST) & (lost_for > life.max_lost_s)] = _REMOVED
        self._remove_duplicates()
        alive = T.state != _REMOVED
        self.removed += int(np.count_nonzero(~alive))
        T.keep(alive)
        self.frames += 1
        return self._publish(stamp_ns)

    def reset(self) -> None:
        """Drop every track and the clock (ids keep increasing: they are never reused)."""
        self.removed += len(self._t)
        self._t = _Table.empty()
        self._last_stamp_ns = None

    def all_tracks(self, stamp_ns: int | None = None) -> TrackSet:
        """Every live track, whatever the output settings (tentative and long-lost too)."""
        stamp = self._last_stamp_ns if stamp_ns is None else stamp_ns
        return self._snapshot(np.arange(len(self._t)), stamp or 0)

    # -- steps -----------------------------------------------------------------------------
    def _advance_clock(self, stamp_ns: int) -> float:
        last = self._last_stamp_ns
        if last is not None and stamp_ns < last:
            raise ValueError(f"stamp_ns {stamp_ns} is older than the previous frame's {last}")
        self._last_stamp_ns = int(stamp_ns)
        return 0.0 if last is None else (stamp_ns - last) * 1e-9

    def _predict(self, dt: float) -> None:
        T = self._t
        if len(T) == 0 or dt <= 0.0:
            return
        # A lost track keeps its image motion but not its size change (as ByteTrack does):
        # the visible box of an object going out of sight shrinks, and extrapolating that
        # collapses the box before the object reappears.
        T.box_mean[T.state == _LOST, 6:8] = 0.0
        T.box_mean, T.box_cov = self.box_filter.predict(T.box_mean, T.box_cov, dt)
        # Rows without a 3D state are predicted too (zeros, harmless): no gather/scatter.
        T.pos_mean, T.pos_cov = self.pos_filter.predict(T.pos_mean, T.pos_cov, dt)

    def _associate(
        self,
        rows: np.ndarray,
        dets: _Detections,
        det_idx: np.ndarray,
        max_cost: float,
        use_3d: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Match table rows to detections; returned indices are positions in `rows` and
        `det_idx`: (matches (K, 2), unmatched rows, unmatched detections)."""
        if len(rows) == 0 or len(det_idx) == 0:
            return _EMPTY_MATCH, np.arange(len(rows)), np.arange(len(det_idx))
        a, T = self.cfg.association, self._t
        iou = iou_matrix_xyxy(self._boxes[rows], dets.boxes_xyxy[det_idx])
        if a.fuse_score:
            iou = iou * dets.scores[det_idx][None, :]
        cost = 1.0 - iou
        if use_3d and a.weight_3d > 0:
            # The 3D term only where boxes overlap (the rest cannot match anyway) and both
            # sides have a position: a handful of pairs per track, not the whole matrix.
            r, c = np.nonzero(iou > 0)
            both = T.has_pos[rows[r]] & dets.has_position[det_idx[c]]
            r, c = r[both], c[both]
            if len(r):
                d2 = mahalanobis_sq_pairs(
                    T.pos_mean[rows, :3],
                    T.pos_cov[rows, :3, :3],
                    dets.positions[det_idx],
                    dets.position_covs[det_idx],
                    r,
                    c,
                )
                gate = a.gate_3d if a.gate_3d > 0 else np.inf
                cost[r, c] = fused_cost_pairs(cost[r, c], d2, a.weight_3d, a.chi2_3d, gate)
        return linear_assignment(cost, max_cost)

    def _associate_3d(
        self, rows: np.ndarray, dets: _Detections, det_idx: np.ndarray, chi2: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Match table rows to detections of the track's (voted) class by squared Mahalanobis
        distance of the positions (cost d^2 / chi2, accepted up to 1); rows or detections
        without 3D never match."""
        T = self._t
        cost = np.full((len(rows), len(det_idx)), 2.0)
        same_class = np.argmax(T.votes[rows], axis=1)[:, None] == dets.class_ids[det_idx][None, :]
        ok = T.has_pos[rows][:, None] & dets.has_position[det_idx][None, :] & same_class
        r, c = np.nonzero(ok)
        if len(r):
            cost[r, c] = (
                mahalanobis_sq_pairs(
                    T.pos_mean[rows, :3],
                    T.pos_cov[rows, :3, :3],
                    dets.positions[det_idx],
                    dets.position_covs[det_idx],
                    r,
                    c,
                )
                / chi2
            )
        return linear_assignment(cost, 1.0)

    def _apply(self, rows: np.ndarray, dets: _Detections, det: np.ndarray, stamp_ns: int) -> None:
        """Correct matched tracks (`rows`) with their detections (`det`), then bookkeeping."""
        if len(rows) == 0:
            return
        T, life, motion = self._t, self.cfg.lifecycle, self.cfg.motion
        T.box_mean[rows], T.box_cov[rows] = self.box_filter.update(
            T.box_mean[rows], T.box_cov[rows], dets.boxes_xyxy[det]
        )
        self._apply_positions(rows, dets, det)
        T.score[rows] = dets.scores[det]
        cls = dets.class_ids[det]
        T.ensure_classes(int(cls.max()) + 1)
        T.votes[rows, cls] += dets.scores[det]
        size = dets.sizes_m[det]
        ok = np.all(np.isfinite(size), axis=1)
        old = T.size_m[rows]
        first = np.isnan(old[:, 0])
        blended = np.where(
            first[:, None], size, (1 - motion.size_smoothing) * old + motion.size_smoothing * size
        )
        T.size_m[rows] = np.where(ok[:, None], blended, old)
        T.hits[rows] += 1
        T.misses[rows] = 0
        T.last_seen_ns[rows] = stamp_ns
        st = T.state[rows]
        confirm = (st == _LOST) | ((st == _TENTATIVE) & (T.hits[rows] >= life.min_hits))
        T.state[rows[confirm]] = _CONFIRMED

    def _apply_positions(self, rows: np.ndarray, dets: _Detections, det: np.ndarray) -> None:
        """3D filter: update tracks that have a state, start it for those that do not, and
        reject measurements far outside the predicted uncertainty (e.g. an occluder's depth);
        after `max_position_outliers` rejections in a row the state restarts from the data."""
        T, motion = self._t, self.cfg.motion
        has_det = dets.has_position[det]
        upd = has_det & T.has_pos[rows]
        if upd.any():
            r, d = rows[upd], det[upd]
            z, R = dets.positions[d], dets.position_covs[d]
            mean, cov, d2 = self.pos_filter.update(T.pos_mean[r], T.pos_cov[r], z, R)
            inlier = d2 <= motion.outlier_chi2
            restart = ~inlier & (T.pos_outliers[r] + 1 > motion.max_position_outliers)
            self.rejected_positions += int(np.count_nonzero(~inlier & ~restart))
            T.pos_outliers[r] = np.where(inlier, 0, T.pos_outliers[r] + 1)
            T.pos_mean[r] = np.where(inlier[:, None], mean, T.pos_mean[r])
            T.pos_cov[r] = np.where(inlier[:, None, None], cov, T.pos_cov[r])
            if restart.any():
                rr = r[restart]
                T.pos_mean[rr], T.pos_cov[rr] = self.pos_filter.initiate(z[restart], R[restart])
                T.pos_outliers[rr] = 0
        init = has_det & ~T.has_pos[rows]
        if init.any():
            r, d = rows[init], det[init]
            T.pos_mean[r], T.pos_cov[r] = self.pos_filter.initiate(
                dets.positions[d], dets.position_covs[d]
            )
            T.has_pos[r] = True

    def _start_tracks(
        self, dets: _Detections, det: np.ndarray, stamp_ns: int, confirmed: bool
    ) -> None:
        n = len(det)
        if n == 0:
            return
        box_mean, box_cov = self.box_filter.initiate(dets.boxes_xyxy[det])
        has = dets.has_position[det]
        pos_mean, pos_cov = np.zeros((n, 6)), np.tile(np.eye(6), (n, 1, 1))
        if has.any():
            pos_mean[has], pos_cov[has] = self.pos_filter.initiate(
                dets.positions[det[has]], dets.position_covs[det[has]]
            )
        cls = dets.class_ids[det]
        votes = np.zeros((n, max(int(cls.max()) + 1, self._t.votes.shape[1])))
        votes[np.arange(n), cls] = dets.scores[det]
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        state = _CONFIRMED if confirmed else _TENTATIVE
        self._t.extend(
            _Table(
                ids=ids,
                state=np.full(n, state, np.int8),
                box_mean=box_mean,
                box_cov=box_cov,
                has_pos=has,
                pos_mean=pos_mean,
                pos_cov=pos_cov,
                pos_outliers=np.zeros(n, np.int64),
                score=dets.scores[det].copy(),
                votes=votes,
                size_m=dets.sizes_m[det].copy(),
                hits=np.ones(n, np.int64),
                misses=np.zeros(n, np.int64),
                start_ns=np.full(n, stamp_ns, np.int64),
                last_seen_ns=np.full(n, stamp_ns, np.int64),
            )
        )

    def _remove_duplicates(self) -> None:
        """A lost track overlapping a tracked one almost entirely is the same object that got
        a new track: keep the tracked one (ByteTrack's remove_duplicate_stracks)."""
        T = self._t
        tracked = np.flatnonzero(T.state == _CONFIRMED)
        lost = np.flatnonzero(T.state == _LOST)
        if len(tracked) == 0 or len(lost) == 0:
            return
        iou = iou_matrix_xyxy(
            xywh_to_xyxy(T.box_mean[tracked, :4]), xywh_to_xyxy(T.box_mean[lost, :4])
        )
        dup = lost[(iou > self.cfg.lifecycle.duplicate_iou).any(axis=0)]
        T.state[dup] = _REMOVED

    # -- output ----------------------------------------------------------------------------
    def _publish(self, stamp_ns: int) -> TrackSet:
        out, T = self.cfg.output, self._t
        show = T.state == _CONFIRMED
        if out.publish_tentative:
            show |= T.state == _TENTATIVE
        if out.publish_lost:
            lost_for = (stamp_ns - T.last_seen_ns) * 1e-9
            show |= (T.state == _LOST) & (lost_for <= out.max_lost_publish_s)
        return self._snapshot(np.flatnonzero(show), stamp_ns)

    def _snapshot(self, rows: np.ndarray, stamp_ns: int) -> TrackSet:
        T = self._t
        has = T.has_pos[rows]
        pos = np.where(has[:, None], T.pos_mean[rows], np.nan)
        cov = np.where(has[:, None, None], T.pos_cov[rows], np.nan)
        return TrackSet(
            stamp_ns=stamp_ns,
            ids=T.ids[rows],
            states=T.state[rows].astype(np.uint8),
            boxes_xyxy=xywh_to_xyxy(T.box_mean[rows, :4]),
            scores=T.score[rows],
            class_ids=np.argmax(T.votes[rows], axis=1) if len(rows) else np.zeros(0, np.int64),
            positions_m=pos[:, :3],
            velocities_mps=pos[:, 3:],
            covariances=cov,
            sizes_m=T.size_m[rows],
            ages_s=(stamp_ns - T.start_ns[rows]) * 1e-9,
            time_since_seen_s=(stamp_ns - T.last_seen_ns[rows]) * 1e-9,
        )

    # -- input -----------------------------------------------------------------------------
    def _prepare(
        self,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        positions: np.ndarray | None,
        covs: np.ndarray | None,
        sizes: np.ndarray | None,
    ) -> _Detections:
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        n = len(boxes)
        sc = np.asarray(scores, np.float64).reshape(-1)
        cl = np.asarray(class_ids).reshape(-1).astype(np.int64)
        if len(sc) != n or len(cl) != n:
            raise ValueError(f"{n} boxes but {len(sc)} scores and {len(cl)} class ids")
        if not (np.isfinite(boxes).all() and np.isfinite(sc).all()):
            raise ValueError("boxes and scores must be finite")
        if n and cl.min() < 0:
            raise ValueError("class ids must be >= 0")
        pos = _rows(positions, n, (3,), "positions", np.nan)
        has = np.isfinite(pos).all(axis=1)
        if covs is None:
            var = self.cfg.motion.default_position_std_m**2
            cov = np.broadcast_to(np.eye(3) * var, (n, 3, 3)).copy()
        else:
            cov = _rows(covs, n, (3, 3), "position covariances", np.nan)
        if (has & ~np.isfinite(cov).all(axis=(1, 2))).any():
            raise ValueError("position covariances must be finite where positions are")
        sz = _rows(sizes, n, (2,), "sizes", np.nan)
        keep = sc >= self.cfg.association.low_score
        if keep.all():
            return _Detections(boxes, sc, cl, pos, cov, has, sz)
        return _Detections(
            boxes[keep], sc[keep], cl[keep], pos[keep], cov[keep], has[keep], sz[keep]
        )


def _rows(x: Any, n: int, shape: tuple[int, ...], what: str, fill: float) -> np.ndarray:
    """An (n, *shape) float array from `x`, or filled with `fill` when x is None."""
    if x is None:
        return np.full((n, *shape), fill)
    arr = np.asarray(x, np.float64).reshape(-1, *shape)
    if len(arr) != n:
        raise ValueError(f"{n} boxes but {len(arr)} {what}")
    return arr
