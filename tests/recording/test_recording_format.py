"""MCAP files of drives: lossless framing, writer and reader, cut and foreign files, splitting,
and `perception info`."""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path

import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader
from rec_helpers import drive_messages, status_message, write_recording

from perception.bus.codec import encode
from perception.commands import info as info_command
from perception.errors import UserError
from perception.msgs import CameraFrame
from perception.recording.lossless import PayloadError, pack_frames, unpack_frames
from perception.recording.mcap_io import (
    RecordingReader,
    RecordingWriter,
    WriterOptions,
    lossless_channel,
    read_all,
)
from perception.recording.summary import summarize


def test_frames_round_trip_and_bad_payloads() -> None:
    frames = [b"header", b"", bytes(range(256)) * 3, memoryview(np.arange(5, dtype="<f4"))]
    packed = pack_frames(frames)
    assert struct.unpack_from("<I", packed)[0] == 4
    back = unpack_frames(packed)
    assert [bytes(f) for f in back] == [bytes(memoryview(f).cast("B")) for f in frames]
    for bad in (
        b"",
        b"\x00\x00\x00\x00",
        packed[:-1],
        packed + b"x",
        b"\xff\xff\xff\xff" + b"0" * 8,
    ):
        with pytest.raises(PayloadError):
            unpack_frames(bad)


def test_lossless_channel_schema_describes_the_type() -> None:
    spec = lossless_channel("status@camera")
    assert spec.topic == "status@camera" and spec.message_encoding == "perception-msgpack"
    doc = json.loads(spec.schema_data)
    assert doc["type"] == "NodeStatus" and doc["version"] == 1 and doc["topic"] == "status"
    assert dict(spec.metadata)["instance"] == "camera"
    frames = json.loads(lossless_channel("camera/frames").schema_data)
    assert frames["buffers"][0]["name"] == "image" and frames["buffers"][0]["dtype"] == "uint8"
    assert {f["name"] for f in frames["fields"]} == {"camera", "encoding", "width", "height"}


def _drive(tmp_path: Path, n: int = 20) -> tuple[Path, list]:
    msgs = drive_messages(n)
    path = tmp_path / "drive.mcap"
    write_recording(path, msgs)
    return path, msgs


def test_complete_file_reads_back_exactly_with_the_official_reader(tmp_path: Path) -> None:
    path, msgs = _drive(tmp_path)
    reader = RecordingReader(path)
    got = list(reader.messages({k for k, _ in msgs}))
    assert reader.complete and reader.stop_reason == ""
    assert len(got) == len(msgs)
    for rec, (key, msg) in zip(got, msgs, strict=True):
        assert rec.channel.topic == key and rec.publish_time_ns == msg.stamp_ns
        assert [bytes(f) for f in rec.frames()] == [
            bytes(memoryview(f).cast("B")) for f in encode(key, msg)[1:]
        ]
    # the official reader agrees (summary, index and chunk CRCs)
    with open(path, "rb") as f:
        official = make_reader(f, validate_crcs=True)
        summary = official.get_summary()
        assert summary is not None and summary.chunk_indexes and summary.statistics
        assert summary.statistics.message_count == len(read_all(path))
        chunk = summary.chunk_indexes[0]
        assert chunk.compression == "zstd"
        topics = [ch.topic for _, ch, _ in official.iter_messages(topics=["camera/frames"])]
    assert topics == ["camera/frames"] * 20


def test_cut_files_are_read_up_to_their_last_complete_chunk(tmp_path: Path) -> None:
    msgs = drive_messages(40)
    path = tmp_path / "small_chunks.mcap"
    with RecordingWriter(path, WriterOptions(chunk_size_bytes=20_000)) as writer:
        for seq, (key, msg) in enumerate(msgs):
            writer.write_frames(key, encode(key, msg)[1:], msg.stamp_ns, msg.stamp_ns, seq)
    data = path.read_bytes()
    full = len(read_all(path))
    counts = []
    for cut in (len(data) - 1, len(data) * 3 // 4, len(data) // 2, len(data) // 4, 300, 8):
        cut_path = tmp_path / f"cut{cut}.mcap"
        cut_path.write_bytes(data[:cut])
        reader = RecordingReader(cut_path)
        got = list(reader.messages())
        assert reader.complete is False and "cut short" in reader.stop_reason
        for rec in got:  # whatever survived decodes into valid messages
            rec.decode()
        counts.append(len(got))
        assert summarize(cut_path).complete is False
    assert counts == sorted(counts, reverse=True) and counts[0] < full + 1 and counts[-1] == 0
    assert counts[2] > 0  # half the file holds messages


def test_corrupt_chunk_stops_the_scan_with_a_reason(tmp_path: Path) -> None:
    path, _ = _drive(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = os.urandom(64)
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    reader = RecordingReader(bad)
    list(reader.messages())
    assert reader.complete is False and reader.stop_reason


@pytest.mark.parametrize("content", [b"", b"hello world, not mcap", os.urandom(4096)])
def test_foreign_files_are_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.mcap"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not an MCAP file"):
        RecordingReader(path)
    with pytest.raises(UserError, match="does not exist"):
        RecordingReader(tmp_path / "missing.mcap")
    with pytest.raises(UserError, match="not a file"):
        RecordingReader(tmp_path)


def test_writer_refuses_to_overwrite_and_adds_the_suffix(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "run1") as w:
        assert w.path == tmp_path / "run1.mcap"
    with pytest.raises(UserError, match="exists"):
        RecordingWriter(tmp_path / "run1.mcap")
    RecordingWriter(tmp_path / "run1.mcap", WriterOptions(overwrite=True)).close()


def _frame(i: int) -> CameraFrame:
    return CameraFrame(
        stamp_ns=10**18 + i * 10**8,
        frame_id="f",
        camera="c",
        width=64,
        height=32,
        image=np.random.default_rng(i).integers(0, 255, (32, 64, 3), dtype=np.uint8),
    )


@pytest.mark.parametrize("split", ["size", "duration"])
def test_splitting_writes_a_series_of_complete_files(tmp_path: Path, split: str) -> None:
    options = (
        WriterOptions(split_size_bytes=20_000, chunk_size_bytes=5_000)
        if split == "size"
        else WriterOptions(split_duration_s=0.5)
    )
    writer = RecordingWriter(tmp_path / "long.mcap", options)
    for i in range(30):
        msg = _frame(i)
        writer.write_frames(
            "camera/frames", encode("camera/frames", msg)[1:], msg.stamp_ns, msg.stamp_ns, i
        )
    files = writer.close()
    assert [f.name for f in files[:2]] == ["long_0.mcap", "long_1.mcap"] and len(files) >= 3
    stamps = []
    for f in files:
        reader = RecordingReader(f)
        recs = list(reader.messages())
        assert reader.complete and recs  # each part stands alone: its own schema and channel
        stamps += [r.decode().stamp_ns for r in recs]
        if split == "duration":
            assert recs[-1].log_time_ns - recs[0].log_time_ns < 0.5e9
    assert stamps == [_frame(i).stamp_ns for i in range(30)]


def _info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    info_command.register(parser.add_subparsers())
    args = parser.parse_args(["info", *argv])
    return int(args.func(args))


def test_info_lists_channels_counts_rates_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _drive(tmp_path, 21)
    assert _info([str(path)]) == 0
    text = capsys.readouterr().out
    assert "mcap, complete" in text and "Duration:          2.030 s" in text
    assert "camera/frames" in text and "/view/front/image" in text and "10.00 Hz" in text
    assert _info([str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    frames = next(c for c in doc["channels"] if c["topic"] == "camera/frames")
    assert (frames["count"], frames["type"], frames["lossless"]) == (21, "CameraFrame", True)
    assert frames["rate_hz"] == pytest.approx(10.0)
    assert doc["complete"] and doc["duration_s"] == pytest.approx(2.03)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert _info([str(cut), "--strict"]) == 1
    assert "INCOMPLETE" in capsys.readouterr().out
    (tmp_path / "x.txt").write_text("plain text")
    with pytest.raises(UserError, match="not an MCAP file"):
        _info([str(tmp_path / "x.txt")])


def test_status_channels_keep_maps_and_floats_exactly(tmp_path: Path) -> None:
    msg = status_message(123)
    path = tmp_path / "s.mcap"
    write_recording(path, [("status@fake", msg)], views=False)
    (rec,) = read_all(path)
    header = msgpack.unpackb(bytes(rec.frames()[0]))
    assert header["fields"]["uptime_s"] == 1.5 and header["fields"]["inputs"] == msg.inputs
    assert rec.channel.instance == "fake" and rec.decode().counters == {"x": 1}
