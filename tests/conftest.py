"""Shared fixtures: a private bus per test, and helpers to run nodes as real processes."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perception.bus import BusConfig

REPO = Path(__file__).resolve().parents[1]
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def run_perception(
    *args: str, namespace: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``perception ARGS...`` as a user runs it (a child process from the repository root),
    in its own bus namespace when given; output captured as text."""
    env = dict(os.environ)
    if namespace is not None:
        env["PERCEPTION_NAMESPACE"] = namespace
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_counter = itertools.count()


def free_port_base() -> int:
    """A tcp port block (100 ports) private to this test process and call."""
    return 32000 + (os.getpid() % 100) * 300 + next(_counter) % 3 * 100


def _namespace() -> str:
    return f"t{os.getpid()}_{next(_counter)}"


@pytest.fixture
def bus() -> Iterator[BusConfig]:
    """An ipc bus in a namespace of its own (its socket folder removed afterwards)."""
    config = BusConfig(namespace=_namespace())
    yield config
    shutil.rmtree(config.ipc_root(), ignore_errors=True)


@pytest.fixture(params=["ipc", "tcp"])
def any_bus(request: pytest.FixtureRequest) -> Iterator[BusConfig]:
    """The same test over ipc and over tcp on loopback."""
    if request.param == "ipc":
        config = BusConfig(namespace=_namespace())
    else:
        config = BusConfig(transport="tcp", namespace=_namespace(), port_base=free_port_base())
    yield config
    shutil.rmtree(config.ipc_root(), ignore_errors=True)


def bus_params(bus: BusConfig) -> dict[str, Any]:
    return {
        "transport": bus.transport,
        "namespace": bus.namespace,
        "ipc_dir": bus.ipc_dir,
        "port_base": bus.port_base,
    }


class NodeProcess:
    """A node started as `python -m nodes.<kind> --params ...`; stopped with SIGINT."""

    def __init__(self, kind: str, params: dict[str, Any], bus: BusConfig, log: Path) -> None:
        params = dict(params)
        node = dict(params.pop("node", {}))
        node["bus"] = bus_params(bus)
        params["node"] = node
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"nodes.{kind}", "--params", json.dumps(params)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    procs: list[NodeProcess] = []

    def start(kind: str, params: dict[str, Any], bus: BusConfig) -> NodeProcess:
        p = NodeProcess(kind, params, bus, tmp_path / f"{kind}{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
