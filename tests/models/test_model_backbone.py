"""Our single-pass tapped forward computes exactly what timm's own forwards compute."""

from __future__ import annotations

import torch

from perception.models.registry import create_model


def test_vit_taps_equal_timm_forward_intermediates():
    """At the position embedding's native grid (no resampling), our loop over the stem, the
    projection and the blocks must give timm's ``forward_intermediates`` tokens bit for bit."""
    model = create_model("nano").eval()
    bb = model.backbone
    x = torch.randn(2, 3, *model.config.pos_embed_hw)
    with torch.inference_mode():
        stem_maps, tokens, grid = bb(x)
        ref = bb.vit.forward_intermediates(
            x,
            indices=list(bb.vit_taps),
            return_prefix_tokens=True,
            norm=False,
            output_fmt="NCHW",
            intermediates_only=True,
        )
    assert grid == (x.shape[2] // 32, x.shape[3] // 32)
    assert len(ref) == len(tokens) == 2
    for ours, (ref_map, ref_cls) in zip(tokens, ref, strict=True):
        b, d = ref_map.shape[:2]
        patches = ours[:, 1:].transpose(1, 2).reshape(b, d, *grid)
        torch.testing.assert_close(patches, ref_map, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours[:, :1], ref_cls, rtol=0, atol=1e-6)
    # The stem taps are the stem's stage outputs, and the stem ran once.
    assert [m.shape[1] for m in stem_maps] == [32, 64]
    assert [x.shape[2] // m.shape[2] for m in stem_maps] == [4, 8]


def test_resnet_stem_taps_equal_timm_feature_intermediates():
    """For the ResNetV2 stems, our stage taps equal timm's ``forward_intermediates``."""
    model = create_model("small").eval()
    bb = model.backbone
    x = torch.randn(1, 3, 128, 192)
    with torch.inference_mode():
        stem_maps, _, grid = bb(x)
        ref = bb.stem.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    assert grid == (4, 6)  # R26-S32: tokens at 1/32
    for ours, theirs in zip(stem_maps, ref, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_backbone_resamples_position_embedding_bilinearly():
    model = create_model("nano").eval()
    bb = model.backbone
    grid = (3, 5)
    pos = bb._pos_embed(grid)
    assert pos.shape == (1, 1 + 15, model.config.embed_dim)
    # Bilinear without antialias, as DPT: reproduce with F.interpolate directly.
    src = bb.vit.pos_embed[:, 1:].reshape(1, *bb.vit.patch_embed.grid_size, -1).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(src, size=grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], ref.flatten(2).transpose(1, 2))
    torch.testing.assert_close(pos[:, :1], bb.vit.pos_embed[:, :1])
