"""Augmentation keeps boxes on their object's pixels and depth consistent with K."""

from __future__ import annotations

import numpy as np
import pytest

from perception.data.augment import Augment, AugmentConfig, colour_jitter, hflip, scale_crop
from perception.data.datasets import SyntheticDataset
from perception.data.sample import Sample
from tests.synth.helpers import front_camera


@pytest.fixture(scope="module")
def sample() -> Sample:
    ds = SyntheticDataset([11], 1, front_camera(), start_frame=10)
    s = ds.raw(0)
    assert len(s.boxes_xyxy) >= 5 and s.instance_map is not None
    return s


def _instance_boxes(s: Sample) -> dict[int, np.ndarray]:
    assert s.instance_map is not None
    out = {}
    for tid in s.track_ids.tolist():
        ys, xs = np.nonzero(s.instance_map == tid)
        if len(xs):
            out[tid] = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    return out


def _interior_pixels(s: Sample) -> list[tuple[int, int, int]]:
    """(track id, u, v) of one pixel deep inside each object (3x3 of the same object)."""
    assert s.instance_map is not None
    out = []
    for tid in s.track_ids.tolist():
        m = s.instance_map == tid
        inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        ys, xs = np.nonzero(inner)
        if len(xs) >= 9:
            k = len(xs) // 2
            out.append((tid, int(xs[k]) + 1, int(ys[k]) + 1))
    return out


def _solid(s: Sample) -> set[int]:
    """Objects whose visible pixels fill at least half their box (no one-pixel slivers that
    down-sampling could erase)."""
    assert s.instance_map is not None
    out = set()
    for tid, b in zip(s.track_ids.tolist(), s.boxes_xyxy, strict=True):
        area = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        if np.count_nonzero(s.instance_map == tid) >= 0.5 * area:
            out.add(tid)
    return out


def _check_boxes_on_pixels(s: Sample, tol: float, only: set[int] | None = None) -> None:
    inst = _instance_boxes(s)
    w, h = s.width, s.height
    for tid, box in zip(s.track_ids.tolist(), s.boxes_xyxy, strict=True):
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= w - 1 and box[3] <= h - 1
        if only is not None and tid not in only:
            continue
        ib = inst[tid]
        cut = box[0] <= 0 or box[1] <= 0 or box[2] >= w - 1 or box[3] >= h - 1
        if cut:
            assert np.all(ib[:2] >= box[:2] - tol) and np.all(ib[2:] <= box[2:] + tol), (
                tid,
                ib,
                box,
            )
        else:
            assert np.all(np.abs(ib - box) <= tol), (tid, ib, box)


def test_boxes_match_instance_pixels_before_augmentation(sample: Sample) -> None:
    inst = _instance_boxes(sample)
    for tid, box in zip(sample.track_ids.tolist(), sample.boxes_xyxy, strict=True):
        assert np.array_equal(inst[tid], box)


def test_hflip_keeps_boxes_on_pixels_and_is_an_involution(sample: Sample) -> None:
    f = hflip(sample)
    f.check()
    inst = _instance_boxes(f)
    for tid, box in zip(f.track_ids.tolist(), f.boxes_xyxy, strict=True):
        assert np.array_equal(inst[tid], box)
    assert f.K[0, 2] == pytest.approx(sample.width - 1 - sample.K[0, 2])
    assert np.array_equal(f.depth_m[:, ::-1], sample.depth_m)
    ff = hflip(f)
    assert np.array_equal(ff.image_bgr, sample.image_bgr) and np.array_equal(
        ff.boxes_xyxy, sample.boxes_xyxy
    )
    assert np.allclose(ff.K, sample.K)


@pytest.mark.parametrize(
    ("scale", "x0", "y0", "mode"),
    [
        (1.4, 100, 60, "keep"),
        (1.4, 100, 60, "rescale"),
        (0.7, -40, -20, "rescale"),
        (1.0, 50, 0, "keep"),
    ],
)
def test_scale_crop_keeps_boxes_on_pixels_and_depth_consistent(
    sample: Sample, scale: float, x0: int, y0: int, mode: str
) -> None:
    w, h = sample.width, sample.height
    out = scale_crop(sample, scale, x0, y0, w, h, depth_mode=mode)
    out.check()
    assert len(out.boxes_xyxy) >= 1
    # boxes: within resampling error of the object's pixels in the resampled instance map;
    # a box cut by the window is clipped, so it may be larger than what is left of the object
    _check_boxes_on_pixels(out, max(1.0, 0.5 * scale + 0.5), _solid(sample))
    # depth: a pixel deep inside each object keeps its 3D point, through the new K
    sx, sy = round(w * scale) / w, round(h * scale) / h
    f = float(np.sqrt(sx * sy)) if mode == "rescale" else 1.0
    checked = 0
    for tid, u, v in _interior_pixels(sample):
        d = float(sample.depth_m[v, u])
        X = np.linalg.inv(sample.K) @ np.array([u, v, 1.0]) * d
        u2, v2 = sx * (u + 0.5) - 0.5 - x0, sy * (v + 0.5) - 0.5 - y0
        q = out.K @ np.array([X[0], X[1], X[2] / f])
        assert q[:2] / q[2] == pytest.approx([u2, v2], abs=1e-6)
        iu, iv = round(u2), round(v2)
        if not (0 <= iu < w and 0 <= iv < h) or out.instance_map is None:
            continue
        if out.instance_map[iv, iu] != tid:
            continue
        assert out.depth_m[iv, iu] == pytest.approx(d / f, rel=0.03)
        checked += 1
    assert checked >= 2
    # per-object depth follows the same rule
    before = dict(zip(sample.track_ids.tolist(), sample.object_depth_m.tolist(), strict=True))
    for tid, z in zip(out.track_ids.tolist(), out.object_depth_m.tolist(), strict=True):
        assert z == pytest.approx(before[tid] / f, rel=1e-6)


def test_colour_jitter_changes_only_colours(sample: Sample) -> None:
    out = colour_jitter(sample, np.random.default_rng(0), AugmentConfig(brightness=0.3))
    assert out.image_bgr.shape == sample.image_bgr.shape and out.image_bgr.dtype == np.uint8
    assert not np.array_equal(out.image_bgr, sample.image_bgr)
    assert np.array_equal(out.boxes_xyxy, sample.boxes_xyxy) and out.depth_m is sample.depth_m


def test_random_pipeline_keeps_samples_valid(sample: Sample) -> None:
    # up-scaling only: nearest down-sampling may drop a one-pixel protrusion of an object
    aug = Augment(
        AugmentConfig(hflip_p=0.5, scale_p=1.0, scale_range=(1.0, 1.3), output_size=(512, 320))
    )
    for seed in range(6):
        out = aug(sample, np.random.default_rng(seed))
        out.check()
        assert out.image_bgr.shape == (320, 512, 3)
        b = out.boxes_xyxy
        assert np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
        _check_boxes_on_pixels(out, 1.5, _solid(sample))


def test_bad_depth_mode_is_rejected(sample: Sample) -> None:
    with pytest.raises(ValueError, match="depth_mode"):
        scale_crop(sample, 1.2, 0, 0, 100, 100, depth_mode="stretch")
