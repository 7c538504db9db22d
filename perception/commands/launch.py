"""`perception launch FILE`: start, watch and restart the nodes of a launch file."""

from __future__ import annotations

import argparse
import sys

from perception.launcher import Launcher, LaunchFile, apply_overrides
from perception.logs import setup_logging
from perception.paths import resolve_data_path


def cmd_launch(args: argparse.Namespace) -> int:
    setup_logging("launch", args.log_level)
    launch = LaunchFile.load(resolve_data_path(args.file))
    apply_overrides(launch, args.set)
    period = args.table_period if args.table_period >= 0 else (2.0 if sys.stdout.isatty() else 10.0)
    launcher = Launcher(launch, namespace=args.namespace or None, table_period_s=period)
    return launcher.run(duration_s=args.duration)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "launch",
        help="run the nodes of a launch file under supervision",
        description=__doc__ + " Crashed nodes restart with back-off; a crash-looping node is "
        "given up on; Ctrl-C stops the nodes in launch-file order, each after the ones before it "
        "exited, so each finishes what its upstream sent (SIGINT, then SIGTERM, then SIGKILL; a "
        "second Ctrl-C skips the waiting). Exits non-zero when a required node failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="launch file (YAML), e.g. launch/demo.yaml")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    p.add_argument("--namespace", default="", help="bus namespace (default: file's, or env)")
    p.add_argument(
        "--table-period",
        type=float,
        default=-1.0,
        help="seconds between status tables (0: only at the end; default 2 on a terminal, else 10)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a node parameter (YAML value), e.g. camera.source=device:0; repeatable",
    )
    p.add_argument("--log-level", default="INFO", help="launcher log level")
    p.set_defaults(func=cmd_launch)
