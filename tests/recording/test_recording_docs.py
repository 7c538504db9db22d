"""docs/recording.md: its plain-Python reader works on a real recording, and its framing example
is what the recorder writes."""

from __future__ import annotations

import contextlib
import io
import re
import struct
from pathlib import Path

import numpy as np
from rec_helpers import REPO, drive_messages, write_recording

from perception.msgs import Detections
from perception.recording.mcap_io import read_all

DOC = REPO / "docs" / "recording.md"


def test_plain_python_reader_of_the_doc(tmp_path: Path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (code,) = [b for b in blocks if "make_reader" in b]
    write_recording(tmp_path / "run1.mcap", drive_messages(3))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 3 * 4  # one info, then frames, detections, depth, tracks
    assert any(
        line.startswith("perception/detections Detections 1764000000100000000")
        and "'boxes_xyxy', 'class_ids', 'depth_m', 'scores'" in line
        for line in lines
    )


def test_framing_example_of_the_doc(tmp_path: Path) -> None:
    det = Detections(
        stamp_ns=1,
        boxes_xyxy=np.zeros((3, 4), np.float32),
        scores=np.zeros(3, np.float32),
        class_ids=np.zeros(3, np.int32),
        depth_m=np.zeros(3, np.float32),
        class_names=["car"],
    )
    write_recording(tmp_path / "d.mcap", [("perception/detections", det)], views=False)
    (rec,) = read_all(tmp_path / "d.mcap")
    assert rec.data[:4] == bytes.fromhex("05000000")
    assert struct.unpack_from("<5Q", rec.data, 4)[1:] == (48, 12, 12, 12)
