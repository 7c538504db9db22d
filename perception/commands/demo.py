"""`perception demo`: the whole stack on the built-in drive, with a recording, video, summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.logs import setup_logging


def cmd_demo(args: argparse.Namespace) -> int:
    from perception.demo import DemoOptions, run_demo

    setup_logging("demo", args.log_level)
    return run_demo(
        DemoOptions(
            duration_s=args.duration,
            out_dir=Path(args.out),
            launch_file=args.launch,
            overrides=tuple(args.set),
            render=not args.no_render,
            quality=not args.no_quality,
            table_period_s=2.0 if sys.stdout.isatty() else 10.0,
        )
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole stack on the built-in synthetic drive",
        description="Runs launch/demo.yaml (camera on the synthetic drive, detector with the "
        "shipped network, tracker, recorder, live Foxglove view) as separate processes for a "
        "bounded time, then writes OUT/demo.mcap, OUT/review.mp4 and OUT/summary.json (frames, "
        "drops, rates, latency per stage and end to end, quality against the drive's ground "
        "truth). Needs no camera, GPU or display. Exits non-zero if any stage failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run the stack")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--launch", default="launch/demo.yaml", help="launch file to run")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a node parameter, e.g. camera.seed=3 or camera.source=drive.mp4",
    )
    p.add_argument("--no-render", action="store_true", help="skip the review video")
    p.add_argument("--no-quality", action="store_true", help="skip the ground-truth scoring")
    p.add_argument("--log-level", default="INFO", help="log level")
    p.set_defaults(func=cmd_demo)
