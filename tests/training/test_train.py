"""A short real training run: the loss goes down, the checkpoint loads, resume continues
exactly where the run stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from perception.errors import UserError
from perception.models.checkpoint import load_checkpoint, read_checkpoint_info
from perception.training.config import Phase, load_train_config, train_config_from_dict
from perception.training.loop import Trainer, lr_factor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth_cache")


def _config(cache: Path, out: Path, steps: int = 4, **phase: Any) -> dict[str, Any]:
    return {
        "model": "nano",
        "seed": 3,
        "data": {
            "kind": "synthetic",
            "synthetic": {
                "seeds": [7001],
                "frames_per_seed": 4,
                "frame_stride": 7,
                "cache_dir": str(cache),
                "workers": 1,
            },
            "augment": {"hflip_p": 0.5, "scale_p": 0.0, "colour_p": 0.0},
        },
        "phases": [
            {
                "input_hw": [64, 96],
                "steps": steps,
                "batch_size": 2,
                "lr": 3e-3,
                "warmup_steps": 1,
                **phase,
            }
        ],
        "out_dir": str(out),
        "threads": 1,
    }


def test_short_run_lowers_loss_and_writes_loadable_checkpoint(
    cache_dir: Path, tmp_path: Path
) -> None:
    cfg = train_config_from_dict(_config(cache_dir, tmp_path / "run", steps=24, min_lr_ratio=0.3))
    trainer = Trainer(cfg, progress=False)
    losses = []
    original_step = trainer.step

    def recording_step(batch: Any, lr: float) -> dict[str, float]:
        terms = original_step(batch, lr)
        losses.append(terms["total"])
        return terms

    trainer.step = recording_step  # type: ignore[method-assign]
    path = trainer.run()
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    model, info = load_checkpoint(path)
    assert info.input_hw == (64, 96)
    assert info.provenance["steps"] == 24
    assert info.provenance["data"]["seeds"] == [7001]
    assert info.provenance["config"]["phases"][0]["steps"] == 24
    out = model(torch.zeros(1, 3, 64, 96))
    assert torch.isfinite(out["log_depth"]).all()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"event": "epoch"' in line for line in lines)
    assert (tmp_path / "run" / "phase0.safetensors").is_file()


def test_resume_continues_from_saved_step_and_matches_uninterrupted(
    cache_dir: Path, tmp_path: Path
) -> None:
    straight = Trainer(
        train_config_from_dict(_config(cache_dir, tmp_path / "a", steps=5)), progress=False
    )
    straight.run()
    first = Trainer(
        train_config_from_dict(_config(cache_dir, tmp_path / "b", steps=5)), progress=False
    )
    first.run(stop_after_steps=3)
    assert read_checkpoint_info(tmp_path / "b" / "checkpoint.safetensors").provenance["steps"] == 3
    resumed = Trainer(
        train_config_from_dict(_config(cache_dir, tmp_path / "b", steps=5)),
        resume=True,
        progress=False,
    )
    assert resumed.state.global_step == 3
    resumed.run()
    assert resumed.state.global_step == 5
    a, _ = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(ta, tb, rtol=1e-4, atol=1e-5, msg=name)


def test_new_run_refuses_an_existing_run_folder(cache_dir: Path, tmp_path: Path) -> None:
    cfg = train_config_from_dict(_config(cache_dir, tmp_path / "c", steps=1))
    Trainer(cfg, progress=False).run()
    with pytest.raises(UserError, match="--resume"):
        Trainer(cfg, progress=False)
    with pytest.raises(UserError, match="nothing to resume"):
        Trainer(train_config_from_dict(_config(cache_dir, tmp_path / "d")), resume=True)


def test_schedule_warms_up_then_decays() -> None:
    p = Phase(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, p) == pytest.approx(0.1)
    assert lr_factor(9, p) == pytest.approx(1.0)
    assert lr_factor(10, p) == pytest.approx(1.0)
    assert lr_factor(55, p) == pytest.approx(0.55)
    assert lr_factor(100, p) == pytest.approx(0.1)


def test_shipped_configs_load() -> None:
    for size in ("nano", "small", "base"):
        cfg = load_train_config(REPO / "perception" / "configs" / f"train_{size}.yaml")
        assert cfg.model == size
        assert cfg.total_steps > 0


def test_bad_config_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: nano\nphases:\n  - {input_hw: [100, 640]}\n")
    with pytest.raises(UserError, match="multiples of 32"):
        load_train_config(bad)
    bad.write_text("model: nano\nlearning_rate: 3\n")
    with pytest.raises(UserError, match="unknown keys learning_rate"):
        load_train_config(bad)
    with pytest.raises(UserError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")
