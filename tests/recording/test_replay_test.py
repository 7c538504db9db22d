"""Golden regression in CI: the stack replayed in lockstep over a short drive matches the
references in the repo, and a reference off by more than a tolerance fails with a readable diff."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from perception.bus.codec import encode
from perception.msgs import Detections
from perception.recording.golden import Tolerances, compare, compare_message, load_outputs
from perception.recording.mcap_io import RecordingReader, RecordingWriter, WriterOptions
from tests.conftest import REPO, run_perception

GOLDEN = REPO / "tests" / "golden"
DRIVE, REFS = GOLDEN / "drive.mcap", GOLDEN / "refs.mcap"


def replay_test(refs: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_perception(
        "replay-test",
        str(DRIVE),
        "--refs",
        str(refs),
        "--log",
        str(tmp_path / "stack.log"),
        timeout=600,
    )


def tampered_copy(refs: Path, out: Path, shift_px: float) -> tuple[int, int]:
    """A copy of ``refs`` with one detection box moved; returns (frame stamp, object)."""
    writer = RecordingWriter(out, WriterOptions(overwrite=True))
    target: tuple[int, int] | None = None
    for rec in RecordingReader(refs).messages():
        frames = list(rec.frames())
        msg = rec.decode()
        if target is None and isinstance(msg, Detections) and len(msg.scores):
            boxes = msg.boxes_xyxy.copy()
            boxes[0, 0] += shift_px
            msg.boxes_xyxy = boxes
            frames = encode(rec.channel.bus_topic, msg)[1:]
            target = (msg.stamp_ns, 0)
        writer.write_frames(
            rec.channel.topic, frames, rec.log_time_ns, rec.publish_time_ns, rec.sequence
        )
    writer.close()
    assert target is not None, "the references hold no detection to tamper with"
    return target


@pytest.mark.slow
def test_golden_replay_matches_and_a_broken_tolerance_fails(tmp_path: Path) -> None:
    ok = replay_test(REFS, tmp_path)
    assert ok.returncode == 0, ok.stdout + (tmp_path / "stack.log").read_text()[-3000:]
    assert "compared perception/depth 8, perception/detections 8, perception/tracks 8: OK" in (
        ok.stdout
    )
    tampered = tmp_path / "tampered.mcap"
    stamp, _ = tampered_copy(REFS, tampered, shift_px=3.0)
    bad = replay_test(tampered, tmp_path)
    assert bad.returncode == 1
    assert f"(stamp {stamp}) perception/detections: box object 0" in bad.stdout
    assert "off by 3" in bad.stdout and "tolerance 0.5" in bad.stdout


def test_compare_reports_frame_object_and_distance() -> None:
    refs = load_outputs(REFS)
    assert all(len(m) == 8 for m in refs.values())
    assert compare(refs, refs).ok
    stamp = min(refs["perception/detections"])
    ref = refs["perception/detections"][stamp]
    assert isinstance(ref, Detections)
    moved = Detections(**{**ref.__dict__, "boxes_xyxy": ref.boxes_xyxy + np.float32(0.4)})
    assert compare_message(moved, ref, Tolerances()) == []  # within 0.5 px
    moved.boxes_xyxy = ref.boxes_xyxy + np.float32(0.6)
    (problem,) = compare_message(moved, ref, Tolerances())
    assert problem.startswith("box object 0") and "tolerance 0.5" in problem
    missing = {**refs, "perception/tracks": {}}
    report = compare(missing, refs)
    assert not report.ok and "missing in this run" in str(report.differences[0])
