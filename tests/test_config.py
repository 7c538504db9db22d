"""Typed configuration from defaults, YAML files, --params and per-field options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from perception.config import add_config_arguments, config_from_args
from perception.errors import UserError
from perception.node import NodeConfig


@dataclass
class Example:
    node: NodeConfig = field(default_factory=NodeConfig)
    fps: float = 10.0
    name: str = "x"
    topics: list[str] = field(default_factory=list)
    loop: bool = False


def parse(*argv: str) -> Example:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example)
    return config_from_args(Example, parser.parse_args(list(argv)))


def test_precedence_defaults_file_params_flags(tmp_path) -> None:
    assert parse().fps == 10.0
    f = tmp_path / "c.yaml"
    f.write_text("fps: 5\nname: file\nnode: {bus: {transport: tcp}}\n")
    c = parse("--config", str(f), "--params", "{name: inline, topics: [a, b]}", "--fps", "7")
    assert (c.fps, c.name, c.topics) == (7.0, "inline", ["a", "b"])
    assert c.node.bus.transport == "tcp"
    assert parse("--node.bus.transport", "tcp", "--loop", "true").loop is True


def test_bad_values_name_the_key(tmp_path) -> None:
    with pytest.raises(UserError, match="fps: expected a number"):
        parse("--fps", "fast")
    with pytest.raises(UserError, match="unknown parameter fsp"):
        parse("--params", "{fsp: 3}")
    with pytest.raises(UserError, match="loop: expected true or false"):
        parse("--loop", "maybe")
    with pytest.raises(UserError, match="transport must be"):
        parse("--node.bus.transport", "udp")
    with pytest.raises(UserError, match="does not exist"):
        parse("--config", str(tmp_path / "missing.yaml"))
