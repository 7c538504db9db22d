"""Monitor node: subscribes to topics and logs their rate, latency and health once a period.

The simplest downstream consumer: what a planning node sees, with numbers. Its status message
carries each input's health (alive, rate, drops, rejects) like every node's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perception.bus.endpoints import instances_by_topic
from perception.node import Node, NodeConfig, exit_process, node_main


@dataclass
class MonitorConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    topics: list[str] = field(
        default_factory=lambda: ["camera/frames"],
        metadata={"help": "topics to watch, each topic or topic@instance"},
    )
    period_s: float = field(default=2.0, metadata={"help": "seconds between log lines"})


def run(config: MonitorConfig) -> int:
    with Node("monitor", config.node) as node:
        for topic, instances in instances_by_topic(config.topics).items():
            node.subscribe(topic, instances)
        latencies: dict[str, list[float]] = {t: [] for t in node.inputs}
        next_log = time.monotonic() + config.period_s
        while node.running:
            for sub in node.wait(0.1):
                for msg in sub.receive():
                    if msg.stamp_ns:
                        latencies[sub.topic.name].append((time.time_ns() - msg.stamp_ns) / 1e6)
            if time.monotonic() >= next_log:
                next_log += config.period_s
                for topic, sub in node.inputs.items():
                    lat = latencies[topic]
                    med = f"{np.median(lat):.1f} ms" if lat else "-"
                    h = sub.stats.health()
                    node.log.info(
                        "%s: %.1f Hz, latency %s, received %d, dropped %d, rejected %d%s",
                        topic,
                        sub.stats.rate_hz(),
                        med,
                        sub.stats.received,
                        sub.stats.dropped,
                        sum(sub.stats.rejected.values()),
                        "" if h.ok else f" UNHEALTHY {h}",
                    )
                    lat.clear()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return node_main("monitor", MonitorConfig, run, argv, description=__doc__ or "")


if __name__ == "__main__":
    exit_process(main())
