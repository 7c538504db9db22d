"""`perception bench pipeline` as a user runs it: the launched stack, one JSON line out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perception import tracing
from tests.conftest import run_perception


@pytest.mark.slow
@pytest.mark.parametrize(
    ("compose", "processes"),
    [("all", {"camera+detector+tracker"}), ("none", {"camera", "detector", "tracker"})],
)
def test_pipeline_bench_reports_latency_split_as_json(
    compose: str, processes: set[str], tmp_path: Path
) -> None:
    result = run_perception(
        "bench",
        "pipeline",
        "--frames",
        "15",
        "--compose",
        compose,
        "--keep-trace",
        str(tmp_path / "trace"),
        namespace=f"pipebench{os.getpid()}",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1
    report = lines[0]
    assert report["bench"] == "pipeline"
    assert report["frames_sent"] == 15
    # every frame reaches the tracker at 10 Hz (a slow machine may skip a few, never most)
    assert report["frames_processed"] >= 10
    assert report["dropped_frames"] == report["frames_sent"] - report["frames_processed"]
    for key in ("capture_to_detections_ms", "capture_to_tracks_ms"):
        assert 0 < report[key]["median"] <= report[key]["p99"]
    assert report["capture_to_detections_ms"]["median"] <= report["capture_to_tracks_ms"]["median"]
    stages = report["detector_stages_ms"]
    assert {"pre", "forward", "post", "publish"} <= set(stages)
    assert stages["forward"] > 0
    assert report["overhead_of_medians_ms"] == pytest.approx(
        report["capture_to_tracks_ms"]["median"] - stages["forward"], abs=0.02
    )
    # every frame followed through the traced stack: each part of its way, in order
    split = report["split_ms"]
    assert list(split) == [
        "capture -> frame sent",
        "frame sent -> detector has it",
        "detector: pre",
        "detector: post",
        "detector: rest",
        "detections sent -> tracker has them",
        "tracker",
        "tracks sent -> subscriber has them",
    ]
    hops = [v for k, v in split.items() if "->" in k and not k.startswith("capture")]
    assert all(v > 0 for v in hops)  # a message arrives after it was sent
    assert split["tracker"] > 0 and split["detector: pre"] > 0
    # the per-frame overhead is capture -> tracks less that frame's forward
    assert 0 < report["overhead_ms"] < report["capture_to_tracks_ms"]["median"]
    # the kept trace: every process's events, each frame from the camera to this process
    events = tracing.read(tmp_path / "trace")
    sent = {e["stamp_ns"] for e in events if e["event"] == "sent" and e["node"] == "camera"}
    got = {e["stamp_ns"] for e in events if e["event"] == "received" and e["node"] == "bench"}
    assert len(got) == report["frames_processed"] and got <= sent
    assert {"lift", "associate", "publish"} <= set(report["tracker_stages_ms"])
    assert set(report["cpu_percent"]) == processes  # per process, named by its nodes
    assert report["composed"] == ("none" if compose == "none" else "camera+detector+tracker")


def test_pipeline_floor_bench_times_the_hops_without_the_work() -> None:
    result = run_perception(
        "bench",
        "pipeline-floor",
        "--frames",
        "12",
        "--fps",
        "20",
        "--forward-ms",
        "20",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (report,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert report["bench"] == "pipeline_floor" and report["frames"] >= 10
    # the busy stand-in for the forward is inside capture -> tracks and outside the floor
    assert report["capture_to_tracks_ms"]["median"] >= 20
    assert 0 < report["floor_ms"] < report["capture_to_tracks_ms"]["median"] - 19
