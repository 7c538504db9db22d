"""The camera node as a process: video files frame-exact, image folders paced, sources retried."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.bus import BusConfig, Subscriber
from perception.bus.topics import QueuePolicy
from perception.msgs import CameraFrame, CameraInfo, NodeStatus
from tests.conftest import OPENCV_DATA, REPO, wait_for

VIDEO = OPENCV_DATA / "vtest.avi"
needs_video = pytest.mark.skipif(not VIDEO.exists(), reason="Debian package opencv-doc missing")


def decode_video(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, image = cap.read()
        assert ok
        frames.append(image)
    cap.release()
    return frames


def collect(sub: Subscriber, until: int, timeout: float = 30.0) -> list[CameraFrame]:
    got: list[CameraFrame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got.extend(m for m in sub.receive(timeout_ms=200) if isinstance(m, CameraFrame))
        if got and got[-1].seq >= until:
            break
    return got


@needs_video
def test_video_file_is_received_frame_exact(any_bus: BusConfig, start_node) -> None:
    count = 25
    expected = decode_video(VIDEO, count)
    sub = Subscriber("camera/frames", any_bus, policy=QueuePolicy.QUEUE)
    info = Subscriber("camera/info", any_bus)
    node = start_node(
        "camera",
        {"source": str(VIDEO), "frames": count, "fps": 20, "camera": "test"},
        any_bus,
    )
    got = collect(sub, until=count - 1)
    assert got, node.output()
    seqs = [m.seq for m in got]
    assert seqs == list(range(seqs[0], count)), "frames missing after the first one received"
    assert seqs[0] < 10
    for msg in got:
        assert msg.encoding == "bgr8" and msg.camera == "test"
        assert (msg.width, msg.height) == (768, 576)
        assert np.array_equal(msg.image, expected[msg.seq])
    stamps = np.diff([m.stamp_ns for m in got]) / 1e9
    assert np.median(stamps) == pytest.approx(1 / 20, abs=0.01)
    infos = [m for m in info.receive(timeout_ms=500) if isinstance(m, CameraInfo)]
    assert infos and infos[0].K[0, 0] == 400.0
    # the first calibration went out after the pause for late subscribers, before any frame
    assert infos[0].seq == 0
    assert seqs[0] > 0 or infos[0].stamp_ns <= got[0].stamp_ns
    assert wait_for(lambda: node.proc.poll() is not None, 10, "node to exit at frames limit")
    assert node.proc.returncode == 0


def test_image_folder_is_paced_by_its_timestamps(bus: BusConfig, start_node, tmp_path) -> None:
    folder = tmp_path / "image_02" / "data"
    folder.mkdir(parents=True)
    times = [0.0, 0.1, 0.3, 0.35, 0.6, 0.7]
    for i in range(len(times)):
        cv2.imwrite(str(folder / f"{i:010d}.png"), np.full((40, 60, 3), i * 30, np.uint8))
    lines = [f"2011-09-26 13:02:{25.5 + t:012.9f}" for t in times]
    (tmp_path / "image_02" / "timestamps.txt").write_text("\n".join(lines) + "\n")
    sub = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    time.sleep(0.3)
    node = start_node("camera", {"source": str(folder), "calibration": ""}, bus)
    got = collect(sub, until=len(times) - 1, timeout=15)
    assert [m.seq for m in got] == list(range(len(times))), node.output()
    assert [int(m.image[0, 0, 0]) for m in got] == [i * 30 for i in range(len(times))]
    gaps = np.diff([m.stamp_ns for m in got]) / 1e9
    assert np.allclose(gaps, np.diff(times), atol=0.03)


@needs_video
def test_missing_source_is_retried_then_recovers(bus: BusConfig, start_node, tmp_path) -> None:
    video = tmp_path / "late.avi"
    status = Subscriber("status", bus, instances=["camera"])
    frames = Subscriber("camera/frames", bus)
    node = start_node("camera", {"source": str(video), "node": {"status_period_s": 0.3}}, bus)

    def error_status() -> NodeStatus | None:
        for m in status.receive(timeout_ms=100):
            if isinstance(m, NodeStatus) and m.counters.get("source_errors", 0) >= 2:
                return m
        return None

    report = wait_for(error_status, 15, "status reporting source errors")
    assert report.state == "error" and "does not exist" in report.message
    assert node.proc.poll() is None, "the node must not die of a missing source"
    shutil.copy(VIDEO, video)
    got = wait_for(lambda: frames.receive(timeout_ms=100), 20, "frames after recovery")
    assert isinstance(got[0], CameraFrame) and got[0].width == 768
    assert node.stop() == 0


def test_bad_parameters_exit_with_one_clear_line(bus: BusConfig, start_node) -> None:
    node = start_node("camera", {"encoding": "webp"}, bus)
    assert node.proc.wait(20) == 2
    out = node.output()
    assert "error: encoding must be bgr8 or jpeg" in out and "Traceback" not in out
    node = start_node("camera", {"fsp": 3}, bus)
    assert node.proc.wait(20) == 2
    assert "unknown parameter fsp" in node.output()


def test_calibration_is_found_from_any_directory() -> None:
    from perception.paths import resolve_data_path

    assert resolve_data_path("calibration/synthetic_front.yaml") == (
        REPO / "calibration" / "synthetic_front.yaml"
    )
