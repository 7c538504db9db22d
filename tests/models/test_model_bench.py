"""``perception bench model`` prints one well-formed JSON line per batch size."""

from __future__ import annotations

import argparse
import json

from perception.benchmarks import model as bench
from perception.models.registry import get_config


def test_bench_model_prints_json_lines(capsys):
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    options = {"--config": "nano", "--device": "cpu", "--height": "64", "--width": "96"}
    options |= {"--frame-height": "50", "--frame-width": "70", "--runs": "2", "--warmup": "1"}
    argv = [token for pair in options.items() for token in pair]
    args = parser.parse_args([*argv, "--batch", "1", "--batch", "2"])
    assert bench.run(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["batch"] for line in lines] == [1, 2]
    for line in lines:
        assert line["config"] == "nano" and line["device"] == "cpu"
        assert line["params"] > 1e6 and line["gflops_per_frame"] > 0
        for key in ("pre_ms", "forward_ms", "post_ms", "total_ms", "fps"):
            assert line[key] > 0, key
        assert line["input"] == "64x96" and line["frame"] == "50x70"


def test_flop_count_scales_with_pixels():
    config = get_config("nano")
    small = bench.count_gflops(config, (64, 96))
    large = bench.count_gflops(config, (128, 192))
    assert 3.0 < large / small < 4.5  # ~4x pixels; attention grows faster, the stem slower
