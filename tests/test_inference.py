"""The inference engine: letterbox geometry undone exactly, messages filled, devices, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from perception import inference
from perception.errors import UserError
from perception.inference import Engine, EngineConfig, default_checkpoint
from perception.models.checkpoint import save_checkpoint
from perception.models.letterbox import Letterbox
from perception.models.registry import create_model, get_config
from perception.models.targets import encode_targets

INPUT_HW = (128, 192)
OBJECT_DEPTH_M = 7.5


class BrightBoxNetwork(nn.Module):
    """Stands in for a trained network whose answer we know: it 'detects' the bright area of its
    input (class 1) by measuring it in input pixels, and predicts dense depth 1 + x_in / 10.

    So the engine's pre-processing decides what this network sees, and its post-processing must
    map the answer back; any slip in letterboxing or its inverse moves the box.
    """

    def __init__(self) -> None:
        super().__init__()
        self.config = get_config("nano", input_hw=INPUT_HW)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives .to() something to move

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = x.shape
        s = self.config.det_stride
        bright = (x > 0).all(dim=1)  # above mid-grey in all channels
        heat, log_size, offset, obj = [], [], [], []
        for i in range(b):
            rows = torch.nonzero(bright[i].any(dim=1))[:, 0].float()
            cols = torch.nonzero(bright[i].any(dim=0))[:, 0].float()
            boxes = torch.zeros(0, 4)
            if len(rows):
                boxes = torch.stack(
                    [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
                )[None]
            classes, depths = [1] * len(boxes), [OBJECT_DEPTH_M] * len(boxes)
            t = encode_targets(boxes, classes, depths, 4, (h, w), s, max_objects=1)
            heat.append(torch.where(t["heatmap"] == 1, 10.0, -10.0))
            cells = torch.ones(1, h // s, w // s)
            log_size.append(t["log_size"][0].view(2, 1, 1) * cells)
            offset.append(t["offset"][0].view(2, 1, 1) * cells)
            obj.append(t["obj_log_depth"][0].view(1, 1, 1) * cells)
        cols_in = torch.arange(w, dtype=torch.float32, device=x.device)
        log_depth = torch.log(1 + cols_in / 10).expand(b, 1, h, w)
        dev = x.device
        return {
            "heatmap": torch.stack(heat).to(dev),
            "log_size": torch.stack(log_size).to(dev),
            "offset": torch.stack(offset).to(dev),
            "obj_log_depth": torch.stack(obj).to(dev),
            "log_depth": log_depth.contiguous(),
        }


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the shared 2-core test machine punishes spinning OpenMP threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frame_with_rectangle(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """A black BGR frame with a white rectangle over pixel columns x1..x2, rows y1..y2."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[y1 : y2 + 1, x1 : x2 + 1] = 255
    return frame


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(BrightBoxNetwork(), EngineConfig(device="cpu", score_threshold=0.5))


@pytest.mark.parametrize(
    ("frame_hw", "rect", "tolerance_px"),
    [
        ((90, 150), (30, 20, 99, 49), 0.6),  # wide frame, upscaled, letterboxed top/bottom
        ((200, 100), (10, 40, 69, 159), 1.0),  # tall frame, shrunk, pillarboxed left/right
        ((128, 192), (50, 60, 80, 100), 0.1),  # the input size itself: no resize
        ((481, 719), (300, 100, 520, 333), 2.0),  # odd sizes, shrunk 3.75x
    ],
)
def test_boxes_land_on_the_right_pixels_of_the_original_image(engine, frame_hw, rect, tolerance_px):
    x1, y1, x2, y2 = rect
    frame = _frame_with_rectangle(*frame_hw, x1, y1, x2, y2)
    (result,) = engine.infer(frame, cameras=["front"])
    det = result.detections
    det.check()
    assert (det.image_height, det.image_width) == frame_hw
    assert det.camera == "front" and det.class_names == ["car", "truck", "pedestrian", "cyclist"]
    assert len(det.scores) == 1 and det.class_ids.tolist() == [1]
    # The rectangle covers pixel centres x1..x2: its box edges are half a pixel outside.
    expected = np.array([x1 - 0.5, y1 - 0.5, x2 + 0.5, y2 + 0.5], np.float32)
    np.testing.assert_allclose(det.boxes_xyxy[0], expected, atol=tolerance_px)
    assert det.depth_m[0] == pytest.approx(OBJECT_DEPTH_M, rel=1e-5)


@pytest.mark.parametrize("frame_hw", [(90, 150), (200, 100), (481, 719)])
def test_depth_map_pixels_map_to_source_pixels(engine, frame_hw):
    (result,) = engine.infer(np.zeros((*frame_hw, 3), np.uint8))
    depth = result.depth
    depth.check()
    box = Letterbox.fit(frame_hw, INPUT_HW)
    assert depth.depth_m.shape == box.resized_hw  # exactly the image area, no border
    assert depth.depth_m.dtype == np.float16
    # Column u of the depth map shows source x = scale_x * u + offset_x; the stand-in network
    # predicted 1 + x_in / 10 there, x_in being that point in network-input pixels.
    u = np.arange(depth.depth_m.shape[1])
    x_src = depth.scale_x * u + depth.offset_x
    x_in, _ = box.to_input(x_src, 0.0)
    np.testing.assert_allclose(depth.depth_m[0].astype(np.float64), 1 + x_in / 10, rtol=2e-3)
    # Rows: the first and last depth rows sit half a depth pixel inside the image edges.
    y_first = depth.offset_y
    y_last = depth.scale_y * (depth.depth_m.shape[0] - 1) + depth.offset_y
    assert y_first == pytest.approx(depth.scale_y / 2 - 0.5)
    assert y_last == pytest.approx(frame_hw[0] - 0.5 - depth.scale_y / 2)


def test_batch_of_cameras_in_one_forward(engine):
    frames = [
        _frame_with_rectangle(90, 150, 30, 20, 99, 49),
        _frame_with_rectangle(200, 100, 10, 40, 69, 159),
    ]
    results = engine.infer(frames, cameras=["left", "right"])
    assert [r.detections.camera for r in results] == ["left", "right"]
    assert [r.depth.camera for r in results] == ["left", "right"]
    np.testing.assert_allclose(
        results[0].detections.boxes_xyxy[0], [29.5, 19.5, 99.5, 49.5], atol=0.6
    )
    np.testing.assert_allclose(
        results[1].detections.boxes_xyxy[0], [9.5, 39.5, 69.5, 159.5], atol=1.0
    )
    t = engine.last_timings
    assert t.batch == 2 and t.pre_ms > 0 and t.forward_ms > 0 and t.post_ms > 0
    assert t.total_ms == pytest.approx(t.pre_ms + t.forward_ms + t.post_ms)
    assert set(t.as_dict()) == {"pre", "forward", "post"}


def test_bad_frames_are_rejected(engine):
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        engine.infer(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="one camera name per frame"):
        engine.infer([np.zeros((10, 10, 3), np.uint8)], cameras=["a", "b"])
    assert engine.infer([]) == []


def test_real_network_engine_end_to_end(tmp_path):
    model = create_model("nano", input_hw=INPUT_HW)
    path = save_checkpoint(tmp_path / "nano.safetensors", model, provenance={"source": "test"})
    engine = Engine.from_checkpoint(path, EngineConfig(device="cpu", score_threshold=0.0, top_k=7))
    assert engine.input_hw == INPUT_HW and engine.info is not None
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(60, 80), (300, 200)]]
    results = engine.infer(frames)
    for frame, r in zip(frames, results, strict=True):
        r.detections.check()
        r.depth.check()
        assert len(r.detections.scores) == 7  # threshold 0: all top-K peaks
        boxes = r.detections.boxes_xyxy
        h, w = frame.shape[:2]
        assert (boxes[:, [0, 2]] >= -0.5).all() and (boxes[:, [0, 2]] <= w - 0.5).all()
        assert (boxes[:, [1, 3]] >= -0.5).all() and (boxes[:, [1, 3]] <= h - 0.5).all()
        assert r.detections.depth_m.dtype == np.float32 and (r.detections.depth_m > 0).all()
        assert (r.depth.depth_m > 0).all() and np.isfinite(r.depth.depth_m).all()


def test_default_checkpoint_and_missing_default(monkeypatch, tmp_path):
    assert default_checkpoint().parts[-3:] == ("perception", "weights", "nano.safetensors")
    monkeypatch.setattr(inference, "default_checkpoint", lambda: tmp_path / "absent.safetensors")
    with pytest.raises(UserError, match="not installed"):
        Engine.from_checkpoint()


def test_inverse_relative_network_needs_scale_and_shift():
    model = create_model("nano", input_hw=INPUT_HW, depth_output="inverse_relative")
    with pytest.raises(UserError, match="inverse relative depth"):
        Engine(model, EngineConfig(device="cpu"))
    engine = Engine(model, EngineConfig(device="cpu", inverse_depth_affine=(0.2, 0.05)))
    (r,) = engine.infer(np.zeros((64, 64, 3), np.uint8))
    # depth = 1 / (0.2 * inverse + 0.05) <= 20 m, and > 0 where defined.
    assert r.depth.depth_m.max() <= 20.0 + 1e-2 and r.depth.depth_m.min() >= 0


def test_engine_config_validation():
    with pytest.raises(UserError, match="multiples of 32"):
        EngineConfig(input_hw=(100, 100))
    with pytest.raises(UserError, match="score threshold"):
        EngineConfig(score_threshold=2.0)
    with pytest.raises(UserError, match="reduced precision"):
        Engine(create_model("nano"), EngineConfig(device="cpu", precision="bf16"))
    with pytest.raises(UserError, match="cuda_graph needs a CUDA"):
        Engine(create_model("nano"), EngineConfig(device="cpu", cuda_graph=True))
    assert inference.select_device("cpu").type == "cpu"
    assert inference.select_device("auto").type in ("cpu", "cuda", "mps")


def test_cpu_allocator_tuning_is_harmless():
    assert isinstance(inference.tune_cpu_allocator(), bool)
    assert math.isfinite(float(torch.ones(3).sum()))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_bf16_engine_maps_boxes_like_cpu():
    frame = _frame_with_rectangle(90, 150, 30, 20, 99, 49)
    (cpu,) = Engine(BrightBoxNetwork(), EngineConfig(device="cpu", score_threshold=0.5)).infer(
        frame
    )
    gpu = Engine(BrightBoxNetwork(), EngineConfig(device="cuda", score_threshold=0.5))
    assert gpu.dtype == torch.bfloat16
    (r,) = gpu.infer(frame)
    np.testing.assert_allclose(r.detections.boxes_xyxy, cpu.detections.boxes_xyxy, atol=0.6)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_replay_equals_eager_on_a_real_network():
    torch.manual_seed(0)
    model = create_model("nano", input_hw=INPUT_HW)
    eager = Engine(model, EngineConfig(device="cuda", score_threshold=0.0))
    graphed = Engine(eager.model, EngineConfig(device="cuda", score_threshold=0.0, cuda_graph=True))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (100, 160, 3), dtype=np.uint8) for _ in range(2)]
    for _ in range(2):  # capture, then replay
        a, b = eager.infer(frames), graphed.infer(frames)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose(ra.detections.scores, rb.detections.scores, atol=1e-2)
        np.testing.assert_allclose(
            ra.depth.depth_m.astype(np.float32), rb.depth.depth_m.astype(np.float32), rtol=2e-2
        )
