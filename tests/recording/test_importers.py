"""Importers: a video, image folders (KITTI raw, a synthetic-drive layout) and ROS 1/2 bags written
by the bag library become recordings that replay on the bus; bad sources are one clear error."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rec_helpers import CALIBRATION, collect, frame_image, node_command
from rosbags.typesys import Stores, get_typestore

from perception.bus import BusConfig, QueuePolicy, Subscriber
from perception.errors import UserError
from perception.msgs import CameraFrame, CameraInfo
from perception.recording.importers import ImportOptions, import_source
from perception.recording.mcap_io import RecordingReader, read_all

N_VIDEO, N_FOLDER, N_BAG = 12, 6, 5
BAG_T0 = 1_700_000_000_123_456_789


def _frames(path: Path) -> list[CameraFrame]:
    return [r.decode() for r in read_all(path, {"camera/frames"})]  # type: ignore[misc]


def _infos(path: Path) -> list[CameraInfo]:
    return [r.decode() for r in read_all(path, {"camera/info"})]  # type: ignore[misc]


def _video(path: Path) -> list[np.ndarray]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (160, 96))
    for i in range(N_VIDEO):
        writer.write(frame_image(i))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        decoded.append(image)
    return decoded


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three kinds of source, imported once for the tests below."""
    d = tmp_path_factory.mktemp("imports")
    out = {}
    _video(d / "clip.avi")
    out["video"] = d / "video.mcap"
    import_source(
        d / "clip.avi",
        out["video"],
        ImportOptions(calibration=str(CALIBRATION), start_time_s=1_600_000_000.0),
    )
    kitti = _kitti_raw(d / "2011_09_26_drive_0001_sync")
    out["folder"] = d / "folder.mcap"
    import_source(kitti, out["folder"])
    out["bag"] = d / "bag.mcap"
    import_source(_ros2_bag(d / "bag2"), out["bag"], ImportOptions(image_topic="/cam/image_raw"))
    return out


def test_video_import(imported: dict[str, Path], tmp_path: Path) -> None:
    expected = _video(tmp_path / "again.avi")  # what OpenCV decodes from the same file
    frames = _frames(imported["video"])
    assert len(frames) == N_VIDEO
    stamps = np.array([f.stamp_ns for f in frames])
    assert stamps[0] == 1_600_000_000 * 10**9
    np.testing.assert_allclose(np.diff(stamps), 1e9 / 15, atol=1)
    for f, image in zip(frames, expected, strict=True):
        assert (f.encoding, f.width, f.height, f.camera) == ("bgr8", 160, 96, "front")
        np.testing.assert_array_equal(f.image, image)
    (info,) = _infos(imported["video"])  # 0.73 s of drive: one calibration
    assert info.stamp_ns == stamps[0] and info.frame_id == frames[0].frame_id == "front_optical"
    reader = RecordingReader(imported["video"])
    assert "/view/front/image" in {c.topic for c in reader.channels()}


def _kitti_raw(drive: Path) -> Path:
    data = drive / "image_02" / "data"
    data.mkdir(parents=True)
    for i in range(N_FOLDER):
        cv2.imwrite(str(data / f"{i:010d}.png"), frame_image(50 + i))
    lines = [f"2011-09-26 13:02:25.{i * 103_512_345:09d}" for i in range(N_FOLDER)]
    (drive / "image_02" / "timestamps.txt").write_text("\n".join(lines) + "\n")
    (drive / "image_03" / "data").mkdir(parents=True)  # the right camera: not imported
    cv2.imwrite(str(drive / "image_03" / "data" / "0.png"), frame_image(0))
    return drive


def test_kitti_raw_folder_keeps_every_digit_of_its_stamps(imported: dict[str, Path]) -> None:
    frames = _frames(imported["folder"])
    assert len(frames) == N_FOLDER
    t0 = 1_317_042_145 * 10**9  # 2011-09-26 13:02:25 UTC
    assert [f.stamp_ns for f in frames] == [t0 + i * 103_512_345 for i in range(N_FOLDER)]
    for i, f in enumerate(frames):  # PNG: lossless
        np.testing.assert_array_equal(f.image, frame_image(50 + i))
    assert _infos(imported["folder"]) == []  # no calibration given or found


def test_synthetic_drive_layout(tmp_path: Path) -> None:
    """`perception synth` writes DRIVE/image_2/*.png, DRIVE/timestamps.txt (seconds) and
    DRIVE/camera.yaml, beside other image folders (depth maps)."""
    drive = tmp_path / "DRIVE"
    (drive / "image_2").mkdir(parents=True)
    (drive / "depth_2").mkdir()
    for i in range(4):
        cv2.imwrite(str(drive / "image_2" / f"{i:06d}.png"), frame_image(i))
        cv2.imwrite(str(drive / "depth_2" / f"{i:06d}.png"), np.full((96, 160), 2560, np.uint16))
    (drive / "timestamps.txt").write_text("".join(f"{0.1 * i:.6f}\n" for i in range(4)))
    (drive / "camera.yaml").write_text(CALIBRATION.read_text())
    out = tmp_path / "synth.mcap"
    result = import_source(drive, out, ImportOptions(camera="front"))
    assert result.frames == 4 and result.infos == 1 and result.notes == []
    frames = _frames(out)
    assert [f.stamp_ns for f in frames] == [i * 100_000_000 for i in range(4)]
    np.testing.assert_array_equal(frames[3].image, frame_image(3))
    assert _infos(out)[0].width == 640  # the drive's own calibration
    # any sorted folder plus a rate works too
    result = import_source(
        drive / "depth_2", tmp_path / "rate.mcap", ImportOptions(fps=4, start_time_s=10.0)
    )
    assert [f.stamp_ns for f in _frames(tmp_path / "rate.mcap")] == [
        10 * 10**9 + i * 250_000_000 for i in range(4)
    ]


def _ros_header(ts, stamp: int):
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    extra = {"seq": 0} if "seq" in Header.__dataclass_fields__ else {}  # ROS 1 headers count
    return Header(
        stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam_optical", **extra
    )


def _ros_messages(ts) -> list[tuple[str, str, int, object]]:
    """(topic, type, stamp, message): rgb8 images with padded rows, JPEGs, and CameraInfo."""
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Info = ts.types["sensor_msgs/msg/CameraInfo"]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    out = []
    for i in range(N_BAG):
        stamp = BAG_T0 + i * 50_000_000
        header = _ros_header(ts, stamp)
        rgb = cv2.cvtColor(frame_image(i), cv2.COLOR_BGR2RGB)
        padded = np.zeros((96, 160 * 3 + 8), np.uint8)
        padded[:, : 160 * 3] = rgb.reshape(96, -1)
        out.append(
            (
                "/cam/image_raw",
                Image.__msgtype__,
                stamp,
                Image(
                    header=header,
                    height=96,
                    width=160,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=160 * 3 + 8,
                    data=padded.ravel(),
                ),
            )
        )
        jpeg = cv2.imencode(".jpg", frame_image(i))[1].ravel()
        out.append(
            (
                "/cam/image_raw/compressed",
                Compressed.__msgtype__,
                stamp,
                Compressed(header=header, format="jpeg", data=jpeg),
            )
        )
        ros1 = "D" in Info.__dataclass_fields__  # ROS 1 spells the matrices in capitals
        matrices = {
            "d": np.array([0.01, 0.0, 0.0, 0.0, 0.0]),
            "k": np.array([100.0, 0, 79.5, 0, 100.0, 47.5, 0, 0, 1]),
            "r": np.eye(3).ravel(),
            "p": np.array([100.0, 0, 79.5, 0, 0, 100.0, 47.5, 0, 0, 0, 1, 0]),
        }
        info = Info(
            header=header,
            height=96,
            width=160,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
            **{(k.upper() if ros1 else k): v for k, v in matrices.items()},
        )
        out.append(("/cam/camera_info", Info.__msgtype__, stamp, info))
    return out


def _ros2_bag(path: Path) -> Path:
    from rosbags.rosbag2 import Writer

    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=8) as writer:
        conns = {}
        for topic, msgtype, stamp, msg in _ros_messages(ts):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], stamp, ts.serialize_cdr(msg, msgtype))
    return path


def _ros1_bag(path: Path) -> Path:
    from rosbags.rosbag1 import Writer

    ts = get_typestore(Stores.ROS1_NOETIC)
    with Writer(path) as writer:
        conns = {}
        for topic, msgtype, stamp, msg in _ros_messages(ts):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], stamp, ts.serialize_ros1(msg, msgtype))
    return path


def test_ros2_bag_import(imported: dict[str, Path]) -> None:
    frames = _frames(imported["bag"])
    assert [f.stamp_ns for f in frames] == [BAG_T0 + i * 50_000_000 for i in range(N_BAG)]
    for i, f in enumerate(frames):  # rgb8 with padded rows -> exact bgr8
        assert (f.encoding, f.frame_id) == ("bgr8", "cam_optical")
        np.testing.assert_array_equal(f.image, frame_image(i))
    (info,) = _infos(imported["bag"])
    assert info.K[0, 0] == 100.0 and info.D[0] == 0.01 and info.frame_id == "cam_optical"


def test_ros1_bag_and_compressed_images_pass_through(tmp_path: Path) -> None:
    bag = _ros1_bag(tmp_path / "drive.bag")
    with pytest.raises(UserError, match="several image topics"):
        import_source(bag, tmp_path / "x.mcap")
    out = tmp_path / "ros1.mcap"
    result = import_source(
        bag, out, ImportOptions(image_topic="/cam/image_raw/compressed", encoding="jpeg")
    )
    assert result.kind == "rosbag" and result.frames == N_BAG
    for i, f in enumerate(_frames(out)):  # the bag's JPEG bytes, unchanged
        assert f.encoding == "jpeg" and (f.width, f.height) == (160, 96)
        assert f.image.tobytes() == cv2.imencode(".jpg", frame_image(i))[1].tobytes()


def test_bad_sources_are_one_clear_error(tmp_path: Path) -> None:
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_bytes(os.urandom(3000))
    fake_bag = tmp_path / "drive.bag"
    fake_bag.write_bytes(b"#ROSBAG V2.0\n" + os.urandom(500))
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "000.png").write_bytes(b"not a png")
    cases = [
        (fake_video, "not a video OpenCV can decode"),
        (fake_bag, "not a readable ROS bag"),
        (empty, "holds no images"),
        (broken, "not an image OpenCV can read"),
        (tmp_path / "missing.avi", "does not exist"),
    ]
    for source, message in cases:
        with pytest.raises(UserError, match=message):
            import_source(source, tmp_path / "out.mcap")
        assert not (tmp_path / "out.mcap").exists()  # no half-written file left behind


def test_imported_drives_replay(imported: dict[str, Path], bus: BusConfig) -> None:
    """All three play, one after another, as camera/frames and camera/info on the bus."""
    sub = Subscriber("camera/frames", bus, policy=QueuePolicy.QUEUE)
    infos = Subscriber("camera/info", bus)
    files = [str(imported[k]) for k in ("video", "folder", "bag")]
    params = {"files": files, "rate": 4.0, "end_linger_s": 0.3}
    player = subprocess.Popen(
        node_command("player", params, bus),
        env={**os.environ, "PERCEPTION_NAMESPACE": bus.namespace},
        stderr=subprocess.PIPE,
    )
    got = []
    deadline = time.monotonic() + 30
    while player.poll() is None and time.monotonic() < deadline:
        got += [m for _, m in collect(sub, time.monotonic() + 0.2)]
    got += [m for _, m in collect(sub, time.monotonic() + 0.3)]
    info_frames = [m.frame_id for m in infos.receive()]
    sub.close()
    infos.close()
    _, err = player.communicate(timeout=10)
    assert player.returncode == 0, err.decode()
    expected = [f.stamp_ns for k in ("video", "folder", "bag") for f in _frames(imported[k])]
    assert [m.stamp_ns for m in got] == expected
    assert {"front_optical", "cam_optical"} <= set(info_frames)
