"""The demo, headless, as a user runs it: separate processes, a recording, a video, a summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perception.recording.mcap_io import RecordingReader
from tests.conftest import run_perception


@pytest.mark.slow
def test_demo_runs_headless_and_leaves_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_perception(
        "demo",
        "--duration",
        "35",
        "--out",
        str(out),
        "--set",
        "foxglove_bridge.port=0",
        namespace=f"demo{os.getpid()}",
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "review.mp4").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == []
    assert summary["frames_in"] >= 20 and summary["frames_processed"] >= 10
    # Every processed frame is tracked, the last ones too: the launch stops the nodes in order
    # (camera, detector, tracker, recorder) and each finishes its queued input first.
    stamps: dict[str, set[int]] = {"perception/detections": set(), "perception/tracks": set()}
    for rec in RecordingReader(out / "demo.mcap").messages(topics=set(stamps)):
        stamps[rec.channel.topic].add(rec.publish_time_ns)
    processed, tracked = stamps["perception/detections"], stamps["perception/tracks"]
    assert (len(processed), len(tracked)) == (
        summary["frames_processed"],
        summary["frames_tracked"],
    )
    assert processed == tracked, sorted(processed ^ tracked)
    assert summary["latency_ms"]["capture_to_tracks"]["median"] > 0
    assert "forward" in summary["stage_latency_ms"]["detector"]
    quality = summary["quality"]
    assert quality["frames_scored"] >= 10
    assert quality["map50"] is not None and quality["depth"]["abs_rel"] is not None
    topics = {c.topic for c in RecordingReader(out / "demo.mcap").channels()}
    assert {"camera/frames", "perception/detections", "perception/tracks"} <= topics
    assert any(t.startswith("/view/") for t in topics), "Foxglove view channels recorded"
    assert "live view: open Foxglove" in result.stdout
