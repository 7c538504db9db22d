"""The recording commands: parsers, help, and how options become node configurations."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from rec_helpers import frame_image

import nodes.player
import nodes.recorder
from perception.commands import importer, info, play, record, render
from perception.errors import UserError

MODULES = (record, play, info, importer, render)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.register(sub)
    return parser


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("record", ["--split-size", "--split-duration", "TOPIC@INSTANCE", "killed"]),
        ("play", ["--rate", "--loop", "--start", "--lockstep", "--wait-nodes", "exit_on_finish"]),
        ("info", ["--json", "--strict"]),
        ("import", ["--fps", "--camera", "--calibration", "ROS 2 bag", "timestamps.txt"]),
        ("render", ["--max-depth", "--no-depth", "MJPG"]),
    ],
)
def test_every_command_has_full_help(
    command: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text


def test_record_and_play_options_reach_the_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(nodes.recorder, "run", lambda c: seen.setdefault("record", c) and 0)
    monkeypatch.setattr(nodes.player, "run", lambda c: seen.setdefault("play", c) and 0)
    parser = _parser()
    args = parser.parse_args(
        [
            "record",
            "-o",
            "run1",
            "camera/frames",
            "status@camera",
            "--split-duration",
            "60",
            "--namespace",
            "ns1",
            "--no-views",
        ]
    )
    args.func(args)
    rc = seen["record"]
    assert (rc.output, rc.topics, rc.split_duration_s, rc.views) == (
        "run1",
        ["camera/frames", "status@camera"],
        60.0,
        False,
    )
    assert rc.node.bus.namespace == "ns1" and rc.node.name == "recorder"
    args = parser.parse_args(
        [
            "play",
            "a.mcap",
            "b.mcap",
            "--rate",
            "0.5",
            "--loop",
            "--start",
            "3",
            "--lockstep",
            "--lockstep-timeout",
            "2",
            "--wait-nodes",
            "detector",
            "tracker",
            "--transport",
            "tcp",
            "--port-base",
            "30000",
        ]
    )
    args.func(args)
    pc = seen["play"]
    assert (pc.files, pc.rate, pc.loop, pc.start_s, pc.lockstep, pc.lockstep_timeout_s) == (
        ["a.mcap", "b.mcap"],
        0.5,
        True,
        3.0,
        True,
        2.0,
    )
    assert pc.wait_nodes == ["detector", "tracker"] and pc.lockstep_topic == "perception/tracks"
    assert (pc.node.bus.transport, pc.node.bus.port_base) == ("tcp", 30000)


def test_import_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), frame_image(i))
    parser = _parser()
    out = tmp_path / "drive.mcap"
    args = parser.parse_args(
        [
            "import",
            str(folder),
            "-o",
            str(out),
            "--fps",
            "5",
            "--start-time",
            "2024-05-01T12:00:00",
            "--camera",
            "left",
        ]
    )
    assert args.func(args) == 0
    assert "imported 3 frames (0.40 s)" in capsys.readouterr().out
    args = parser.parse_args(["info", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "May 01 2024 12:00:00.000 UTC" in text and "/view/left/image" in text
    args = parser.parse_args(["import", str(folder), "-o", str(out), "--start-time", "soon"])
    with pytest.raises(UserError, match="neither seconds nor an ISO date-time"):
        args.func(args)
