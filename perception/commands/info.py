"""`perception info FILE...`: what a recording holds, like `ros2 bag info`."""

from __future__ import annotations

import argparse
import json

from perception.recording.summary import format_summary, summarize


def cmd_info(args: argparse.Namespace) -> int:
    summaries = [summarize(path) for path in args.files]
    if args.json:
        docs = [s.to_json() for s in summaries]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1))
    else:
        print("\n\n".join(format_summary(s) for s in summaries))
    return 0 if all(s.complete for s in summaries) or not args.strict else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="summarise recordings",
        description="Summarise MCAP recordings: size, whether the file is complete (a file cut "
        "short is read up to its last complete chunk and says so), duration, start and end, "
        "and per channel its type, message count, mean rate and size. Lossless bus channels "
        "and Foxglove view channels are listed apart.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="MCAP files")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a file is incomplete (cut short)"
    )
    p.set_defaults(func=cmd_info)
