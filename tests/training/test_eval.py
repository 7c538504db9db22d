"""`perception eval` end to end: the shipped network on a held-out synthetic drive, and the
command's input checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from perception.errors import UserError
from perception.inference import default_checkpoint
from perception.models.checkpoint import read_checkpoint_info
from perception.training.evaluate import parse_synthetic_spec

# A seed far from every training seed of the shipped recipe (1..80).
HELD_OUT = "synthetic:4242:24:4"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from perception.commands.evaluate import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def test_shipped_model_was_not_trained_on_the_held_out_seed() -> None:
    prov = read_checkpoint_info(default_checkpoint()).provenance
    seed = parse_synthetic_spec(HELD_OUT)[0]
    assert prov["data"]["kind"] == "synthetic"
    assert seed not in prov["data"]["seeds"]


@pytest.mark.slow
def test_shipped_model_on_held_out_drive(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run([HELD_OUT, "--json"], capsys)
    assert code == 0
    m = json.loads(out)  # exactly one JSON object
    assert m["frames"] == 24
    assert m["gt_counts"]["car"] >= 10
    # Looser than the release targets (docs/benchmarks.md) so that noise cannot flip them.
    assert m["ap50"]["car"] >= 0.5
    assert m["map50"] >= 0.3
    assert m["depth"]["abs_rel"] <= 0.2
    assert m["depth"]["delta1"] >= 0.75


def test_table_output_and_bad_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = _run(["synthetic:4243:1", "--no-progress"], capsys)
    assert code == 0
    assert "AP@0.5" in out and "abs_rel" in out and "car" in out
    with pytest.raises(UserError, match="synthetic:SEED:FRAMES"):
        parse_synthetic_spec("synthetic:1")
    with pytest.raises(UserError, match="integers"):
        parse_synthetic_spec("synthetic:a:3")
    with pytest.raises(UserError, match="not a folder"):
        _run([str(tmp_path / "missing")], capsys)
    with pytest.raises(UserError, match="checkpoint not found"):
        _run(["synthetic:1:1", "--checkpoint", str(tmp_path / "none.safetensors")], capsys)
