"""Golden regression: replay a drive through the stack in lockstep, compare with references.

``run_stack`` launches detector, tracker and a recorder of their outputs in a private namespace,
then a lockstep player (every frame is processed whatever the machine's speed), and returns the
outputs recording. ``compare`` pairs each output message with the reference of the same topic
and ``stamp_ns`` and checks every field with per-field tolerances; timing fields (``seq``,
``mono_ns``) are ignored. Each difference is reported as: which frame, which object, which
field, how far, and the tolerance it broke.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from perception.errors import UserError
from perception.msgs import DepthMap, Detections, Message, TrackedObjects
from perception.paths import PROJECT_ROOT
from perception.recording.mcap_io import RecordingReader

OUTPUT_TOPICS = ("perception/detections", "perception/depth", "perception/tracks")


@dataclass
class Tolerances:
    """Largest accepted difference per field (machines differ in float rounding)."""

    box_px: float = 0.5
    score: float = 0.01
    object_depth_rel: float = 0.01
    depth_map_rel: float = 0.01  # median |a - b| / b over pixels with depth
    position_m: float = 0.05
    velocity_mps: float = 0.1
    covariance_rel: float = 0.05


@dataclass
class Difference:
    stamp_ns: int
    frame: int
    topic: str
    what: str

    def __str__(self) -> str:
        return f"frame {self.frame} (stamp {self.stamp_ns}) {self.topic}: {self.what}"


@dataclass
class Report:
    compared: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def load_outputs(path: Path) -> dict[str, dict[int, Message]]:
    """Output messages of a recording by topic and stamp."""
    out: dict[str, dict[int, Message]] = {t: {} for t in OUTPUT_TOPICS}
    reader = RecordingReader(path)
    for rec in reader.messages():
        if rec.channel.lossless and rec.channel.bus_topic in out:
            msg = rec.decode()
            out[rec.channel.bus_topic][msg.stamp_ns] = msg
    return out


def _check_array(
    name: str, a: np.ndarray, b: np.ndarray, tol: float, rel: bool = False
) -> str | None:
    if a.shape != b.shape:
        return f"{name}: shape {list(a.shape)} vs reference {list(b.shape)}"
    if not a.size:
        return None
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if rel:
        diff = diff / np.maximum(np.abs(b.astype(np.float64)), 1e-6)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    if diff[worst] > tol:
        where = f"object {worst[0]}" if diff.ndim else ""
        return (
            f"{name} {where}: {a[worst]:.4g} vs reference {b[worst]:.4g} "
            f"(off by {diff[worst]:.3g}{' relative' if rel else ''}, tolerance {tol})"
        )
    return None


def compare_message(msg: Message, ref: Message, tol: Tolerances) -> list[str]:
    """Field-by-field differences beyond tolerance; timing fields ignored."""
    problems: list[str] = []
    if msg.valid != ref.valid:
        problems.append(f"valid {msg.valid} vs reference {ref.valid}")
    if isinstance(msg, Detections) and isinstance(ref, Detections):
        if len(msg.scores) != len(ref.scores):
            return [*problems, f"{len(msg.scores)} detections vs {len(ref.scores)} in reference"]
        if not np.array_equal(msg.class_ids, ref.class_ids):
            problems.append("class ids differ")
        checks = [
            _check_array("box", msg.boxes_xyxy, ref.boxes_xyxy, tol.box_px),
            _check_array("score", msg.scores, ref.scores, tol.score),
            _check_array("depth", msg.depth_m, ref.depth_m, tol.object_depth_rel, rel=True),
        ]
    elif isinstance(msg, DepthMap) and isinstance(ref, DepthMap):
        if msg.depth_m.shape != ref.depth_m.shape:
            return [*problems, f"depth map {msg.depth_m.shape} vs {ref.depth_m.shape}"]
        a, b = msg.depth_m.astype(np.float64), ref.depth_m.astype(np.float64)
        valid = b > 0
        err = float(np.median(np.abs(a[valid] - b[valid]) / b[valid])) if valid.any() else 0.0
        checks = [
            f"depth map: median relative difference {err:.3g} (tolerance {tol.depth_map_rel})"
            if err > tol.depth_map_rel
            else None
        ]
    elif isinstance(msg, TrackedObjects) and isinstance(ref, TrackedObjects):
        if not np.array_equal(msg.ids, ref.ids):
            return [*problems, f"track ids {msg.ids.tolist()} vs reference {ref.ids.tolist()}"]
        if not np.array_equal(msg.states, ref.states):
            problems.append(f"states {msg.states.tolist()} vs {ref.states.tolist()}")
        if not np.array_equal(msg.class_ids, ref.class_ids):
            problems.append("track classes differ")
        checks = [
            _check_array("track box", msg.boxes_xyxy, ref.boxes_xyxy, tol.box_px),
            _check_array("position", msg.position_m, ref.position_m, tol.position_m),
            _check_array("velocity", msg.velocity_mps, ref.velocity_mps, tol.velocity_mps),
            _check_array(
                "covariance",
                np.diagonal(msg.covariance, axis1=1, axis2=2),
                np.diagonal(ref.covariance, axis1=1, axis2=2),
                tol.covariance_rel,
                rel=True,
            ),
        ]
    else:
        return [f"type {msg.TYPE} vs reference {ref.TYPE}"]
    return problems + [c for c in checks if c]


def compare(
    outputs: dict[str, dict[int, Message]],
    refs: dict[str, dict[int, Message]],
    tol: Tolerances | None = None,
) -> Report:
    tol = tol or Tolerances()
    report = Report()
    stamps = sorted(set().union(*(r.keys() for r in refs.values())))
    frame = {s: i for i, s in enumerate(stamps)}
    for topic in OUTPUT_TOPICS:
        ours, theirs = outputs.get(topic, {}), refs.get(topic, {})
        for stamp in sorted(set(ours) | set(theirs)):
            n = frame.get(stamp, -1)
            if stamp not in ours:
                report.differences.append(Difference(stamp, n, topic, "missing in this run"))
                continue
            if stamp not in theirs:
                report.differences.append(Difference(stamp, n, topic, "not in the references"))
                continue
            report.compared[topic] = report.compared.get(topic, 0) + 1
            for problem in compare_message(ours[stamp], theirs[stamp], tol):
                report.differences.append(Difference(stamp, n, topic, problem))
    return report


def run_stack(
    drive: Path,
    output: Path,
    checkpoint: str = "",
    timeout_s: float = 600.0,
    log: Path | None = None,
) -> None:
    """Replay ``drive`` in lockstep through detector and tracker; record their outputs."""
    no_rates = {"expected_rates": {t: 0.0 for t in ("camera/frames", *OUTPUT_TOPICS)}}
    launch = {
        "nodes": [
            {
                "name": "detector",
                "node": "detector",
                "params": {"checkpoint": checkpoint, "threads": 1, "node": no_rates},
            },
            {"name": "tracker", "node": "tracker", "params": {"node": no_rates}},
            {
                "name": "recorder",
                "node": "recorder",
                "params": {
                    "output": str(output),
                    "overwrite": True,
                    "views": False,
                    "topics": list(OUTPUT_TOPICS),
                },
            },
            {
                "name": "player",
                "node": "player",
                "exit_on_finish": True,
                "params": {
                    "files": [str(drive)],
                    "topics": ["camera/frames", "camera/info"],
                    "lockstep": True,
                    "lockstep_timeout_s": 60.0,
                    "wait_nodes": ["detector", "tracker", "recorder"],
                },
            },
        ]
    }
    with tempfile.TemporaryDirectory() as tmp:
        launch_file = Path(tmp) / "replay_test.yaml"
        launch_file.write_text(yaml.safe_dump(launch))
        env = {**os.environ, "PERCEPTION_NAMESPACE": f"replaytest{os.getpid()}"}
        with open(log or os.devnull, "wb") as sink:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "perception.cli",
                    "launch",
                    str(launch_file),
                    "--table-period",
                    "0",
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
    if result.returncode != 0 or not output.is_file():
        hint = f" (log: {log})" if log else ""
        raise UserError(f"the replay through the stack failed, exit {result.returncode}{hint}")


def summary_line(report: Report) -> str:
    counts = ", ".join(f"{t} {n}" for t, n in sorted(report.compared.items()))
    verdict = "OK" if report.ok else f"{len(report.differences)} differences"
    return f"replay-test: compared {counts or 'nothing'}: {verdict}"


def format_report(report: Report, limit: int = 40) -> str:
    lines = [str(d) for d in report.differences[:limit]]
    if len(report.differences) > limit:
        lines.append(f"... and {len(report.differences) - limit} more")
    lines.append(summary_line(report))
    return "\n".join(lines)


def tolerances_from(path: str | None) -> Tolerances:
    if not path:
        return Tolerances()
    from perception.config import from_dict

    try:
        data: Any = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"tolerances file {path}: {exc}") from None
    return from_dict(Tolerances, data, where=Path(path).name)
