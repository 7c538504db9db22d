"""Every config builds and gives outputs of the right shape, dtype and range at several sizes."""

from __future__ import annotations

import math

import pytest
import torch

from perception.errors import UserError
from perception.models.config import ModelConfig
from perception.models.heads import HEATMAP_PRIOR
from perception.models.registry import create_model, get_config, list_configs


def _check_outputs(model, h: int, w: int, batch: int = 1) -> dict[str, torch.Tensor]:
    cfg = model.config
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model(torch.randn(batch, 3, h, w))
    s = cfg.det_stride
    assert out["heatmap"].shape == (batch, cfg.num_classes, h // s, w // s)
    assert out["log_size"].shape == (batch, 2, h // s, w // s)
    assert out["offset"].shape == (batch, 2, h // s, w // s)
    assert out["obj_log_depth"].shape == (batch, 1, h // s, w // s)
    assert out["log_depth"].shape == (batch, 1, h, w)  # full input resolution
    for name, t in out.items():
        assert t.dtype == torch.float32, name
        assert torch.isfinite(t).all(), name
    # Untrained outputs start in a plausible range: heatmaps near the focal prior, depth
    # around init_depth_m (metres, positive by construction through exp).
    heat = torch.sigmoid(out["heatmap"])
    assert abs(heat.mean().item() - HEATMAP_PRIOR) < 0.05
    depth = torch.exp(out["log_depth"])
    assert (depth > 0).all()
    assert 0.3 * cfg.init_depth_m < depth.median().item() < 3 * cfg.init_depth_m
    obj = torch.exp(out["obj_log_depth"])
    assert 0.3 * cfg.init_depth_m < obj.median().item() < 3 * cfg.init_depth_m
    return out


@pytest.fixture(scope="module")
def nano():
    return create_model("nano").eval()


@pytest.mark.parametrize("hw", [(384, 640), (352, 1216), (128, 192), (224, 96)])
def test_nano_shapes_at_several_sizes(nano, hw):
    _check_outputs(nano, *hw)


def test_nano_batch_and_classes():
    model = create_model("nano", classes=("car", "bus", "bike")).eval()
    out = _check_outputs(model, 128, 256, batch=3)
    assert out["heatmap"].shape[1] == 3


def test_small_shapes():
    model = create_model("small").eval()
    for hw in [(128, 192), (96, 256)]:
        _check_outputs(model, *hw)


@pytest.mark.slow
def test_base_shapes_and_layout():
    model = create_model("base").eval()
    _check_outputs(model, 128, 192)
    # DPT-Hybrid layout: R50 3 stages, ViT-B/16 x 12, taps at stem stages 0/1 and blocks 8/11.
    bb = model.backbone
    assert len(bb.stem.stages) == 3
    assert [len(s.blocks) for s in bb.stem.stages] == [3, 4, 9]
    assert len(bb.vit.blocks) == 12 and bb.vit.embed_dim == 768
    assert bb.stem_channels == (256, 512) and bb.token_stride == 16
    assert bb.vit.pos_embed.shape == (1, 577, 768)
    n_params = sum(p.numel() for p in model.parameters())
    assert 115e6 < n_params < 130e6  # DPT-Hybrid is 123M with its unused classifier


def test_input_must_be_multiple_of_32(nano):
    with pytest.raises(ValueError, match="multiples of 32"):
        nano(torch.zeros(1, 3, 100, 128))


def test_registry():
    assert list_configs() == ["nano", "small", "base"]
    with pytest.raises(UserError, match="unknown model config"):
        get_config("huge")
    with pytest.raises(UserError, match="bad override"):
        get_config("nano", classes=())
    assert get_config("nano", det_stride=8).det_stride == 8


def test_config_roundtrip_and_validation():
    cfg = get_config("small", classes=("a", "b"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="multiples of 32"):
        ModelConfig.from_dict({**cfg.to_dict(), "input_hw": [100, 200]})


def test_depth_init_is_plausible_metres(nano):
    cfg = nano.config
    assert cfg.min_depth_m < cfg.init_depth_m < cfg.max_depth_m
    assert math.isclose(nano.depth_head.conv3.bias.item(), math.log(cfg.init_depth_m), rel_tol=1e-6)
