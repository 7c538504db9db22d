"""`perception synth`: render a synthetic drive to a folder in KITTI layout.

    perception synth --seed 7 --frames 300 -o drives/seed7

The folder holds image_2/ (PNG frames), depth/ (16-bit PNG, metres x 256, 0 = no depth),
label_2/ (KITTI tracking lines with track ids), calib.txt, timestamps.txt (KITTI raw style),
camera.yaml and drive.json; docs/synthetic.md describes it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from perception.errors import UserError

DEFAULT_CALIBRATION = "calibration/synthetic_front.yaml"

DESCRIPTION = """\
Render a synthetic drive with exact ground truth and write it in KITTI layout.

The world (street layout, traffic, lighting, looks) is drawn from the seed: the same seed,
camera and options always give the same frames, bit for bit. Frame i is captured at i / fps
seconds. The camera comes from a ROS camera_info YAML file with an extrinsics block (its lens
distortion is ignored: frames are rendered as the ideal pinhole image of K); --width/--height
render it at another resolution with the intrinsics scaled to match.

Output (docs/synthetic.md): image_2/NNNNNN.png, depth/NNNNNN.png (uint16 metres x 256,
0 = sky or beyond far_m), label_2/NNNNNN.txt (KITTI tracking lines: frame track_id type
truncated occluded alpha box dims location rotation_y; DontCare lines for objects too small
to label), calib.txt, timestamps.txt, camera.yaml, drive.json."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="render a synthetic drive with ground truth to a KITTI-layout folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seed",
        type=int,
        required=True,
        help="seed of the drive: street, traffic, lighting and looks all follow from it",
    )
    p.add_argument("--frames", type=int, required=True, help="number of frames to write")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DRIVE",
        help="output folder (created; must be empty unless --overwrite)",
    )
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the drive (default: 10)")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        metavar="FRAME",
        help="index of the first frame (default: 0); files are numbered by index",
    )
    p.add_argument(
        "--calibration",
        default=DEFAULT_CALIBRATION,
        metavar="FILE",
        help=f"camera calibration YAML (default: {DEFAULT_CALIBRATION})",
    )
    p.add_argument(
        "--width",
        type=int,
        help="render at this width (intrinsics scaled; "
        "the height follows the aspect ratio unless --height is given)",
    )
    p.add_argument("--height", type=int, help="render at this height (intrinsics scaled)")
    p.add_argument(
        "--density",
        type=float,
        default=1.0,
        help="traffic density multiplier (default: 1; 0 = an empty street)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the frames of an existing output folder"
    )
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from perception.camera import CameraModel
    from perception.data.drive import DriveWriter
    from perception.paths import resolve_data_path
    from perception.synth import DriveConfig, SyntheticDrive
    from perception.synth.config import TrafficConfig

    if args.frames <= 0:
        raise UserError(f"--frames must be positive, got {args.frames}")
    if args.start < 0:
        raise UserError(f"--start must be >= 0, got {args.start}")
    if not args.fps > 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    camera = CameraModel.load(resolve_data_path(args.calibration))
    if args.width is not None or args.height is not None:
        w, h = args.width, args.height
        if (w is not None and w <= 0) or (h is not None and h <= 0):
            raise UserError("--width and --height must be positive")
        if w is None:
            w = round(camera.width * h / camera.height)
        if h is None:
            h = round(camera.height * w / camera.width)
        camera = camera.scaled(w, h)
    config = DriveConfig(fps=args.fps, traffic=TrafficConfig(density=args.density))
    drive = SyntheticDrive(args.seed, camera, config)
    writer = DriveWriter(
        Path(args.output),
        camera,
        fps=args.fps,
        seed=args.seed,
        start_frame=args.start,
        overwrite=args.overwrite,
        extra={
            "generator": "perception.synth",
            "density": args.density,
            "calibration": str(args.calibration),
        },
    )
    t0 = time.perf_counter()
    frames = range(args.start, args.start + args.frames)
    for i in tqdm(frames, desc="synth", unit="frame", disable=args.no_progress):
        writer.write(drive.frame(i))
    writer.close()
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.frames} frames to {args.output} ({args.frames / elapsed:.1f} frames/s)")
    return 0
