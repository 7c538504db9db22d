"""`perception run NODE [PARAMS...]`: start one node in the foreground."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from perception.errors import UserError

# node name -> module with main(argv) -> int
NODES = {
    "camera": "nodes.camera",
    "monitor": "nodes.monitor",
    "detector": "nodes.detector",
    "tracker": "nodes.tracker",
    "recorder": "nodes.recorder",
    "player": "nodes.player",
    "foxglove_bridge": "nodes.foxglove_bridge",
}


def run_node(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: perception run NODE [--help] [PARAMS...]\n\nnodes: " + ", ".join(NODES))
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    if name not in NODES:
        raise UserError(f"unknown node {name!r}; nodes: {', '.join(NODES)}")
    module = importlib.import_module(NODES[name])
    return int(module.main(rest))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run one node in the foreground",
        description=f"Run one node. Nodes: {', '.join(NODES)}. "
        "`perception run NODE --help` lists its parameters.",
    )
    p.add_argument("node", choices=sorted(NODES), help="which node")
    p.add_argument("params", nargs=argparse.REMAINDER, help="the node's parameters")
    p.set_defaults(func=lambda args: run_node([args.node, *args.params]))
