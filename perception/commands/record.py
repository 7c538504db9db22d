"""`perception record -o FILE [TOPICS...]`: record bus topics to MCAP, like `ros2 bag record`."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bus import BusConfig
from perception.node import NodeConfig

EPILOG = """\
examples:
  perception record -o run1                      every topic (and on ipc every instance)
  perception record -o run1 camera/frames perception/tracks status@camera
  perception record -o long --split-duration 60  long_0.mcap, long_1.mcap, ... a minute each

Ctrl-C (SIGINT) or SIGTERM finishes the file with its summary and index. A recorder that is
killed or runs out of disk leaves a file readable up to its last complete chunk (at most about
--flush-period of data is lost). `perception info FILE` shows what a file holds.
"""


def add_bus_arguments(p: argparse.ArgumentParser) -> None:
    """The bus options every recording command shares (like `perception topic`)."""
    g = p.add_argument_group("bus")
    g.add_argument("--transport", choices=["ipc", "tcp"], default="ipc", help="bus transport")
    g.add_argument("--namespace", default="", help="bus namespace (default: $PERCEPTION_NAMESPACE)")
    g.add_argument("--host", default="127.0.0.1", help="tcp: the publishers' host")
    g.add_argument("--port-base", type=int, default=0, help="tcp: base port (0: from namespace)")


def bus_from_args(args: argparse.Namespace) -> BusConfig:
    kwargs: dict[str, Any] = {"transport": args.transport, "host": args.host}
    if args.namespace:
        kwargs["namespace"] = args.namespace
    if args.port_base:
        kwargs["port_base"] = args.port_base
    return BusConfig(**kwargs)


def cmd_record(args: argparse.Namespace) -> int:
    from nodes.recorder import RecorderConfig, run

    config = RecorderConfig(
        node=NodeConfig(name=args.name, bus=bus_from_args(args), log_level=args.log_level),
        output=args.output,
        topics=list(args.topics),
        overwrite=args.overwrite,
        duration_s=args.duration,
        split_size_mb=args.split_size,
        split_duration_s=args.split_duration,
        chunk_size_mb=args.chunk_size,
        compression=args.compression,
        flush_period_s=args.flush_period,
        views=not args.no_views,
        depth_encoding=args.depth_encoding,
    )
    return run(config)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record",
        help="record bus topics to an MCAP file",
        description="Record bus topics to MCAP: one lossless channel per bus channel (every "
        "frame of every message, byte for byte; log time = receive time, publish time = "
        "stamp_ns), chunked and zstd-compressed with a summary and index, plus Foxglove view "
        "channels (image, annotations, depth, 3D objects, calibration, transforms, points) so "
        "the file opens in Foxglove as it is. Runs the recorder node in the foreground.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "topics",
        nargs="*",
        metavar="TOPIC",
        help="TOPIC (every instance; on tcp only the default one) or TOPIC@INSTANCE, e.g. "
        "status@camera; none: every topic of the table",
    )
    p.add_argument("-o", "--output", required=True, help="output file ('.mcap' added if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    p.add_argument(
        "--split-size",
        type=float,
        default=0.0,
        metavar="MB",
        help="start a new file (NAME_0.mcap, NAME_1.mcap, ...) once one reaches MB megabytes",
    )
    p.add_argument(
        "--split-duration",
        type=float,
        default=0.0,
        metavar="S",
        help="start a new file every S seconds of recording",
    )
    p.add_argument("--no-views", action="store_true", help="write no Foxglove view channels")
    p.add_argument(
        "--depth-encoding",
        choices=["16UC1", "32FC1"],
        default="16UC1",
        help="depth view image: 16UC1 millimetres (compact) or 32FC1 metres (exact)",
    )
    p.add_argument("--compression", choices=["zstd", "lz4", "none"], default="zstd")
    p.add_argument("--chunk-size", type=float, default=4.0, metavar="MB", help="chunk size")
    p.add_argument(
        "--flush-period",
        type=float,
        default=1.0,
        metavar="S",
        help="close a chunk at least every S seconds: the most a crash can lose",
    )
    p.add_argument("--name", default="recorder", help="node name (its status is status@NAME)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    add_bus_arguments(p)
    p.set_defaults(func=cmd_record)
