"""`perception import SOURCE -o drive.mcap`: a video, an image folder or a ROS bag as a drive."""

from __future__ import annotations

import argparse
import datetime as dt

from perception.errors import UserError

EPILOG = """\
sources:
  video file       anything OpenCV decodes (mp4, avi, mkv, ...), at its own rate or --fps
  image folder     sorted images; timestamps.txt beside them or one level up (KITTI raw
                   image_02/data, a synthetic drive's image_2), else --fps (default 10);
                   a folder without images but with one image sub-folder is fine too
  ROS 1 bag        FILE.bag
  ROS 2 bag        its folder (metadata.yaml), or its .db3/.mcap file
                   (sensor_msgs/Image or CompressedImage, optionally CameraInfo)

The result holds camera/frames (and camera/info with a calibration) like a recording, so
`perception play drive.mcap` replays it.
"""


def _start_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--start-time {text!r} is neither seconds nor an ISO date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def cmd_import(args: argparse.Namespace) -> int:
    from perception.recording.importers import ImportOptions, import_source

    options = ImportOptions(
        fps=args.fps,
        camera=args.camera,
        calibration=args.calibration,
        encoding=args.encoding,
        start_time_s=_start_time(args.start_time),
        image_topic=args.image_topic,
        info_topic=args.info_topic,
        max_frames=args.max_frames,
        views=not args.no_views,
        overwrite=args.overwrite,
    )
    result = import_source(args.source, args.output, options)
    span = (result.last_stamp_ns - result.first_stamp_ns) / 1e9
    print(
        f"imported {result.frames} frames ({span:.2f} s) and {result.infos} calibrations from "
        f"the {result.kind} {args.source} into {', '.join(str(f) for f in result.files)}"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="turn a video, image folder or ROS bag into a drive recording",
        description="Import a video file, an image folder or a ROS 1/2 bag (read without ROS) "
        "into an MCAP drive recording with the lossless camera/frames and camera/info "
        "channels the recorder writes, plus Foxglove view channels.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="video file, image folder, or ROS bag")
    p.add_argument("-o", "--output", required=True, help="output MCAP file")
    p.add_argument("--fps", type=float, default=0.0, help="frame rate (videos, image folders)")
    p.add_argument("--camera", default="", help="camera name (default: calibration's, or front)")
    p.add_argument(
        "--calibration",
        default="",
        metavar="FILE",
        help="ROS camera_info YAML (with extrinsics) or OpenCV calibration file; default: a "
        "camera.yaml near the images, or a bag's CameraInfo",
    )
    p.add_argument(
        "--encoding",
        choices=["bgr8", "jpeg"],
        default="bgr8",
        help="frames as raw BGR (lossless) or JPEG (compact; JPEG input passes through)",
    )
    p.add_argument(
        "--start-time",
        metavar="T",
        help="stamp of the first frame: seconds since the epoch or an ISO date-time (default: "
        "the timestamps file, a bag's stamps, or the file's modification time)",
    )
    p.add_argument("--image-topic", default="", help="bags: the image topic (if several)")
    p.add_argument("--info-topic", default="", help="bags: the CameraInfo topic (if several)")
    p.add_argument("--max-frames", type=int, default=0, help="import at most N frames")
    p.add_argument("--no-views", action="store_true", help="write no Foxglove view channels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_import)
