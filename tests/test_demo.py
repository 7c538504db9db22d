"""The demo, headless, as a user runs it: separate processes, a recording, a video, a summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.recording.mcap_io import RecordingReader
from tests.conftest import REPO


@pytest.mark.slow
def test_demo_runs_headless_and_leaves_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PERCEPTION_NAMESPACE": f"demo{os.getpid()}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "demo",
            "--duration",
            "35",
            "--out",
            str(out),
            "--set",
            "foxglove_bridge.port=0",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "review.mp4").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == []
    assert summary["frames_in"] >= 20 and summary["frames_processed"] >= 10
    # every processed frame is tracked, but the launch may stop between the two stages
    assert (
        summary["frames_processed"] - 2
        <= summary["frames_tracked"]
        <= (summary["frames_processed"])
    )
    assert summary["latency_ms"]["capture_to_tracks"]["median"] > 0
    assert "forward" in summary["stage_latency_ms"]["detector"]
    quality = summary["quality"]
    assert quality["frames_scored"] >= 10
    assert quality["map50"] is not None and quality["depth"]["abs_rel"] is not None
    topics = {c.topic for c in RecordingReader(out / "demo.mcap").channels()}
    assert {"camera/frames", "perception/detections", "perception/tracks"} <= topics
    assert any(t.startswith("/view/") for t in topics), "Foxglove view channels recorded"
    assert "live view: open Foxglove" in result.stdout
