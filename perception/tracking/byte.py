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
  not flip it; ids that only ever increase and are never reused;
- lost tracks are published only while the camera could still see the object (not leaving
  the image, not behind a nearer tracked object), which bridges missed detections without
  showing objects that are gone.

The tracks live in one table of arrays (a row per track), and the candidate pairs of all the
association steps are computed once per frame, so an update is a few hundred array operations
whatever the number of objects (on the development VM about 0.9 ms for a demo frame's ~20
detections, 1.3 ms for 100 objects).
Velocities are relative to the ego vehicle: the vehicle frame moves with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np

from perception.msgs import TRACK_STATES
from perception.tracking.config import TrackerConfig
from perception.tracking.kalman import BoxFilter, PositionFilter, xywh_to_xyxy
from perception.tracking.matching import (
    box_areas,
    flatnonzero,
    fused_cost_pairs,
    intersection_xyxy,
    iou_matrix_xyxy,
    mahalanobis_sq_pairs,
    match_pairs,
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


# Columns of _Table.f (floats) and _Table.i (integers).
_F_BOX_MEAN, _F_BOX_COV, _F_POS_MEAN = slice(0, 8), slice(8, 20), slice(20, 26)
_F_SCORE, _F_SIZE, _NUM_F = 26, slice(27, 29), 29
_I_ID, _I_HITS, _I_MISSES, _I_OUTLIERS, _I_START, _I_LAST_SEEN, _NUM_I = range(7)


@dataclass
class _Table:
    """Every live track as a row. Rows are kept in creation (= id) order.

    The per-track numbers live in a few 2-D arrays, one row per track (the named fields
    below are views of their columns), so dropping and appending tracks is six array
    operations, not one per field.
    """

    f: np.ndarray  # (M, 29) float64: box_mean | box_cov | pos_mean | score | size_m
    i: np.ndarray  # (M, 6) int64: ids, hits, misses, pos_outliers, start_ns, last_seen_ns
    state: np.ndarray  # (M,) int8 TrackState
    has_pos: np.ndarray  # (M,) bool: the 3D filter is initialised
    pos_cov: np.ndarray  # (M, 6, 6)
    votes: np.ndarray  # (M, C) score-weighted class votes

    @classmethod
    def empty(cls) -> _Table:
        return cls.new(0, 1)

    @classmethod
    def new(cls, n: int, num_classes: int) -> _Table:
        """n rows, uninitialised but for zero votes."""
        return cls(
            f=np.empty((n, _NUM_F)),
            i=np.empty((n, _NUM_I), np.int64),
            state=np.empty(n, np.int8),
            has_pos=np.zeros(n, bool),
            pos_cov=np.empty((n, 6, 6)),
            votes=np.zeros((n, num_classes)),
        )

    # Views of the columns (writes through them change the table).
    @property
    def box_mean(self) -> np.ndarray:  # (M, 8) cx, cy, w, h and their rates (px, px/s)
        return self.f[:, _F_BOX_MEAN]

    @property
    def box_cov(self) -> np.ndarray:  # (M, 4, 3) per coordinate var(p), cov(p, v), var(v)
        return self.f[:, _F_BOX_COV].reshape(-1, 4, 3)  # a view: the 12 columns are adjacent

    @property
    def pos_mean(self) -> np.ndarray:  # (M, 6) x, y, z, vx, vy, vz (vehicle frame)
        return self.f[:, _F_POS_MEAN]

    @property
    def score(self) -> np.ndarray:  # (M,) latest detection score
        return self.f[:, _F_SCORE]

    @property
    def size_m(self) -> np.ndarray:  # (M, 2) smoothed metric width, height (NaN: unknown)
        return self.f[:, _F_SIZE]

    @property
    def ids(self) -> np.ndarray:  # (M,)
        return self.i[:, _I_ID]

    @property
    def hits(self) -> np.ndarray:  # (M,) associated frames
        return self.i[:, _I_HITS]

    @property
    def misses(self) -> np.ndarray:  # (M,) consecutive misses while tentative
        return self.i[:, _I_MISSES]

    @property
    def pos_outliers(self) -> np.ndarray:  # (M,) consecutive rejected position measurements
        return self.i[:, _I_OUTLIERS]

    @property
    def start_ns(self) -> np.ndarray:  # (M,)
        return self.i[:, _I_START]

    @property
    def last_seen_ns(self) -> np.ndarray:  # (M,)
        return self.i[:, _I_LAST_SEEN]

    def __len__(self) -> int:
        return len(self.state)

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


@dataclass
class _Pairs:
    """The (track row, detection) pairs of one frame that overlap in the image."""

    rows: np.ndarray  # (K,) table rows
    cols: np.ndarray  # (K,) detection indices
    cost_iou: np.ndarray  # (K,) 1 - IoU (IoU times the score with `fuse_score`)
    cost: np.ndarray  # (K,) with the 3D term fused in where both sides have a position


_NO_INDEX = np.zeros(0, np.intp)
_NO_PAIRS = _Pairs(_NO_INDEX, _NO_INDEX, np.zeros(0), np.zeros(0))
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
        self.frames = 0
        self.removed = 0  # tracks removed so far
        # Wall time of the last update's phases, ms: predict, associate (cost pairs and the
        # matching steps), correct (filter updates), manage (new, removed, output tracks).
        self.last_phase_ms: dict[str, float] = {}
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
        image_size: tuple[int, int] | None = None,
    ) -> TrackSet:
        """Advance to `stamp_ns` (capture time, ns) and associate this frame's detections.

        `boxes_xyxy` (N, 4) source-image pixels, `scores` (N,), `class_ids` (N,);
        `positions_vehicle` (N, 3) and `position_covs` (N, 3, 3) from 3D lifting (NaN rows: no
        position); `sizes_m` (N, 2) metric width and height; `image_size` (width, height) of
        the image the boxes are in (lost tracks leaving it are not published; None: not
        tested). Returns the tracks to publish (see ``output`` in the config). Raises
        ValueError on inconsistent arrays or a stamp older than the previous one. An empty
        frame (N = 0) still advances and ages the tracks.
        """
        a, life = self.cfg.association, self.cfg.lifecycle
        dets = self._prepare(
            boxes_xyxy, scores, class_ids, positions_vehicle, position_covs, sizes_m
        )
        first_frame = self._last_stamp_ns is None
        dt = self._advance_clock(stamp_ns)
        T = self._t
        t0 = time.perf_counter_ns()

        # Step 1: predict every track to this frame's capture time; split detections by score.
        # Steps 2, 3 and 3b only match pairs that overlap in the image, step 2b (lost track,
        # high detection) pairs of one class: those pairs and their costs are computed once,
        # and each step takes its share of them with a mask.
        self._predict(dt)
        t1 = time.perf_counter_ns()
        high = dets.scores >= a.high_score
        p, p3d = self._pairs(dets, high)
        state = T.state
        det_free = np.full(len(dets.scores), True)
        row_free = np.full(len(T), True)

        # Step 2: high-score detections against all confirmed and lost tracks (IoU + 3D).
        # (Matched tracks are corrected once, after all steps: no later step looks at them.)
        in_pool = (state == _CONFIRMED) | (state == _LOST)
        sel = in_pool[p.rows] & high[p.cols] & (p.cost <= a.first_max_cost)
        matches = [self._match(p, sel, p.cost, row_free, det_free)]

        # Step 2b: lost tracks left over against high-score detections left over, by 3D
        # distance alone: during a long occlusion the image box drifts (visible boxes shrink
        # as objects disappear), the 3D prediction does not.
        if len(p3d.rows):
            sel = row_free[p3d.rows] & det_free[p3d.cols] & (p3d.cost <= 1.0)
            matches.append(self._match(p3d, sel, p3d.cost, row_free, det_free))

        # Step 3: low-score detections against the tracks that were being tracked (not lost)
        # and found no high-score match: occluded objects score low but are still there.
        tracked = (state == _CONFIRMED) & row_free
        sel = tracked[p.rows] & ~high[p.cols] & (p.cost_iou <= 1.0 - a.second_min_iou)
        matches.append(self._match(p, sel, p.cost_iou, row_free, det_free))
        state[tracked & row_free] = _LOST

        # Step 3b: tentative tracks get the high-score detections nothing else took; a miss
        # beyond `tentative_max_misses` removes them (most are false positives).
        tentative = state == _TENTATIVE
        sel = tentative[p.rows] & high[p.cols] & det_free[p.cols]
        sel &= p.cost <= a.tentative_max_cost
        matches.append(self._match(p, sel, p.cost, row_free, det_free))
        missed = flatnonzero(tentative & row_free)
        misses = T.misses[missed] + 1
        T.misses[missed] = misses
        T.state[missed[misses > life.tentative_max_misses]] = _REMOVED
        t2 = time.perf_counter_ns()
        rows = np.concatenate([r for r, _ in matches])
        self._apply(rows, dets, np.concatenate([d for _, d in matches]), stamp_ns)
        t3 = time.perf_counter_ns()

        # Step 4: unmatched confident detections start new tracks.
        new = flatnonzero(high & det_free & (dets.scores >= a.new_track_score))
        self._start_tracks(dets, new, stamp_ns, first_frame and life.confirm_on_first_frame)

        # Step 5: remove tracks lost for too long and lost duplicates of tracked objects; note
        # the lost tracks a nearer tracked object now hides (not published).
        T = self._t
        boxes = xywh_to_xyxy(T.box_mean[:, :4])
        lost_for = (stamp_ns - T.last_seen_ns) * 1e-9
        T.state[(T.state == _LOST) & (lost_for > life.max_lost_s)] = _REMOVED
        covered = self._lost_vs_confirmed(boxes)
        alive = T.state != _REMOVED
        if not alive.all():
            self.removed += len(alive) - int(np.count_nonzero(alive))
            T.keep(alive)
            boxes, covered, lost_for = boxes[alive], covered[alive], lost_for[alive]
        self.frames += 1
        out = self._publish(stamp_ns, boxes, covered, lost_for, image_size)
        t4 = time.perf_counter_ns()
        self.last_phase_ms = {
            "predict": (t1 - t0) / 1e6,
            "associate": (t2 - t1) / 1e6,
            "correct": (t3 - t2) / 1e6,
            "manage": (t4 - t3) / 1e6,
        }
        return out

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
        T.f[:, _F_BOX_MEAN], T.f[:, _F_BOX_COV] = (
            x.reshape(len(T), -1) for x in self.box_filter.predict(T.box_mean, T.box_cov, dt)
        )
        # Rows without a 3D state are predicted too (zeros, harmless): no gather/scatter.
        T.f[:, _F_POS_MEAN], T.pos_cov = self.pos_filter.predict(T.pos_mean, T.pos_cov, dt)

    def _pairs(self, dets: _Detections, high: np.ndarray) -> tuple[_Pairs, _Pairs]:
        """This frame's candidate pairs, with their costs:

        - every (track, detection) pair that overlaps in the image (steps 2, 3, 3b);
        - every (lost track, high-score detection of the track's voted class) pair, both with
          a 3D position, whatever the image overlap (step 2b; cost: d^2 / lost_3d_chi2).

        The squared Mahalanobis distances of both lists are computed together: at ~100
        objects what costs is the number of numpy calls, not the number of pairs.
        """
        a, T = self.cfg.association, self._t
        n = len(dets.scores)
        if len(T) == 0 or n == 0:
            return _NO_PAIRS, _NO_PAIRS
        # Dense IoU and one flat nonzero: with ~100 x 100 boxes this is fewer numpy calls than
        # any sparse scheme.
        iou = iou_matrix_xyxy(xywh_to_xyxy(T.box_mean[:, :4]), dets.boxes_xyxy).reshape(-1)
        flat = flatnonzero(iou > 0.0)
        rows, cols = np.divmod(flat, n)
        iou = iou[flat]
        if a.fuse_score:
            iou = iou * dets.scores[cols]
        cost_iou = 1.0 - iou
        both = (
            flatnonzero(T.has_pos[rows] & dets.has_position[cols]) if a.weight_3d > 0 else _NO_INDEX
        )
        r3, c3 = rows[both], cols[both]
        lost_r = lost_c = _NO_INDEX
        if a.lost_3d_chi2 > 0:
            lost = flatnonzero((T.state == _LOST) & T.has_pos)
            cand = flatnonzero(high & dets.has_position)
            if len(lost) and len(cand):
                voted = T.votes.take(lost, axis=0).argmax(axis=1)
                li, ci = np.divmod(
                    flatnonzero(voted[:, None] == dets.class_ids[cand][None, :]), len(cand)
                )
                lost_r, lost_c = lost[li], cand[ci]
                r3, c3 = np.concatenate([r3, lost_r]), np.concatenate([c3, lost_c])
        d2 = mahalanobis_sq_pairs(
            T.pos_mean[:, :3], T.pos_cov[:, :3, :3], dets.positions, dets.position_covs, r3, c3
        )
        cost = cost_iou
        if len(both):
            gate = a.gate_3d if a.gate_3d > 0 else np.inf
            cost = cost_iou.copy()
            cost[both] = fused_cost_pairs(
                cost_iou[both], d2[: len(both)], a.weight_3d, a.chi2_3d, gate
            )
        lost_cost = d2[len(both) :] / a.lost_3d_chi2 if len(lost_r) else np.zeros(0)
        return _Pairs(rows, cols, cost_iou, cost), _Pairs(lost_r, lost_c, lost_cost, lost_cost)

    def _match(
        self,
        p: _Pairs,
        sel: np.ndarray,
        cost: np.ndarray,
        row_free: np.ndarray,
        det_free: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal matching among the selected pairs (`sel` (K,) bool over `p`); the matched
        rows and detections are marked taken in `row_free` / `det_free` and returned."""
        idx = flatnonzero(sel)
        if len(idx) == 0:
            return _NO_INDEX, _NO_INDEX
        r, d = match_pairs(p.rows[idx], p.cols[idx], cost[idx], len(row_free), len(det_free))
        row_free[r] = False
        det_free[d] = False
        return r, d

    def _apply(self, rows: np.ndarray, dets: _Detections, det: np.ndarray, stamp_ns: int) -> None:
        """Correct matched tracks (`rows`) with their detections (`det`), then bookkeeping."""
        if len(rows) == 0:
            return
        T, life, motion = self._t, self.cfg.lifecycle, self.cfg.motion
        f = T.f.take(rows, axis=0)  # the rows' floats, written back once at the end
        box_mean, box_cov = self.box_filter.update(
            f[:, _F_BOX_MEAN], f[:, _F_BOX_COV].reshape(-1, 4, 3), dets.boxes_xyxy.take(det, axis=0)
        )
        f[:, _F_BOX_MEAN] = box_mean
        f[:, _F_BOX_COV] = box_cov.reshape(len(rows), -1)
        scores = dets.scores[det]
        f[:, _F_SCORE] = scores
        size = dets.sizes_m.take(det, axis=0)
        ok = np.isfinite(size).all(axis=1)
        old = f[:, _F_SIZE]
        blended = (1 - motion.size_smoothing) * old + motion.size_smoothing * size
        np.copyto(blended, size, where=np.isnan(old[:, :1]))  # the first known size
        np.copyto(old, blended, where=ok[:, None])  # unknown sizes keep the old one
        T.f[rows] = f
        self._apply_positions(rows, dets, det)
        cls = dets.class_ids[det]
        T.ensure_classes(int(cls.max()) + 1)
        T.votes[rows, cls] += scores
        ints = T.i.take(rows, axis=0)
        ints[:, _I_HITS] += 1
        ints[:, _I_MISSES] = 0
        ints[:, _I_LAST_SEEN] = stamp_ns
        T.i[rows] = ints
        st = T.state[rows]
        confirm = (st == _LOST) | ((st == _TENTATIVE) & (ints[:, _I_HITS] >= life.min_hits))
        T.state[rows[confirm]] = _CONFIRMED

    def _apply_positions(self, rows: np.ndarray, dets: _Detections, det: np.ndarray) -> None:
        """3D filter: update tracks that have a state, start it for those that do not, and
        reject measurements far outside the predicted uncertainty (e.g. an occluder's depth);
        after `max_position_outliers` rejections in a row the state restarts from the data."""
        T = self._t
        has_det = dets.has_position[det]
        has_state = T.has_pos[rows]
        upd = has_det & has_state
        if upd.any():
            self._update_positions(rows[upd], dets, det[upd])
        init = has_det & ~has_state
        if init.any():
            r, d = rows[init], det[init]
            T.pos_mean[r], T.pos_cov[r] = self.pos_filter.initiate(
                dets.positions[d], dets.position_covs[d]
            )
            T.has_pos[r] = True

    def _update_positions(self, r: np.ndarray, dets: _Detections, d: np.ndarray) -> None:
        """:meth:`_apply_positions` for table rows `r` that have a 3D state, detections `d`."""
        T, motion = self._t, self.cfg.motion
        z, R = dets.positions.take(d, axis=0), dets.position_covs.take(d, axis=0)
        mean, cov, d2 = self.pos_filter.update(
            T.pos_mean.take(r, axis=0), T.pos_cov.take(r, axis=0), z, R
        )
        inlier = d2 <= motion.outlier_chi2
        if inlier.all():  # the usual case: nothing to reject or restart
            T.pos_mean[r], T.pos_cov[r], T.pos_outliers[r] = mean, cov, 0
            return
        restart = ~inlier & (T.pos_outliers[r] + 1 > motion.max_position_outliers)
        self.rejected_positions += int(np.count_nonzero(~inlier & ~restart))
        T.pos_outliers[r] = np.where(inlier, 0, T.pos_outliers[r] + 1)
        T.pos_mean[r] = np.where(inlier[:, None], mean, T.pos_mean[r])
        T.pos_cov[r] = np.where(inlier[:, None, None], cov, T.pos_cov[r])
        if restart.any():
            rr = r[restart]
            T.pos_mean[rr], T.pos_cov[rr] = self.pos_filter.initiate(z[restart], R[restart])
            T.pos_outliers[rr] = 0

    def _start_tracks(
        self, dets: _Detections, det: np.ndarray, stamp_ns: int, confirmed: bool
    ) -> None:
        n = len(det)
        if n == 0:
            return
        box_mean, box_cov = self.box_filter.initiate(dets.boxes_xyxy[det])
        has = dets.has_position[det]
        cls = dets.class_ids[det]
        new = _Table.new(n, max(int(cls.max()) + 1, self._t.votes.shape[1]))
        new.f[:, _F_BOX_MEAN] = box_mean
        new.f[:, _F_BOX_COV] = box_cov.reshape(n, -1)
        new.f[:, _F_POS_MEAN] = 0.0
        new.pos_cov[:] = np.eye(6)
        if has.any():
            d = det[has]
            new.f[has, _F_POS_MEAN], new.pos_cov[has] = self.pos_filter.initiate(
                dets.positions[d], dets.position_covs[d]
            )
        new.has_pos[:] = has
        new.f[:, _F_SCORE] = dets.scores[det]
        new.f[:, _F_SIZE] = dets.sizes_m[det]
        new.votes[np.arange(n), cls] = dets.scores[det]
        new.i[:] = (0, 1, 0, 0, stamp_ns, stamp_ns)  # id, hits, misses, outliers, start, seen
        new.i[:, _I_ID] = np.arange(self._next_id, self._next_id + n)
        self._next_id += n
        new.state[:] = _CONFIRMED if confirmed else _TENTATIVE
        self._t.extend(new)

    def _lost_vs_confirmed(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Lost tracks against confirmed ones (their boxes, after this frame's update):

        - a lost track overlapping a confirmed one almost entirely (IoU > `duplicate_iou`) is
          the same object that got a new track: it is removed (ByteTrack's
          remove_duplicate_stracks);
        - a lost track whose box is covered more than `lost_max_covered` by a nearer confirmed
          track's box (its bottom edge lower in the image: objects stand on the road; the 3D
          state of a track being hidden is often the occluder's, so it cannot decide) went
          behind it: returned as True (M,), it is not published.
        """
        T = self._t
        covered = np.zeros(len(T), bool)
        lost = flatnonzero(T.state == _LOST)
        confirmed = flatnonzero(T.state == _CONFIRMED)
        if len(lost) == 0 or len(confirmed) == 0:
            return covered
        bl, bc = boxes_xyxy.take(lost, axis=0), boxes_xyxy.take(confirmed, axis=0)
        inter = intersection_xyxy(bl, bc)
        areas = box_areas(boxes_xyxy)
        area_l, area_c = areas[lost], areas[confirmed]
        iou = inter / np.maximum(area_l[:, None] + area_c - inter, 1e-12)
        T.state[lost[(iou > self.cfg.lifecycle.duplicate_iou).any(axis=1)]] = _REMOVED
        max_covered = self.cfg.output.lost_max_covered
        if max_covered < 1.0:
            hidden = inter > max_covered * area_l[:, None]
            hidden &= bc[None, :, 3] > bl[:, None, 3]  # by a nearer box
            covered[lost] = hidden.any(axis=1)
        return covered

    # -- output ----------------------------------------------------------------------------
    def _publish(
        self,
        stamp_ns: int,
        boxes_xyxy: np.ndarray,
        covered: np.ndarray,
        lost_for: np.ndarray,
        image_size: tuple[int, int] | None,
    ) -> TrackSet:
        """The tracks to output. Lost ones only while the camera could still see them (their
        missing detection more likely a dropout than the object out of sight): not when
        hidden by a nearer track (`covered`), not when more than `lost_max_outside` of the
        predicted box is outside the image (leaving it). Their image boxes would only be
        wrong; they live on unpublished and are re-found when the object reappears."""
        out, T = self.cfg.output, self._t
        show = T.state == _CONFIRMED
        if out.publish_tentative:
            show |= T.state == _TENTATIVE
        if out.publish_lost:
            lost = (T.state == _LOST) & (lost_for <= out.max_lost_publish_s) & ~covered
            if image_size is not None and out.lost_max_outside < 1.0 and lost.any():
                rows = flatnonzero(lost)
                b = boxes_xyxy[rows]
                seen = np.minimum(b[:, 2:], image_size) - np.maximum(b[:, :2], 0.0)
                np.maximum(seen, 0.0, out=seen)
                inside = seen[:, 0] * seen[:, 1]
                lost[rows[inside < (1.0 - out.lost_max_outside) * box_areas(b)]] = False
            show |= lost
        rows = flatnonzero(show)
        return self._snapshot(rows, stamp_ns, boxes_xyxy.take(rows, axis=0))

    def _snapshot(
        self, rows: np.ndarray, stamp_ns: int, boxes_xyxy: np.ndarray | None = None
    ) -> TrackSet:
        T = self._t
        # One gather per table array (the fields are their columns).
        f, ints, cov = T.f.take(rows, axis=0), T.i.take(rows, axis=0), T.pos_cov.take(rows, axis=0)
        votes = T.votes.take(rows, axis=0)
        pos = f[:, _F_POS_MEAN]
        has = T.has_pos[rows]
        if not has.all():
            pos[~has] = np.nan
            cov[~has] = np.nan
        since_start, since_seen = ((stamp_ns - ints[:, _I_START : _I_LAST_SEEN + 1]) * 1e-9).T
        return TrackSet(
            stamp_ns=stamp_ns,
            ids=ints[:, _I_ID],
            states=T.state[rows].astype(np.uint8),
            boxes_xyxy=xywh_to_xyxy(f[:, :4]) if boxes_xyxy is None else boxes_xyxy,
            scores=f[:, _F_SCORE],
            class_ids=votes.argmax(axis=1) if len(rows) else np.zeros(0, np.int64),
            positions_m=pos[:, :3],
            velocities_mps=pos[:, 3:],
            covariances=cov,
            sizes_m=f[:, _F_SIZE],
            ages_s=since_start,
            time_since_seen_s=since_seen,
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
        if not math.isfinite(float(boxes.sum()) + float(sc.sum())):  # NaN and inf propagate
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
        if not math.isfinite(float(cov[has].sum())):
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
