"""The training loop behind ``perception train``.

Per step: a batch (fit to the phase's input size, augmented, CenterNet targets), the network,
:class:`perception.models.losses.DetectionDepthLoss` (focal heatmap, L1 size/offset/object
log-depth, SILog + L1 dense log-depth), backward, gradient clipping, AdamW, the learning rate of
the phase's warm-up + cosine schedule. bf16 autocast on CUDA only (CPUs train in fp32).

Files in the output folder:

* ``checkpoint.safetensors``: the latest weights (self-describing, with provenance);
* ``phase<k>.safetensors``: the weights at the end of phase k;
* ``state.pt``: what resuming needs besides the weights (optimiser, step, phase, epoch,
  random states): our own file, loaded with ``weights_only=True``;
* ``metrics.jsonl``: one JSON object per finished epoch (mean losses, learning rate, speed),
  plus one per phase end;
* ``config.yaml``: the configuration of the latest (re)start.

A run saves at least every ``checkpoint_every_s`` seconds, so an interrupted run loses little and
``--resume`` continues from the saved step with the same data order and schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from perception.errors import UserError
from perception.inference import select_device, tune_cpu_allocator
from perception.models.checkpoint import load_checkpoint, save_checkpoint
from perception.models.hybrid_dpt import HybridDPT
from perception.models.losses import DetectionDepthLoss, LossWeights
from perception.models.registry import create_model
from perception.synth.classes import CLASSES
from perception.training.config import Phase, TrainConfig
from perception.training.data import (
    Batch,
    TrainingSamples,
    collate,
    data_roots,
    make_augment,
    open_datasets,
)

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
STATE_NAME = "state.pt"
METRICS_NAME = "metrics.jsonl"
LOSS_KEYS = ("total", "heatmap", "size", "offset", "obj_depth", "depth_silog", "depth_l1")


def lr_factor(step: int, phase: Phase) -> float:
    """Linear warm-up from 0, then cosine from 1 down to ``min_lr_ratio`` at the phase end."""
    if phase.warmup_steps and step < phase.warmup_steps:
        return (step + 1) / phase.warmup_steps
    span = max(phase.steps - phase.warmup_steps, 1)
    t = min(max(step - phase.warmup_steps, 0) / span, 1.0)
    return phase.min_lr_ratio + (1 - phase.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class EpochBatches(Sampler[list[int]]):
    """Shuffled batches of one epoch, drawn from ``(seed, phase, epoch)``; starts at
    ``skip`` batches in (resuming mid-epoch reproduces the same order). Drops the last partial
    batch."""

    def __init__(
        self, n: int, batch_size: int, seed: int, phase: int, epoch: int, skip: int = 0
    ) -> None:
        self.n, self.batch_size = n, batch_size
        self.order = np.random.default_rng([seed, phase, epoch]).permutation(n)
        self.skip = skip

    def __len__(self) -> int:
        return max(self.n // self.batch_size - self.skip, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.skip, self.n // self.batch_size):
            yield self.order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


@dataclass
class RunState:
    """Where a run is: which phase, how many steps into it, how many in all."""

    phase: int = 0
    phase_step: int = 0
    global_step: int = 0
    elapsed_s: float = 0.0


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and position embeddings (1-D or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Trainer:
    """One training run (build it, then :meth:`run`)."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.out = Path(out_dir or config.out_dir)
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        tune_cpu_allocator()
        self.device = select_device(config.device)
        torch.manual_seed(config.seed)
        self.state = RunState()
        self.model = self._build_model()
        self.loss = DetectionDepthLoss(LossWeights(**dataclasses.asdict(config.loss)))
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, config.optim.weight_decay),
            lr=config.phases[0].lr,
            betas=config.optim.betas,
        )
        if resume:
            self._load_state()
        elif (self.out / STATE_NAME).exists():
            raise UserError(
                f"{self.out} already holds a run (use --resume to continue it, or another --out)"
            )
        self.roots = data_roots(config.data, progress)
        self.datasets = open_datasets(self.roots, config.data, self.model.config.classes)
        self.augment = make_augment(config.data)

    # -- setup ---------------------------------------------------------------------------------
    def _build_model(self) -> HybridDPT:
        cfg = self.config
        overrides = dict(cfg.model_overrides)
        overrides.setdefault("classes", CLASSES)
        overrides["input_hw"] = tuple(cfg.phases[-1].input_hw)
        if cfg.init_checkpoint:
            model, _ = load_checkpoint(cfg.init_checkpoint)
        else:
            model = create_model(cfg.model, **overrides)
        return model.to(self.device).train()

    def _load_state(self) -> None:
        ckpt, state_path = self.out / CHECKPOINT_NAME, self.out / STATE_NAME
        if not ckpt.exists() or not state_path.exists():
            raise UserError(f"nothing to resume in {self.out} (no {CHECKPOINT_NAME}/{STATE_NAME})")
        model, _ = load_checkpoint(ckpt)
        self.model.load_state_dict(model.state_dict())
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = RunState(**saved["run"])
        torch.set_rng_state(saved["torch_rng"])
        log.info("resuming at step %d (phase %d)", self.state.global_step, self.state.phase)

    def provenance(self) -> dict[str, Any]:
        cfg = self.config
        data: dict[str, Any] = {"kind": cfg.data.kind, "frames": sum(len(d) for d in self.datasets)}
        if cfg.data.kind == "synthetic":
            syn = cfg.data.synthetic
            data.update(
                seeds=syn.seeds,
                frames_per_seed=syn.frames_per_seed,
                frame_stride=syn.frame_stride,
                start_frame=syn.start_frame,
                calibration=syn.calibration,
            )
        else:
            data["roots"] = [str(r) for r in self.roots]
        return {
            "source": "perception train",
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "steps": self.state.global_step,
            "phase": self.state.phase,
            "phase_step": self.state.phase_step,
            "train_seconds": round(self.state.elapsed_s, 1),
            "data": data,
            "torch": torch.__version__,
            "device": str(self.device),
            "host": platform.machine(),
        }

    # -- saving --------------------------------------------------------------------------------
    def save(self, extra_name: str | None = None, phase_index: int | None = None) -> Path:
        """Write the weights (and a copy under ``extra_name``) and the resume state.

        The checkpoint's ``input_hw`` is that of phase ``phase_index`` (default: the current
        phase, or the last one when all are done): the size the weights were trained at.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if phase_index is None:
            phase_index = min(self.state.phase, len(self.config.phases) - 1)
        phase = self.config.phases[phase_index]
        input_hw = (phase.input_hw[0], phase.input_hw[1])
        self.model.config = dataclasses.replace(self.model.config, input_hw=input_hw)
        prov = self.provenance()
        tmp = self.out / (CHECKPOINT_NAME + ".tmp")
        save_checkpoint(tmp, self.model, prov)
        tmp.chmod(0o644)  # safetensors writes 0600; checkpoints are meant to be shared
        tmp.replace(self.out / CHECKPOINT_NAME)
        if extra_name:
            save_checkpoint(self.out / extra_name, self.model, prov).chmod(0o644)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "run": dataclasses.asdict(self.state),
            "torch_rng": torch.get_rng_state(),
        }
        tmp_state = self.out / (STATE_NAME + ".tmp")
        torch.save(state, tmp_state)
        tmp_state.replace(self.out / STATE_NAME)
        return self.out / CHECKPOINT_NAME

    def _log(self, record: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / METRICS_NAME).open("a") as f:
            f.write(json.dumps(record) + "\n")

    # -- training --------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, batch: Batch, lr: float) -> dict[str, float]:
        """One optimiser step; returns the loss terms as floats."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device)
        with self._autocast():
            outputs = self.model(batch.images)
        terms = self.loss(outputs, batch.targets, batch.depth_m)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if self.config.optim.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.optim.grad_clip_norm
            )
        self.optimizer.step()
        return {k: float(terms[k].detach()) for k in LOSS_KEYS}

    def run(self, stop_after_steps: int | None = None) -> Path:
        """Train every remaining phase; returns the checkpoint path.

        ``stop_after_steps``: save and return once the run has made this many steps in all
        (an interruption on purpose: ``--resume`` continues from there).
        """
        cfg = self.config
        # The configuration this (re)start runs with (a resumed run may change later phases).
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        last_save = time.monotonic()
        while self.state.phase < len(cfg.phases):
            k = self.state.phase
            phase = cfg.phases[k]
            samples = TrainingSamples(
                self.datasets,
                (phase.input_hw[0], phase.input_hw[1]),
                self.model.config.num_classes,
                self.model.config.det_stride,
                self.model.config.mean,
                self.model.config.std,
                self.augment,
                seed=cfg.seed,
                max_objects=cfg.data.max_objects,
            )
            per_epoch = len(samples) // phase.batch_size
            if per_epoch < 1:
                raise UserError(
                    f"phase {k}: {len(samples)} samples are fewer than one batch of "
                    f"{phase.batch_size}"
                )
            bar = tqdm(
                total=phase.steps,
                initial=self.state.phase_step,
                desc=f"phase {k} {phase.input_hw[0]}x{phase.input_hw[1]}",
                unit="step",
                disable=not self.progress,
                dynamic_ncols=True,
            )
            while self.state.phase_step < phase.steps:
                epoch, skip = divmod(self.state.phase_step, per_epoch)
                samples.set_epoch(epoch)
                sampler = EpochBatches(len(samples), phase.batch_size, cfg.seed, k, epoch, skip)
                loader = DataLoader(
                    samples,
                    batch_sampler=sampler,
                    collate_fn=collate,
                    num_workers=cfg.data.loader_workers,
                    persistent_workers=False,
                )
                sums = dict.fromkeys(LOSS_KEYS, 0.0)
                count = 0
                t_epoch = time.monotonic()
                for batch in loader:
                    t0 = time.monotonic()
                    lr = phase.lr * lr_factor(self.state.phase_step, phase)
                    terms = self.step(batch, lr)
                    self.state.phase_step += 1
                    self.state.global_step += 1
                    self.state.elapsed_s += time.monotonic() - t0
                    for key in LOSS_KEYS:
                        sums[key] += terms[key]
                    count += 1
                    bar.update()
                    bar.set_postfix(
                        loss=f"{terms['total']:.3f}",
                        hm=f"{terms['heatmap']:.3f}",
                        silog=f"{terms['depth_silog']:.3f}",
                        lr=f"{lr:.1e}",
                    )
                    if time.monotonic() - last_save >= cfg.checkpoint_every_s:
                        self.save()
                        last_save = time.monotonic()
                    if self.state.phase_step >= phase.steps:
                        break
                    if stop_after_steps is not None and self.state.global_step >= stop_after_steps:
                        bar.close()
                        self.save()
                        return self.out / CHECKPOINT_NAME
                if count:
                    seconds = time.monotonic() - t_epoch
                    self._log(
                        {
                            "event": "epoch",
                            "phase": k,
                            "epoch": epoch,
                            "step": self.state.global_step,
                            "phase_step": self.state.phase_step,
                            "lr": lr,
                            "batches": count,
                            "seconds": round(seconds, 2),
                            "images_per_s": round(count * phase.batch_size / seconds, 3),
                            **{f"loss_{key}": round(v / count, 5) for key, v in sums.items()},
                        }
                    )
            bar.close()
            self.state.phase += 1
            self.state.phase_step = 0
            self.save(extra_name=f"phase{k}.safetensors", phase_index=k)
            self._log({"event": "phase_end", "phase": k, "step": self.state.global_step})
            last_save = time.monotonic()
        return self.out / CHECKPOINT_NAME
