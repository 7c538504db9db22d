"""`perception calibrate`: camera intrinsics and distortion from chessboard images.

    perception calibrate shots/*.png --board 9x6 --square 0.025 -o calibration/front.yaml

Prints a table of per-image reprojection errors, lists the images where the board was not
found, and writes a ROS camera_info YAML file (plus an extrinsics block) that
:meth:`perception.camera.CameraModel.load` and ROS both read.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import cv2
import numpy as np

from perception.calibration import (
    Board,
    CalibrationLimits,
    CalibrationResult,
    Detection,
    calibrate,
    detect_views,
    expand_image_paths,
    preview_image,
)
from perception.camera import DISTORTION_MODELS, CameraModel
from perception.errors import UserError

DESCRIPTION = """\
Calibrate a camera from images of a chessboard.

Print a chessboard, glue it flat, and take 10-30 images at the camera's working resolution:
tilt the board 20-45 degrees in different directions and bring it near every edge and corner
of the image. The tool finds the inner corners, refuses view sets that cannot determine the
camera (too few views, all boards parallel, corners covering too little of the image), solves
intrinsics and distortion, prints the reprojection error of every image, and writes a ROS
camera_info YAML file. An RMS error below about 0.5 px is a good calibration; an image with a
much larger error than the others is usually a bad detection: remove it and run again."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera from chessboard images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    parser.set_defaults(func=handler)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="chessboard images (files, or directories whose images are all used)",
    )
    parser.add_argument(
        "--board",
        required=True,
        metavar="COLSxROWS",
        help="number of INNER corners per row and per column, e.g. 9x6 for a board of 10x7 squares",
    )
    parser.add_argument(
        "--square",
        required=True,
        type=float,
        metavar="METRES",
        help="side of one square in metres (sets the scale of the board poses only; the "
        "intrinsics do not depend on it)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE.yaml",
        help="calibration file to write (ROS camera_info layout), e.g. calibration/front.yaml",
    )
    parser.add_argument(
        "--model",
        choices=DISTORTION_MODELS,
        default="plumb_bob",
        help="distortion model: plumb_bob (5 coefficients, most lenses), rational_polynomial "
        "(8, wide-angle lenses), equidistant (4, fisheye lenses). Default: plumb_bob",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="camera name stored in the file (default: the output file's stem)",
    )
    parser.add_argument(
        "--extrinsics",
        metavar="FILE.yaml",
        default=None,
        help="copy the mounting pose (extrinsics block) from this calibration file; without it "
        "the camera sits at the vehicle origin with identity rotation (edit the file after)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.0,
        help="free scaling of the undistorted image stored as projection_matrix: 0 keeps only "
        "valid pixels (ROS default), 1 keeps every source pixel. Default: 0",
    )
    parser.add_argument(
        "--preview",
        metavar="OUT.png",
        default=None,
        help="write the first view with its corners beside its undistorted version",
    )
    defaults = CalibrationLimits()
    parser.add_argument(
        "--min-views",
        type=int,
        default=defaults.min_views,
        help=f"refuse with fewer views where the board was found (default {defaults.min_views})",
    )
    parser.add_argument(
        "--min-spread-deg",
        type=float,
        default=defaults.min_pose_spread_deg,
        help="refuse when the board orientations all lie within this angle of each other, "
        f"e.g. all fronto-parallel (default {defaults.min_pose_spread_deg:g})",
    )
    parser.add_argument(
        "--min-coverage",
        type=float,
        default=defaults.min_coverage,
        help="refuse when the corners cover less than this fraction of a 10x10 grid over the "
        f"image (default {defaults.min_coverage:g})",
    )


def _print_report(det: Detection, result: CalibrationResult | None) -> None:
    """The per-image table (errors once solved) and the images without a board."""
    names = [Path(v.name).name for v in det.views]
    width = max([len(n) for n in names] + [len("image")])
    print(f"{'image':<{width}}  corners  error_px")
    for i, (v, n) in enumerate(zip(det.views, names, strict=True)):
        err = f"{result.per_view_rms_px[i]:8.3f}" if result is not None else "       -"
        print(f"{n:<{width}}  {len(v.corners):7d}  {err}")
    if det.not_found:
        print(
            f"board not found in {len(det.not_found)} image(s): "
            + ", ".join(Path(p).name for p in det.not_found)
        )


def handler(args: argparse.Namespace) -> int:
    board = Board.parse(args.board, args.square)
    output = Path(args.output)
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise UserError(f"-o {output}: the calibration file must end in .yaml or .yml")
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha {args.alpha}: must be between 0 and 1")
    limits = CalibrationLimits(
        min_views=max(int(args.min_views), 3),
        min_pose_spread_deg=float(args.min_spread_deg),
        min_coverage=float(args.min_coverage),
    )
    extrinsics = CameraModel.load(args.extrinsics) if args.extrinsics else None
    paths = expand_image_paths(args.images)
    det = detect_views(paths, board)
    try:
        result = calibrate(
            det,
            board,
            model=args.model,
            name=args.name or output.stem,
            limits=limits,
            alpha=args.alpha,
        )
    except UserError:
        _print_report(det, None)
        raise
    cam = result.camera
    if extrinsics is not None:
        cam.T_vehicle_camera = extrinsics.T_vehicle_camera.copy()
        cam.frame_id = extrinsics.frame_id
    _print_report(det, result)
    K = cam.K
    std = result.intrinsics_std
    pm = (lambda i: f" +- {std[i]:.2f}") if std is not None else (lambda i: "")
    print(
        f"RMS reprojection error {result.rms_px:.3f} px over {len(det.views)} views "
        f"({len(det.views) * board.num_corners} corners)\n"
        f"fx {K[0, 0]:.2f}{pm(0)}  fy {K[1, 1]:.2f}{pm(1)}  "
        f"cx {K[0, 2]:.2f}{pm(2)}  cy {K[1, 2]:.2f}{pm(3)}  ({args.model})\n"
        f"distortion [{', '.join(f'{d:.5g}' for d in cam.D)}]\n"
        f"board tilts {np.min(result.geometry.tilts_deg):.0f}-"
        f"{np.max(result.geometry.tilts_deg):.0f} deg, orientation spread "
        f"{result.geometry.pose_spread_deg:.0f} deg, image coverage "
        f"{100 * result.geometry.coverage:.0f}%"
    )
    if result.rms_px > 1.0:
        print(
            "warning: RMS error above 1 px; look for images with a large error (bad detections, "
            "motion blur, a board that is not flat) and calibrate again without them"
        )
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    comment = (
        f"Calibrated by `perception calibrate` on {stamp}: {len(det.views)} views of a "
        f"{board.cols}x{board.rows} chessboard ({board.square_m:g} m squares), "
        f"RMS reprojection error {result.rms_px:.3f} px."
    )
    cam.save(output, comment=comment)
    print(f"wrote {output}")
    if args.preview:
        first = det.views[0]
        image = cv2.imread(first.name, cv2.IMREAD_COLOR)
        if image is None:
            raise UserError(f"{first.name} could not be read again for the preview")
        preview = preview_image(image, cam, first.corners, board)
        Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.preview), preview):
            raise UserError(f"--preview {args.preview}: cannot write this image file")
        print(f"wrote {args.preview}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m perception.commands.calibrate`), same as the subcommand."""
    parser = argparse.ArgumentParser(
        prog="perception calibrate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
