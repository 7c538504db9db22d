"""`perception render`: frames with their detections, tracks and depth, read back as a video."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
from rec_helpers import H, W, drive_messages, frame_image, status_message, write_recording

from perception.commands import render as render_command
from perception.errors import UserError
from perception.recording.render import RenderOptions, render
from perception.recording.style import class_bgr

N = 20


def _read(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            return frames
        frames.append(image)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("render") / "drive.mcap"
    write_recording(path, drive_messages(N), views=False)
    return path


def test_render_draws_results_and_depth(recording: Path, tmp_path: Path) -> None:
    result = render(recording, tmp_path / "review.mp4")
    assert (result.frames, result.width, result.height) == (N, 2 * W, H)
    assert result.fps == pytest.approx(10.0) and result.codec == "mp4v"
    video = _read(result.path)
    assert len(video) == N
    # the depth panel: each pixel the log-scaled TURBO colour of its depth-grid cell
    depth = next(m for k, m in drive_messages(1) if k == "perception/depth").depth_m
    u = np.clip(np.rint((np.arange(W) - 0.5) / 2), 0, W // 2 - 1).astype(int)
    v = np.clip(np.rint((np.arange(H) - 0.5) / 2), 0, H // 2 - 1).astype(int)
    d = np.clip(depth.astype(np.float32)[v][:, u], 0.5, 80.0)
    grey = np.clip((np.log(80.0) - np.log(d)) / (np.log(80.0) - np.log(0.5)) * 255, 0, 255)
    expected_panel = cv2.applyColorMap(grey.astype(np.uint8), cv2.COLORMAP_TURBO).astype(int)
    for k in (3, 12):
        out, original = video[k].astype(int), frame_image(k).astype(int)
        left = out[:, :W]
        quiet = np.abs(left[0:12, 140:160] - original[0:12, 140:160]).mean()
        assert quiet < 12  # away from the boxes: the frame itself (codec noise only)
        x1, x2 = 20 + 2 * k, 60 + 2 * k  # the track's box, 2 px thick, top edge at y = 30
        edge = left[30, x1 + 6 : x2 - 6].mean(axis=0)
        assert np.abs(edge - class_bgr(0)).max() < 70  # drawn in the car colour
        assert np.abs(left[30, x1 + 6 : x2 - 6] - original[30, x1 + 6 : x2 - 6]).mean() > 40
        np.testing.assert_allclose(out[40:90, W:], expected_panel[40:90], atol=60)
        assert np.abs(out[40:90, W:] - expected_panel[40:90]).mean() < 8
        assert out[0:4, W + 100 : W + 150].max() < 40  # unknown depth (0) is black


def test_render_command_and_errors(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    render_command.register(parser.add_subparsers())
    args = parser.parse_args(
        ["render", str(recording), "-o", str(tmp_path / "r.mp4"), "--max-frames", "5", "--no-depth"]
    )
    assert args.func(args) == 0
    assert "wrote 5 frames (160x96" in capsys.readouterr().out
    assert len(_read(tmp_path / "r.mp4")) == 5
    status_only = tmp_path / "status.mcap"
    write_recording(status_only, [("status@x", status_message(1))], views=False)
    with pytest.raises(UserError, match="holds no camera frames"):
        render(status_only, tmp_path / "x.mp4")
    with pytest.raises(UserError, match="no frames of camera 'rear'"):
        render(recording, tmp_path / "x.mp4", RenderOptions(camera="rear"))
