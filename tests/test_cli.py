"""The `perception` command: help everywhere, topic tools against a live node, clean errors."""

from __future__ import annotations

import json

import pytest

from perception.bus import BusConfig
from perception.cli import build_parser
from perception.commands.run import NODES
from tests.conftest import OPENCV_DATA, run_perception

TOPIC_COMMANDS = ["list", "echo", "hz", "info"]


def perception(*args: str, bus: BusConfig | None = None, timeout: float = 60):
    return run_perception(*args, namespace=bus.namespace if bus else None, timeout=timeout)


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"launch", "run", "topic", "bench"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0
    for sub in TOPIC_COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args(["topic", sub, "--help"])


@pytest.mark.parametrize("node", sorted(NODES))
def test_every_node_has_help(node: str) -> None:
    result = perception("run", node, "--help")
    assert result.returncode == 0, result.stderr
    assert "--node.bus.transport" in result.stdout and "--node.name" in result.stdout
    assert "<object" not in result.stdout


def test_topic_tools_against_a_live_camera(bus: BusConfig, start_node) -> None:
    source = str(OPENCV_DATA / "vtest.avi")
    node = start_node("camera", {"source": source, "fps": 10, "loop": True}, bus)
    hz = perception("topic", "hz", "camera/frames", "--reports", "2", bus=bus)
    assert hz.returncode == 0, hz.stderr + node.output()
    report = json.loads(hz.stdout.splitlines()[-1])
    assert report["rate_hz"] == pytest.approx(10, rel=0.3)
    assert 0 < report["latency_ms"]["median"] < 500
    echo = perception("topic", "echo", "camera/info", "-n", "1", "--timeout", "10", bus=bus)
    info = json.loads(echo.stdout)
    assert info["type"] == "CameraInfo" and info["K"][0][0] == 400.0
    listing = perception("topic", "list", bus=bus)
    assert "camera/frames" in listing.stdout.split("publisher socket")[1]
    details = perception("topic", "info", "perception/tracks", bus=bus)
    assert "TrackedObjects" in details.stdout and "covariance" in details.stdout


def test_unknown_things_give_one_clear_error() -> None:
    for args in (["topic", "echo", "nope/topic"], ["run", "teleporter"]):
        result = perception(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
