"""Checkpoints: round trip, self-description, and clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from perception.errors import UserError
from perception.models.checkpoint import (
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from perception.models.registry import create_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("nano", classes=("car", "van"), input_hw=(128, 192)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "nano.safetensors"
    save_checkpoint(path, model, provenance={"dataset": "synthetic", "epochs": 3})
    return model, path


def test_roundtrip_gives_identical_outputs(saved):
    model, path = saved
    loaded, info = load_checkpoint(path)
    assert not loaded.training
    assert info.config == model.config
    assert info.classes == ("car", "van")
    assert info.input_hw == (128, 192)
    assert info.config.mean == (0.5, 0.5, 0.5) and info.config.std == (0.5, 0.5, 0.5)
    assert info.provenance == {"dataset": "synthetic", "epochs": 3}
    x = torch.randn(1, 3, 128, 192)
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_metadata_is_plain_json(saved):
    _, path = saved
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["perception"])
    assert header["format"] == "perception.checkpoint"
    assert header["config"]["name"] == "nano"
    assert header["config"]["classes"] == ["car", "van"]
    assert read_checkpoint_info(path).config.name == "nano"


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_truncated(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"safetensors|truncated"):
        load_checkpoint(cut)


def test_foreign_safetensors_without_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match="without perception metadata"):
        load_checkpoint(path)


def _rewrite(src, dst, tensors=None, header_change=None):
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        header = json.loads(f.metadata()["perception"])
    if header_change:
        header_change(header)
    tensors = load_file(str(src)) if tensors is None else tensors
    save_file(tensors, str(dst), metadata={"perception": json.dumps(header)})


def test_mismatched_keys_and_shapes_are_named(saved, tmp_path):
    _, path = saved
    tensors = load_file(str(path))
    del tensors["det_head.cls.2.bias"]
    tensors["neck.lateral.0.weight"] = torch.zeros(1, 1, 1, 1)
    tensors["extra.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.safetensors"
    _rewrite(path, bad, tensors=tensors)
    with pytest.raises(UserError) as err:
        load_checkpoint(bad)
    text = str(err.value)
    assert "det_head.cls.2.bias" in text and "missing" in text
    assert "extra.weight" in text and "unexpected" in text
    assert "neck.lateral.0.weight" in text and "shape" in text


def test_config_that_disagrees_with_the_weights(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "classes.safetensors"
    _rewrite(path, bad, header_change=lambda h: h["config"].update(classes=["a", "b", "c"]))
    with pytest.raises(UserError, match=r"det_head\.cls\.2\.(weight|bias)"):
        load_checkpoint(bad)


def test_bad_config_fields(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "cfg.safetensors"
    _rewrite(path, bad, header_change=lambda h: h["config"].update(wings=2))
    with pytest.raises(UserError, match="wings"):
        load_checkpoint(bad)
    newer = tmp_path / "newer.safetensors"
    _rewrite(path, newer, header_change=lambda h: h.update(format_version=99))
    with pytest.raises(UserError, match="format version"):
        load_checkpoint(newer)
