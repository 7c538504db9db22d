"""`perception bench NAME`: benchmarks, one JSON object a line."""

from __future__ import annotations

import argparse
import importlib

# benchmark name -> module exposing configure(parser) and run(args) -> int
BENCHMARKS = {
    "bus": "perception.benchmarks.bus",
    "pipeline": "perception.benchmarks.pipeline",
    "model": "perception.benchmarks.model",
    "synth": "perception.benchmarks.synth",
    "tracker": "perception.benchmarks.tracker",
    "tracking-eval": "perception.benchmarks.tracking_eval",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmarks (JSON lines)", description="Benchmarks; each prints JSON lines."
    )
    sub = bench.add_subparsers(dest="bench_name", required=True, metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=(module.__doc__ or "").strip().splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.configure(p)
        p.set_defaults(func=module.run)
