"""`perception play FILE...`: publish recordings as the live topics, like `ros2 bag play`."""

from __future__ import annotations

import argparse

from perception.commands.record import add_bus_arguments, bus_from_args
from perception.node import NodeConfig

EPILOG = """\
examples:
  perception play run1.mcap                       real time, every channel but status
  perception play run1.mcap --rate 0.5 --loop --start 10
  perception play drive.mcap --topics camera/frames camera/info
  perception play drive.mcap --lockstep --wait-nodes detector tracker
      every frame waits for the tracker's answer with its stamp: a deterministic replay

Messages go out with every field and buffer as recorded; seq and mono_ns are the player's.
The player exits 0 at the end (launch files: exit_on_finish: true).
"""


def cmd_play(args: argparse.Namespace) -> int:
    from nodes.player import PlayerConfig, run

    config = PlayerConfig(
        node=NodeConfig(name=args.name, bus=bus_from_args(args), log_level=args.log_level),
        files=list(args.files),
        rate=args.rate,
        loop=args.loop,
        start_s=args.start,
        topics=list(args.topics or []),
        lockstep=args.lockstep,
        lockstep_topic=args.lockstep_topic,
        lockstep_gate=args.lockstep_gate,
        lockstep_timeout_s=args.lockstep_timeout,
        wait_subscribers_s=args.wait_subscribers,
        wait_nodes=list(args.wait_nodes or []),
        wait_nodes_timeout_s=args.wait_nodes_timeout,
    )
    return run(config)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "play",
        help="replay recordings on the bus",
        description="Publish the lossless channels of MCAP recordings as the live topics, "
        "paced by their recorded stamps at --rate times real time, or in lockstep with the "
        "stack. Runs the player node in the foreground.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings, played in order")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor, 0.1 to 10")
    p.add_argument("--loop", action="store_true", help="start over at the end, forever")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="skip the first S s")
    p.add_argument(
        "--topics",
        nargs="+",
        metavar="TOPIC",
        help="play only these (TOPIC or TOPIC@INSTANCE); default: all but status",
    )
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="after each frame wait for the stack's answer (a message on --lockstep-topic "
        "with the frame's stamp) instead of following the clock",
    )
    p.add_argument(
        "--lockstep-topic",
        default="perception/tracks",
        help="the answer to wait for, TOPIC[@INSTANCE] (never played itself)",
    )
    p.add_argument(
        "--lockstep-gate",
        default="camera/frames",
        help="the topic whose messages wait for an answer",
    )
    p.add_argument(
        "--lockstep-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="give up on an answer after S seconds and go on",
    )
    p.add_argument(
        "--wait-subscribers",
        type=float,
        default=1.5,
        metavar="S",
        help="pause S seconds before the first message so subscribers connect (ZeroMQ drops "
        "what is sent before; a waiting subscriber retries at intervals of up to 1 s)",
    )
    p.add_argument(
        "--wait-nodes",
        nargs="+",
        metavar="NODE",
        help="first wait until these nodes publish a status (they are up and subscribed)",
    )
    p.add_argument(
        "--wait-nodes-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="fail when a node of --wait-nodes is not up within S seconds",
    )
    p.add_argument("--name", default="player", help="node name")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    add_bus_arguments(p)
    p.set_defaults(func=cmd_play)
