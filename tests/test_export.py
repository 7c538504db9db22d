"""``perception export onnx``: the exported graph agrees with PyTorch, for any batch size."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from perception.commands import export as export_command
from perception.errors import UserError
from perception.models import export
from perception.models.checkpoint import save_checkpoint
from perception.models.registry import create_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the shared 2-core test machine punishes spinning OpenMP threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception")
    export_command.register(parser.add_subparsers(dest="command"))
    return parser


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("nano", input_hw=(128, 192), classes=("car", "person"))
    return save_checkpoint(tmp_path_factory.mktemp("exp") / "nano.safetensors", model)


def test_export_cli_writes_a_verified_onnx_file(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    args = _parser().parse_args(["export", "onnx", str(checkpoint), "-o", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "verified against PyTorch" in text
    diffs = [float(line.rsplit("=", 1)[1]) for line in text.splitlines() if "max |onnx" in line]
    assert len(diffs) == 5 and max(diffs) < 1e-3

    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    config = json.loads(meta["perception.config"])
    assert config["classes"] == ["car", "person"] and config["input_hw"] == [128, 192]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == [
        "heatmap",
        "log_size",
        "offset",
        "obj_log_depth",
        "log_depth",
    ]


def test_dynamic_batch_parity_against_pytorch(checkpoint, tmp_path):
    from perception.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    path = export.export_onnx(model, tmp_path / "m.onnx", input_hw=(96, 160))
    report = export.check_parity(model, path, batches=(1, 3))
    assert report.worst < 1e-3, report.max_abs_diff
    # And on frames of a batch size it was not traced with, directly.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = export.random_frames_batch(model, 4, (96, 160), seed=7)
    heat = session.run(["heatmap"], {"images": images.numpy()})[0]
    with torch.inference_mode():
        ref = model(images)["heatmap"].numpy()
    assert heat.shape == (4, 2, 24, 40)
    assert np.abs(heat - ref).max() < 1e-3


def test_export_errors(checkpoint, tmp_path):
    parser = _parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "onnx", str(checkpoint), "-o", "x.onnx", "--input-size", "9"])
    args = parser.parse_args(
        [
            "export",
            "onnx",
            str(checkpoint),
            "-o",
            str(tmp_path / "x.onnx"),
            "--input-size",
            "100x100",
        ]
    )
    with pytest.raises(UserError, match="multiples of 32"):
        args.func(args)
    args = parser.parse_args(["export", "onnx", str(tmp_path / "none.safetensors"), "-o", "x.onnx"])
    with pytest.raises(UserError, match="not found"):
        args.func(args)
