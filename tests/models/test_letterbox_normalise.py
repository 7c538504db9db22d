"""The CPU letterbox fill (OpenCV passes) against the plain torch formula, for per-channel
(ImageNet) and uniform (DPT: mean = std = 0.5, its own fast path) normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.models.letterbox import Letterbox, letterbox_into

SCALE = torch.tensor([1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)])
SHIFT = torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
NORMS = {
    "imagenet": (SCALE, SHIFT),
    "dpt": (torch.full((3,), 1 / (255 * 0.5)), torch.full((3,), -0.5 / 0.5)),
}


def _reference(
    canvas: torch.Tensor, image: torch.Tensor, box: Letterbox, bgr: bool, norm: str
) -> None:
    """The device-generic path, forced: a canvas that is not float32 on the CPU takes it."""
    scale, shift = NORMS[norm]
    wide = canvas.double()
    letterbox_into(wide, image, box, scale.double(), shift.double(), bgr=bgr)
    canvas.copy_(wide)


@pytest.mark.parametrize("src_hw", [(384, 640), (720, 1280), (300, 300), (50, 90)])
@pytest.mark.parametrize("bgr", [True, False])
@pytest.mark.parametrize("norm", list(NORMS))
def test_cpu_fill_matches_torch(src_hw: tuple[int, int], bgr: bool, norm: str) -> None:
    rng = np.random.default_rng(sum(src_hw))
    image = torch.from_numpy(rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8))
    box = Letterbox.fit(src_hw, (384, 640))
    fast = torch.full((384, 640, 3), 7.0)  # stale values must be overwritten, border zeroed
    letterbox_into(fast, image, box, *NORMS[norm], bgr=bgr)
    slow = torch.full((384, 640, 3), 7.0)
    _reference(slow, image, box, bgr, norm)
    assert torch.allclose(fast, slow, atol=1e-5)
    top, left = box.pad_top, box.pad_left
    rh, rw = box.resized_hw
    border = torch.ones((384, 640), dtype=torch.bool)
    border[top : top + rh, left : left + rw] = False
    assert torch.count_nonzero(fast[border]) == 0
    assert torch.count_nonzero(fast[top : top + rh, left : left + rw]) > 0


@pytest.mark.parametrize("norm", list(NORMS))
def test_channel_order_is_rgb(norm: str) -> None:
    scale, shift = NORMS[norm]
    pixel_bgr = torch.tensor([[[10, 20, 30]]], dtype=torch.uint8)
    out = torch.empty((1, 1, 3))
    letterbox_into(out, pixel_bgr, Letterbox.fit((1, 1), (1, 1)), scale, shift, bgr=True)
    expected = torch.tensor([30, 20, 10]) * scale + shift
    assert torch.allclose(out[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("src_hw", [(384, 640), (720, 1280)])
@pytest.mark.parametrize("norm", list(NORMS))
def test_channels_first_canvas(src_hw: tuple[int, int], norm: str) -> None:
    """ONNX export fills ``nchw[i].permute(1, 2, 0)``: a view OpenCV cannot write through."""
    rng = np.random.default_rng(3)
    image = torch.from_numpy(rng.integers(0, 256, (*src_hw, 3), dtype=np.uint8))
    box = Letterbox.fit(src_hw, (384, 640))
    nchw = torch.full((1, 3, 384, 640), 7.0)
    letterbox_into(nchw[0].permute(1, 2, 0), image, box, *NORMS[norm], bgr=True)
    hwc = torch.full((384, 640, 3), 7.0)
    letterbox_into(hwc, image, box, *NORMS[norm], bgr=True)
    if norm == "imagenet":  # the same OpenCV pass for both canvases
        assert torch.equal(nchw[0].permute(1, 2, 0), hwc)
    else:  # a uniform normalisation takes its own pass where OpenCV can write the canvas
        assert torch.allclose(nchw[0].permute(1, 2, 0), hwc, atol=1e-6, rtol=0)
