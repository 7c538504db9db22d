"""A few optimiser steps on a fixed synthetic batch lower both the detection and depth losses,
and every parameter receives a gradient."""

from __future__ import annotations

import torch

from perception.models.losses import DetectionDepthLoss
from perception.models.registry import create_model
from perception.models.targets import encode_targets, stack_targets

HW = (64, 128)


def _synthetic_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Two images: a sloped ground plane of known depth, with bright boxes standing on it."""
    gen = torch.Generator().manual_seed(0)
    images = torch.full((2, 3, *HW), -0.5)
    rows = torch.arange(HW[0], dtype=torch.float32)[:, None].expand(HW)
    depth = (60.0 / (rows + 10.0) * 8.0).expand(2, *HW).clone()  # far at the top, near below
    boxes_per_image = [
        torch.tensor([[10.0, 20.0, 40.0, 50.0], [80.0, 14.0, 96.0, 44.0]]),
        torch.tensor([[50.0, 24.0, 110.0, 60.0]]),
    ]
    classes = [torch.tensor([0, 2]), torch.tensor([1])]
    targets = []
    for i, (boxes, cls) in enumerate(zip(boxes_per_image, classes, strict=True)):
        obj_depth = []
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), cls.tolist(), strict=True):
            images[i, c % 3, int(y1) : int(y2), int(x1) : int(x2)] = 0.8
            d = float(depth[i, int(y2) - 1, 0])
            depth[i, int(y1) : int(y2), int(x1) : int(x2)] = d
            obj_depth.append(d)
        targets.append(encode_targets(boxes, cls, obj_depth, 4, HW, stride=4))
    images += 0.05 * torch.randn(images.shape, generator=gen)
    depth[:, :5] = 0.0  # no ground truth there
    return images, stack_targets(targets), depth


def test_training_step_lowers_detection_and_depth_losses():
    torch.manual_seed(0)
    model = create_model("nano", input_hw=HW).train()
    images, targets, depth = _synthetic_batch()
    loss_fn = DetectionDepthLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)

    def detection(terms):
        return float(
            (terms["heatmap"] + terms["size"] + terms["offset"] + terms["obj_depth"]).detach()
        )

    def dense(terms):
        return float((terms["depth_silog"] + terms["depth_l1"]).detach())

    first = None
    for step in range(25):
        terms = loss_fn(model(images), targets, depth)
        optimizer.zero_grad()
        terms["total"].backward()
        if step == 0:
            first = {"det": detection(terms), "depth": dense(terms)}
            no_grad = [
                n
                for n, p in model.named_parameters()
                if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
            ]
            assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
        optimizer.step()
    with torch.no_grad():  # still in train mode: the same normalisation as the steps
        last = loss_fn(model(images), targets, depth)
    assert first is not None
    assert detection(last) < 0.5 * first["det"], (first, detection(last))
    assert dense(last) < 0.8 * first["depth"], (first, dense(last))
