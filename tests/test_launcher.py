"""The launcher as a process: restarts a SIGKILLed node, gives up on a crash loop, escalates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from perception.bus import BusConfig, Subscriber
from perception.errors import UserError
from perception.launcher import LaunchFile
from perception.msgs import NodeStatus
from perception.recording.mcap_io import RecordingReader
from tests.conftest import OPENCV_DATA, REPO, wait_for

VIDEO = OPENCV_DATA / "vtest.avi"


def write_launch(tmp_path: Path, nodes: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, **extra}))
    return path


def start_launcher(path: Path, bus: BusConfig, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PERCEPTION_NAMESPACE": bus.namespace}
    return subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "launch", str(path), "--table-period", "1", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def camera_node(name: str, **params: Any) -> dict[str, Any]:
    source = str(VIDEO) if VIDEO.exists() else "synthetic"
    base = {"source": source, "loop": True, "calibration": "", "node": {"status_period_s": 0.3}}
    return {"name": name, "node": "camera", "params": {**base, **params}}


def stop_cleanly(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C to a running launch: it must stop with exit status 0. Its output."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def status_of(sub: Subscriber) -> NodeStatus | None:
    msgs = [m for m in sub.receive(timeout_ms=100) if isinstance(m, NodeStatus)]
    return msgs[-1] if msgs else None


def test_sigkilled_node_is_restarted(bus: BusConfig, tmp_path: Path) -> None:
    launch = write_launch(
        tmp_path,
        [
            {**camera_node("cam"), "respawn_delay_s": 0.2},
            {"name": "mon", "node": "monitor", "params": {"topics": ["camera/frames"]}},
        ],
    )
    proc = start_launcher(launch, bus, "--duration", "25")
    status = Subscriber("status", bus, instances=["cam"])
    first = wait_for(lambda: status_of(status), 20, "camera status")
    os.kill(first.pid, signal.SIGKILL)
    second = wait_for(
        lambda: (s := status_of(status)) and s.pid != first.pid and s, 20, "restarted camera"
    )
    assert second.uptime_s < first.uptime_s + 20
    out = stop_cleanly(proc)
    assert "cam died (signal SIGKILL); restarting" in out
    table = out.strip().splitlines()[-3:]
    assert any(line.startswith("cam ") and " 1 " in line for line in table), table


def test_crash_looping_required_node_fails_the_launch(bus: BusConfig, tmp_path: Path) -> None:
    launch = write_launch(
        tmp_path,
        [
            {**camera_node("broken", encoding="webp"), "respawn_delay_s": 0.1, "max_restarts": 2},
            {"name": "mon", "node": "monitor", "params": {}},
        ],
    )
    proc = start_launcher(launch, bus, "--duration", "60")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "broken is crash-looping" in out and "gave up" in out
    assert "required node broken failed" in out
    assert out.count("started broken") == 3  # first start + 2 restarts


def test_shutdown_escalates_to_sigkill(bus: BusConfig, tmp_path: Path) -> None:
    launch = write_launch(
        tmp_path, [camera_node("stuck")], sigint_timeout_s=0.5, sigterm_timeout_s=0.5
    )
    proc = start_launcher(launch, bus)
    status = Subscriber("status", bus, instances=["stuck"])
    report = wait_for(lambda: status_of(status), 20, "node status")
    os.kill(report.pid, signal.SIGSTOP)  # a hung node: it cannot act on SIGINT or SIGTERM
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "sending SIGTERM" in out and "sending SIGKILL" in out, out
    with pytest.raises(ProcessLookupError):
        os.kill(report.pid, 0)


def test_more_ctrl_c_skip_the_waiting(bus: BusConfig, tmp_path: Path) -> None:
    launch = write_launch(
        tmp_path,
        [camera_node("stuck"), camera_node("next")],
        sigint_timeout_s=60,
        sigterm_timeout_s=60,
    )
    proc = start_launcher(launch, bus)
    status = Subscriber("status", bus, instances=["stuck", "next"])
    report = wait_for(lambda: (s := status_of(status)) and s.node == "stuck" and s, 20, "status")
    os.kill(report.pid, signal.SIGSTOP)
    started = time.monotonic()
    # stop; skip stuck's SIGINT wait (next still gets its turn); skip the SIGTERM wait
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20, out
    assert "stuck did not stop: sending SIGKILL" in out, out
    assert "[next] received SIGINT" in out and "[next] stopped" in out, out
    assert "next did not stop" not in out and "stuck, next" not in out, out


def test_stopping_a_launch_loses_nothing_in_flight(bus: BusConfig, tmp_path: Path) -> None:
    """Nodes stop in launch order, and the recorder drains before it exits: it holds every
    frame the camera published, and the camera's own final status (sent as it closed)."""
    out = tmp_path / "stop.mcap"
    launch = write_launch(
        tmp_path,
        [
            camera_node("cam", fps=30),
            {"name": "rec", "node": "recorder", "params": {"output": str(out)}},
        ],
    )
    proc = start_launcher(launch, bus)
    status = Subscriber("status", bus, instances=["rec"])
    wait_for(lambda: status_of(status), 30, "recorder status")
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the same Ctrl-C twice (e.g. forwarded by a wrapper)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log
    assert "did not stop" not in log, log  # not taken for a second Ctrl-C
    assert log.index("[cam] stopped") < log.index("[rec] received SIGINT"), log
    frames: list[int] = []
    published = last_state = None
    for rec in RecordingReader(out).messages(topics={"camera/frames", "status@cam"}):
        msg = rec.decode()
        if isinstance(msg, NodeStatus):
            published = msg.outputs["camera/frames"]["published"]
            last_state = msg.state
        else:
            frames.append(msg.seq)
    assert published is not None and published >= 10, log
    assert last_state == "stopped", log
    assert frames and frames == list(range(frames[0], published)), (frames[-5:], published)


def test_finished_node_can_end_the_launch(bus: BusConfig, tmp_path: Path) -> None:
    launch = write_launch(
        tmp_path,
        [
            {**camera_node("once", loop=False, frames=5, fps=20), "exit_on_finish": True},
            {"name": "mon", "node": "monitor", "params": {}},
        ],
    )
    proc = start_launcher(launch, bus)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "once finished" in out and "stopping the launch" in out


def test_launch_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown kind"):
        LaunchFile.load(write_launch(tmp_path, [{"name": "a", "node": "teleporter"}]))
    with pytest.raises(UserError, match="unique"):
        LaunchFile.load(write_launch(tmp_path, [camera_node("a"), camera_node("a")]))
    with pytest.raises(UserError, match="unknown parameter"):
        LaunchFile.load(write_launch(tmp_path, [{**camera_node("a"), "respawm": True}]))
    with pytest.raises(UserError, match="does not exist"):
        LaunchFile.load(tmp_path / "nope.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "perception.cli", "launch", str(tmp_path / "nope.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "nope.yaml does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_overrides_reach_the_nodes(tmp_path: Path) -> None:
    from perception.launcher import apply_overrides

    launch = LaunchFile.load(write_launch(tmp_path, [camera_node("cam")]))
    apply_overrides(launch, ["cam.fps=12.5", "cam.node.log_level=DEBUG", "cam.source=device:1"])
    params = launch.nodes[0].params
    assert params["fps"] == 12.5 and params["source"] == "device:1"
    assert params["node"]["log_level"] == "DEBUG"
    with pytest.raises(UserError, match="no node 'cma'"):
        apply_overrides(launch, ["cma.fps=1"])
    with pytest.raises(UserError, match=r"NODE\.PARAM=VALUE"):
        apply_overrides(launch, ["fps=1"])


def test_launch_directory_files_parse() -> None:
    for path in sorted((REPO / "launch").glob("*.yaml")):
        LaunchFile.load(path)
