"""`perception synth`: writes a drive folder that reads back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from perception.camera import CameraModel
from perception.commands import synth as synth_cmd
from perception.data import kitti
from perception.errors import UserError
from tests.synth.helpers import FRONT_YAML


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="perception")
    synth_cmd.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_synth_writes_a_readable_drive(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    args = _parse(
        [
            "synth",
            "--seed",
            "9",
            "--frames",
            "3",
            "-o",
            str(out),
            "--width",
            "320",
            "--calibration",
            str(FRONT_YAML),
            "--fps",
            "20",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    for sub in ("image_2", "depth", "label_2"):
        assert sorted(p.name for p in (out / sub).iterdir())[:3] == [
            f"00000{i}.{'txt' if sub == 'label_2' else 'png'}" for i in range(3)
        ]
    info = json.loads((out / "drive.json").read_text())
    assert (info["seed"], info["fps"], info["frames"], info["width"], info["height"]) == (
        9,
        20.0,
        3,
        320,
        192,
    )
    assert info["classes"] == ["car", "truck", "pedestrian", "cyclist"]
    cam = CameraModel.load(out / "camera.yaml")
    assert (cam.width, cam.height) == (320, 192) and cam.K[0, 0] == pytest.approx(200.0)
    assert kitti.read_timestamps(out / "timestamps.txt") == [0, 50_000_000, 100_000_000]
    assert np.allclose(kitti.read_calib(out / "calib.txt").K, cam.K)
    assert kitti.read_image(out / "image_2" / "000001.png").shape == (192, 320, 3)
    assert kitti.read_depth_png(out / "depth" / "000001.png").max() > 10.0
    labels = kitti.read_labels(out / "label_2" / "000002.txt")
    assert labels and all(o.frame == 2 for o in labels)
    assert {o.type for o in labels} <= {"Car", "Truck", "Pedestrian", "Cyclist", "DontCare"}


def test_synth_refuses_bad_input(tmp_path: Path) -> None:
    base = ["synth", "--seed", "1", "-o", str(tmp_path / "d"), "--no-progress"]
    with pytest.raises(UserError, match="--frames"):
        a = _parse([*base, "--frames", "0"])
        a.func(a)
    with pytest.raises(UserError, match="does not exist"):
        a = _parse([*base, "--frames", "1", "--calibration", str(tmp_path / "none.yaml")])
        a.func(a)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        a = _parse([*base, "--frames", "1", "--calibration", str(FRONT_YAML), "--width", "160"])
        a.func(a)


def test_synth_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["synth", "--help"])
    text = capsys.readouterr().out
    for opt in (
        "--seed",
        "--frames",
        "--output",
        "--fps",
        "--calibration",
        "--width",
        "--height",
        "--overwrite",
        "label_2",
        "timestamps.txt",
    ):
        assert opt in text
