"""`perception render FILE -o out.mp4`: a review video of a recording."""

from __future__ import annotations

import argparse


def cmd_render(args: argparse.Namespace) -> int:
    from perception.recording.render import RenderOptions, render

    options = RenderOptions(
        camera=args.camera,
        fps=args.fps,
        depth=not args.no_depth,
        max_depth_m=args.max_depth,
        max_frames=args.max_frames,
    )
    result = render(args.file, args.output, options)
    print(
        f"wrote {result.frames} frames ({result.width}x{result.height}, {result.fps:.2f} fps, "
        f"{result.codec}) to {result.path}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="render a recording to a review video",
        description="Draw each recorded frame with its detections (thin boxes: class, score, "
        "depth) and tracks (thick boxes: id, class, ground distance, speed), matched by "
        "stamp_ns, with the depth map as a colour image beside it (near warm, far cool, "
        "unknown black), into a video (mp4v; MJPG .avi if mp4v is unavailable).",
    )
    p.add_argument("file", help="MCAP recording")
    p.add_argument("-o", "--output", required=True, help="output video, e.g. review.mp4")
    p.add_argument("--camera", default="", help="which camera (default: the first)")
    p.add_argument("--fps", type=float, default=0.0, help="video rate (default: the frames')")
    p.add_argument("--no-depth", action="store_true", help="frames only, no depth panel")
    p.add_argument(
        "--max-depth", type=float, default=80.0, metavar="M", help="far end of the depth colours"
    )
    p.add_argument("--max-frames", type=int, default=0, help="render at most N frames")
    p.set_defaults(func=cmd_render)
