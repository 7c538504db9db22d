"""`perception bench NAME [OPTIONS]`: benchmarks, one JSON object a line.

A benchmark module exposes ``configure(parser)`` and ``run(args) -> int``; it is imported only
when it runs (several import torch), so `perception --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from perception.errors import UserError

# name -> (module, one-line description)
BENCHMARKS = {
    "bus": ("perception.benchmarks.bus", "bus latency/throughput against plain pyzmq"),
    "pipeline": ("perception.benchmarks.pipeline", "end-to-end latency of the launched stack"),
    "pipeline-floor": (
        "perception.benchmarks.pipeline_floor",
        "the pipeline's three hops in plain pyzmq, doing no work",
    ),
    "model": ("perception.benchmarks.model", "network speed per stage, params, GFLOPs"),
    "synth": ("perception.benchmarks.synth", "synthetic drive rendering speed"),
    "tracker": ("perception.benchmarks.tracker", "tracker update time with many objects"),
    "tracking-eval": (
        "perception.benchmarks.tracking_eval",
        "tracking quality (MOTA, IDF1) with a peer library",
    ),
}


def run_bench(argv: Sequence[str]) -> int:
    """Run ``argv[0]`` with the rest of ``argv`` as its options."""
    if not argv or argv[0] not in BENCHMARKS:
        name = argv[0] if argv else ""
        raise UserError(f"unknown benchmark {name!r}; benchmarks: {', '.join(BENCHMARKS)}")
    module_name, _ = BENCHMARKS[argv[0]]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"perception bench {argv[0]}",
        description=module.__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.configure(parser)
    return int(module.run(parser.parse_args(list(argv[1:]))) or 0)


def register(subparsers: argparse._SubParsersAction) -> None:
    lines = "\n".join(f"  {name:14} {text}" for name, (_, text) in BENCHMARKS.items())
    bench = subparsers.add_parser(
        "bench",
        help="benchmarks (JSON lines)",
        description=f"Benchmarks; each prints JSON lines.\n\nbenchmarks:\n{lines}\n\n"
        "`perception bench NAME --help` lists a benchmark's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options")
    bench.set_defaults(func=lambda args: run_bench([args.name, *args.options]))
