"""Importers, tested on generated checkpoints with the exact published key layout and shapes.

No download is possible here, so the test builds DPT-Hybrid's module tree itself (the names
``pretrained.model``, ``pretrained.act_postprocess{3,4}``, ``scratch.layer{i}_rn``,
``scratch.refinenet{i}``, ``scratch.output_conv`` as in isl-org/DPT ``dpt/vit.py``,
``dpt/blocks.py``, ``dpt/models.py``), fills it with random weights, saves it the way the
release files are saved (``{"model": state_dict, "optimizer": ...}``), imports it, and compares
against DPT's forward written out here (hooks on stem stages 0/1 and blocks 8/11, bilinear
position-embedding resize, readout projection, fusion with x2 align-corners upsampling).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perception.errors import UserError
from perception.models.importers import import_midas_dpt_hybrid

from .random_weights import fill_random_, random_timm


# -- the reference DPT-Hybrid ----------------------------------------------------------------
class _ProjectReadout(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        readout = x[:, 0].unsqueeze(1).expand_as(x[:, 1:])
        return self.project(torch.cat((x[:, 1:], readout), -1))


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class _RCU(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class _Fusion(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(c, c, 1)
        self.resConfUnit1 = _RCU(c)
        self.resConfUnit2 = _RCU(c)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        if len(xs) == 2:
            out = out + self.resConfUnit1(xs[1])
        out = self.resConfUnit2(out)
        out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(out)


class _Interpolate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class ReferenceDPTHybrid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pretrained = nn.Module()
        self.pretrained.model = random_timm("vit_base_r50_s16_384", seed=1)
        self.pretrained.act_postprocess1 = nn.Sequential(
            nn.Identity(), nn.Identity(), nn.Identity()
        )
        self.pretrained.act_postprocess2 = nn.Sequential(
            nn.Identity(), nn.Identity(), nn.Identity()
        )
        self.pretrained.act_postprocess3 = nn.Sequential(
            _ProjectReadout(768), _Transpose(), nn.Unflatten(2, (24, 24)), nn.Conv2d(768, 768, 1)
        )
        self.pretrained.act_postprocess4 = nn.Sequential(
            _ProjectReadout(768),
            _Transpose(),
            nn.Unflatten(2, (24, 24)),
            nn.Conv2d(768, 768, 1),
            nn.Conv2d(768, 768, 3, stride=2, padding=1),
        )
        self.scratch = nn.Module()
        for i, c in enumerate((256, 512, 768, 768), start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, 256, 3, padding=1, bias=False))
            setattr(self.scratch, f"refinenet{i}", _Fusion(256))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(256, 128, 3, padding=1),
            _Interpolate(),
            nn.Conv2d(128, 32, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(True),
            nn.Identity(),
        )
        fill_random_(self.pretrained.act_postprocess3, seed=2)
        fill_random_(self.pretrained.act_postprocess4, seed=3)
        fill_random_(self.scratch, seed=4)
        with torch.no_grad():  # make sure the final ReLU passes a good share of the pixels
            self.scratch.output_conv[4].bias.fill_(1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.pretrained.model
        h, w = x.shape[-2:]
        acts: dict[str, torch.Tensor] = {}
        hooks = [
            vit.patch_embed.backbone.stages[0].register_forward_hook(
                lambda m, i, o: acts.__setitem__("1", o)
            ),
            vit.patch_embed.backbone.stages[1].register_forward_hook(
                lambda m, i, o: acts.__setitem__("2", o)
            ),
            vit.blocks[8].register_forward_hook(lambda m, i, o: acts.__setitem__("3", o)),
            vit.blocks[11].register_forward_hook(lambda m, i, o: acts.__setitem__("4", o)),
        ]
        try:
            # forward_flex: resize the position embedding bilinearly, run the whole ViT.
            tok, grid = vit.pos_embed[:, :1], vit.pos_embed[0, 1:]
            grid = grid.reshape(1, 24, 24, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h // 16, w // 16), mode="bilinear")
            pos = torch.cat(
                [tok, grid.permute(0, 2, 3, 1).reshape(1, (h // 16) * (w // 16), -1)], 1
            )
            t = vit.patch_embed.backbone(x)
            t = vit.patch_embed.proj(t).flatten(2).transpose(1, 2)
            t = torch.cat((vit.cls_token.expand(x.shape[0], -1, -1), t), dim=1) + pos
            for block in vit.blocks:
                t = block(t)
            vit.norm(t)
        finally:
            for hook in hooks:
                hook.remove()
        unflatten = nn.Unflatten(2, (h // 16, w // 16))
        layers = []
        for i in "1234":
            post = getattr(self.pretrained, f"act_postprocess{i}")
            a = post[0:2](acts[i])
            if a.ndim == 3:
                a = unflatten(a)
            layers.append(post[3:](a))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(layers[i - 1]) for i in range(1, 5))
        path = s.refinenet4(l4)
        path = s.refinenet3(path, l3)
        path = s.refinenet2(path, l2)
        path = s.refinenet1(path, l1)
        return s.output_conv(path)


@pytest.fixture(scope="module")
def midas_file(tmp_path_factory):
    reference = ReferenceDPTHybrid().eval()
    state = reference.state_dict()
    path = tmp_path_factory.mktemp("midas") / "dpt_hybrid-midas-501f0c75.pt"
    torch.save({"model": state, "optimizer": {"lr": 1e-5}}, str(path))
    return reference, state, path


@pytest.mark.slow
def test_midas_import_maps_every_key_and_reproduces_the_reference(midas_file):
    reference, state, path = midas_file
    assert len(state) == 368  # as the published files (REFERENCE.md)
    model, report = import_midas_dpt_hybrid(path)
    assert report.consumed == set(state)
    assert sorted(report.dropped) == sorted(
        k
        for k in state
        if k.startswith(("pretrained.model.head.", "pretrained.model.norm."))
        or k.startswith("scratch.refinenet4.resConfUnit1.")
    )
    ours = model.state_dict()
    assert set(report.mapped.values()) | set(report.untouched) == set(ours)
    assert all(k.startswith("det_head.") for k in report.untouched)
    for src, dst in report.mapped.items():
        assert torch.equal(ours[dst], state[src]), (src, dst)
    assert model.config.depth_output == "inverse_relative"

    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        expected = reference(x)
        got = model(x)["inverse_depth"]
    assert got.shape == expected.shape == (2, 1, 64, 96)
    assert (expected > 0).float().mean() > 0.2  # the comparison is not about zeros
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_midas_import_rejects_other_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        import_midas_dpt_hybrid(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="cannot read"):
        import_midas_dpt_hybrid(junk)
    other = tmp_path / "other.pt"
    torch.save(
        {"model": {"pretrained.model.blocks.0.x": torch.zeros(1), "foo.bar": torch.zeros(1)}},
        str(other),
    )
    with pytest.raises(UserError, match="not a DPT-Hybrid"):
        import_midas_dpt_hybrid(other)


@pytest.mark.slow
def test_import_weights_cli_writes_a_self_describing_checkpoint(midas_file, tmp_path, capsys):
    import argparse

    from perception.commands import weights
    from perception.inference import Engine, EngineConfig
    from perception.models.checkpoint import load_checkpoint

    _, _, path = midas_file
    parser = argparse.ArgumentParser()
    weights.register(parser.add_subparsers())
    out = tmp_path / "base-midas.safetensors"
    args = parser.parse_args(["import-weights", "midas", str(path), "-o", str(out)])
    assert args.func(args) == 0
    assert "inverse relative" in capsys.readouterr().out
    model, info = load_checkpoint(out)
    assert info.config.name == "base" and info.config.depth_output == "inverse_relative"
    assert info.provenance["source"] == "midas-dpt-hybrid"
    assert info.provenance["detection_head"].startswith("untrained")
    assert len(info.provenance["sha256"]) == 64
    with pytest.raises(UserError, match="inverse relative depth"):
        Engine(model, EngineConfig(device="cpu"))
