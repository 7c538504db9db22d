"""Importing timm backbone weights from a local file (generated here: no downloads), through
timm's own loader, into the matching config."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from perception.errors import UserError
from perception.models.importers import import_timm_backbone
from perception.models.registry import create_model

from .random_weights import random_timm


@pytest.mark.slow
def test_timm_backbone_import_from_local_file(tmp_path):
    reference = random_timm("vit_small_r26_s32_384", seed=5)
    state = reference.state_dict()
    path = tmp_path / "vit_small_r26_s32_384.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    model = create_model("small").eval()
    report = import_timm_backbone(model, path)
    assert report.consumed == set(state)
    assert sorted(report.dropped) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    ours = model.state_dict()
    vit_keys = {k for k in ours if k.startswith("backbone.vit.")}
    assert set(report.mapped.values()) == vit_keys  # every backbone parameter set
    for src, dst in report.mapped.items():
        assert torch.equal(ours[dst], state[src]), src

    x = torch.randn(1, 3, 384, 384)  # the native grid: no position-embedding resampling
    with torch.inference_mode():
        stem_maps, tokens, _ = model.backbone(x)
        ref_stem = reference.patch_embed.backbone.forward_intermediates(
            x, indices=[1, 2], intermediates_only=True
        )
        ref_tokens = reference.forward_intermediates(
            x, indices=[8, 11], return_prefix_tokens=True, norm=False, intermediates_only=True
        )
    for a, b in zip(stem_maps, ref_stem, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, (b_map, b_cls) in zip(tokens, ref_tokens, strict=True):
        torch.testing.assert_close(a[:, 1:], b_map.flatten(2).transpose(1, 2), rtol=0, atol=1e-5)
        torch.testing.assert_close(a[:, :1], b_cls, rtol=0, atol=1e-5)

    with pytest.raises(UserError, match="no timm counterpart"):
        import_timm_backbone(create_model("nano"), path)
