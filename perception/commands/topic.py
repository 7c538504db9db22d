"""`perception topic list|echo|hz|info`: look at the bus like `ros2 topic` does."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from typing import Any

import numpy as np

from perception.bus import TOPICS, BusConfig, Subscriber, endpoint, get_topic
from perception.bus.endpoints import list_ipc_channels, split_key
from perception.bus.topics import QueuePolicy
from perception.msgs import Message, array_fields, value_fields
from perception.stats import median_p99


def _bus(args: argparse.Namespace) -> BusConfig:
    kwargs: dict[str, Any] = {"transport": args.transport}
    if args.namespace:
        kwargs["namespace"] = args.namespace
    if args.port_base:
        kwargs["port_base"] = args.port_base
    kwargs["host"] = args.host
    return BusConfig(**kwargs)


def _split(channel: str) -> tuple[str, str | None]:
    topic, instance = split_key(channel)
    get_topic(topic)
    return topic, instance


def summarize(msg: Message, full_arrays: bool = False) -> dict[str, Any]:
    """A JSON-friendly view of a message; arrays as shape/dtype/range unless ``full_arrays``."""
    out: dict[str, Any] = {"type": msg.TYPE}
    for f in value_fields(type(msg)):
        out[f.name] = getattr(msg, f.name)
    for name, _ in array_fields(type(msg)):
        arr: np.ndarray = getattr(msg, name)
        if full_arrays or (arr.size <= 16 and name != "image"):
            out[name] = arr.tolist()
        else:
            entry: dict[str, Any] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
            if arr.size and arr.dtype.kind in "fiu":
                entry["min"] = float(arr.min())
                entry["max"] = float(arr.max())
            out[name] = entry
    return out


def cmd_list(args: argparse.Namespace) -> int:
    bus = _bus(args)
    live = set(list_ipc_channels(bus)) if bus.transport == "ipc" else set()
    print(f"{'topic':24} {'type':16} {'rate':>6} {'policy':12} endpoint")
    for t in TOPICS.values():
        print(
            f"{t.name:24} {t.type.TYPE:16} {t.rate_hz:6.1f} {t.policy.value:12} "
            f"{endpoint(bus, t.name)}"
        )
    if bus.transport == "ipc":
        print(f"\nchannels with a publisher socket in namespace {bus.namespace!r}:")
        for key in sorted(live):
            print(f"  {key}")
        if not live:
            print("  (none)")
    return 0


def _subscriber(args: argparse.Namespace, policy: QueuePolicy | None = None) -> Subscriber:
    topic, instance = _split(args.topic)
    return Subscriber(topic, _bus(args), instances=[instance], policy=policy)


def cmd_echo(args: argparse.Namespace) -> int:
    sub = _subscriber(args, QueuePolicy.QUEUE)
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.count <= 0 or seen < args.count:
            if deadline and time.monotonic() > deadline:
                print(f"error: no message on {args.topic} within {args.timeout} s", file=sys.stderr)
                return 1
            for msg in sub.receive(timeout_ms=200):
                print(json.dumps(summarize(msg, args.arrays), default=str), flush=True)
                seen += 1
                if args.count > 0 and seen >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0


def cmd_hz(args: argparse.Namespace) -> int:
    sub = _subscriber(args, QueuePolicy.QUEUE)
    latencies_ms: list[float] = []
    arrivals: list[float] = []
    reports = 0
    next_report = time.monotonic() + args.period
    try:
        while args.reports <= 0 or reports < args.reports:
            for msg in sub.receive(timeout_ms=100):
                arrivals.append(time.monotonic())
                if msg.stamp_ns:
                    latencies_ms.append((time.time_ns() - msg.stamp_ns) / 1e6)
            if time.monotonic() < next_report:
                continue
            next_report += args.period
            reports += 1
            report: dict[str, Any] = {"topic": args.topic, "count": len(arrivals)}
            if len(arrivals) >= 2:
                report["rate_hz"] = round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 3)
            else:
                report["rate_hz"] = 0.0
            if latencies_ms:
                report["latency_ms"] = median_p99(latencies_ms, digits=3)
            report["dropped"] = sub.stats.dropped
            report["rejected"] = sum(sub.stats.rejected.values())
            print(json.dumps(report), flush=True)
            arrivals = arrivals[-1:]
            latencies_ms.clear()
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    topic, instance = _split(args.topic)
    t = get_topic(topic)
    bus = _bus(args)
    hints = typing.get_type_hints(t.type)
    print(f"topic:     {args.topic}")
    print(f"type:      {t.type.TYPE} (schema version {t.type.VERSION})")
    print(f"rate:      {t.rate_hz} Hz expected")
    print(f"policy:    {t.policy.value}")
    print(f"endpoint:  {endpoint(bus, topic, instance)}")
    print(f"max frame: {t.max_bytes} bytes, high-water mark {t.hwm}")
    if bus.transport == "ipc":
        live = [k for k in list_ipc_channels(bus) if k.split("@")[0] == topic]
        print(f"publishers: {', '.join(live) or '(none)'}")
    print("header fields:")
    for f in value_fields(t.type):
        tp = getattr(hints[f.name], "__name__", str(hints[f.name]))
        print(f"  {f.name:18} {tp:10} {f.metadata.get('doc', '')}")
    print("buffers:")
    for f in dataclasses.fields(t.type):
        if "array" in f.metadata:
            spec = f.metadata["array"]
            print(f"  {f.name:18} {spec.dtype:10} shape {list(spec.shapes)}  {f.metadata['doc']}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc", help="bus transport")
    p.add_argument("--namespace", default="", help="bus namespace (default: $PERCEPTION_NAMESPACE)")
    p.add_argument("--host", default="127.0.0.1", help="tcp host of the publishers")
    p.add_argument("--port-base", type=int, default=0, help="tcp base port")


def register(subparsers: argparse._SubParsersAction) -> None:
    topic = subparsers.add_parser(
        "topic", help="list, echo, measure topics on the bus", description=__doc__
    )
    sub = topic.add_subparsers(dest="topic_command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the topics table and live publishers")
    _common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("echo", help="print messages of a topic as JSON lines")
    p.add_argument("topic", help="topic, or topic@instance (e.g. status@camera)")
    p.add_argument("--count", "-n", type=int, default=0, help="stop after N messages (0: never)")
    p.add_argument("--timeout", type=float, default=0, help="fail after S seconds without one")
    p.add_argument("--arrays", action="store_true", help="print arrays in full")
    _common(p)
    p.set_defaults(func=cmd_echo)

    p = sub.add_parser("hz", help="rate, and latency from capture stamps, once a period")
    p.add_argument("topic", help="topic, or topic@instance")
    p.add_argument("--period", type=float, default=1.0, help="seconds between reports")
    p.add_argument("--reports", type=int, default=0, help="stop after N reports (0: never)")
    _common(p)
    p.set_defaults(func=cmd_hz)

    p = sub.add_parser("info", help="type, schema, policy and endpoint of a topic")
    p.add_argument("topic", help="topic, or topic@instance")
    _common(p)
    p.set_defaults(func=cmd_info)
