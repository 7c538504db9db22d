"""The `perception` command: every tool of the stack, each with --help.

Subcommands live in perception/commands/ (one module each, exposing ``register``); benchmarks
in perception/benchmarks/ (``configure`` + ``run``). Heavy imports (torch) happen inside the
handlers so that `perception --help` and the bus tools start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from perception.errors import UserError

COMMAND_MODULES = (
    "perception.commands.launch",
    "perception.commands.run",
    "perception.commands.topic",
    "perception.commands.bench",
    "perception.commands.record",
    "perception.commands.play",
    "perception.commands.info",
    "perception.commands.importer",
    "perception.commands.render",
    "perception.commands.demo",
    "perception.commands.synth",
    "perception.commands.calibrate",
    "perception.commands.export",
    "perception.commands.weights",
    "perception.commands.replay_test",
    "perception.commands.train",
    "perception.commands.evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception",
        description="Camera perception stack: nodes over ZeroMQ for detection, depth and tracking.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `run NODE ...` and `bench NAME ...` hand every later argument to the node's or the
    # benchmark's own parser (its --help too), importing only that one module.
    if argv[:1] in (["run"], ["bench"]) and len(argv) > 1 and not argv[1].startswith("-"):
        from perception.commands.bench import run_bench
        from perception.commands.run import run_node

        try:
            return (run_node if argv[0] == "run" else run_bench)(argv[1:])
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `perception info x | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
