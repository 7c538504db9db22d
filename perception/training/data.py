"""Training data: synthetic drives rendered once to disk, KITTI-layout folders, batches.

Synthetic drives are rendered into drive folders (``perception.data.DriveWriter``, KITTI
layout) under the cache folder, one per seed, in parallel processes; a folder whose
``drive.json`` exists is complete and reused. From then on synthetic and KITTI data take the
same path: :class:`perception.data.KittiDriveDataset` per folder.

Each sample is first fitted to the network input exactly as the engine does it
(:class:`perception.models.letterbox.Letterbox`: keep aspect ratio, centre, pad): depth stays
metric (the camera is only seen at a lower resolution), then augmented
(:class:`perception.data.Augment`: flip, a mild scale/crop that keeps size and depth
consistent, colour), then turned into CenterNet targets.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from perception.camera import CameraModel
from perception.data import Augment, AugmentConfig, DriveWriter, KittiDriveDataset, Sample
from perception.data.augment import scale_crop
from perception.models.letterbox import Letterbox
from perception.models.targets import encode_targets, stack_targets
from perception.paths import resolve_data_path
from perception.synth import SyntheticDrive
from perception.synth.classes import CLASSES
from perception.training.config import DataConfig, SyntheticData

log = logging.getLogger(__name__)


# -- the synthetic cache ---------------------------------------------------------------------
def drive_dir(cache_dir: Path, seed: int, syn: SyntheticData) -> Path:
    """Folder of one cached drive; the name holds everything that changes its content."""
    return (
        cache_dir / f"seed{seed:05d}_f{syn.start_frame}_n{syn.frames_per_seed}_s{syn.frame_stride}"
    )


def _render_drive(job: tuple[int, str, str, int, int, int]) -> str:
    """Render one seed's frames into a drive folder (runs in a worker process)."""
    seed, out, calibration, start, count, stride = job
    root = Path(out)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    camera = CameraModel.load(calibration)
    drive = SyntheticDrive(seed, camera)
    writer = DriveWriter(tmp, camera, fps=drive.config.fps, seed=seed, start_frame=start)
    for k in range(count):
        writer.write(drive.frame(start + k * stride))
    writer.close()
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)  # complete folders only: a killed run leaves a .partial, redone next time
    return str(root)


def build_synthetic_cache(syn: SyntheticData, progress: bool = True) -> list[Path]:
    """Render every seed not cached yet; returns the drive folders in seed order."""
    cache = Path(syn.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    calibration = str(resolve_data_path(syn.calibration))
    roots = [drive_dir(cache, s, syn) for s in syn.seeds]
    todo = [
        (s, str(r), calibration, syn.start_frame, syn.frames_per_seed, syn.frame_stride)
        for s, r in zip(syn.seeds, roots, strict=True)
        if not (r / "drive.json").is_file()
    ]
    if todo:
        bar = tqdm(total=len(todo), desc="rendering drives", unit="drive", disable=not progress)
        if syn.workers > 1 and len(todo) > 1:
            with mp.get_context("spawn").Pool(min(syn.workers, len(todo))) as pool:
                for _ in pool.imap_unordered(_render_drive, todo):
                    bar.update()
        else:
            for job in todo:
                _render_drive(job)
                bar.update()
        bar.close()
    return roots


def data_roots(config: DataConfig, progress: bool = True) -> list[Path]:
    """The drive folders a run trains on (rendering the synthetic cache first if needed)."""
    if config.kind == "synthetic":
        return build_synthetic_cache(config.synthetic, progress)
    return [Path(r) for r in config.kitti.roots]


# -- samples to tensors ----------------------------------------------------------------------
def fit_to_input(sample: Sample, input_hw: tuple[int, int]) -> Sample:
    """The sample as the engine would see it: letterboxed into ``input_hw``, depth metric."""
    box = Letterbox.fit((sample.height, sample.width), input_hw)
    if box.is_identity:
        return sample
    scale = box.resized_hw[1] / sample.width
    return scale_crop(
        sample,
        scale,
        -box.pad_left,
        -box.pad_top,
        input_hw[1],
        input_hw[0],
        depth_mode="keep",
        min_box_px=1.0,
        min_kept_fraction=0.0,
    )


@dataclass
class Batch:
    """Network-ready tensors of a batch."""

    images: torch.Tensor  # (B, 3, H, W) normalised RGB
    targets: dict[str, torch.Tensor]
    depth_m: torch.Tensor  # (B, H, W) metres, 0 = unknown

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=True),
            {k: v.to(device, non_blocking=True) for k, v in self.targets.items()},
            self.depth_m.to(device, non_blocking=True),
        )


class TrainingSamples(Dataset):
    """Wraps sample datasets: fit to the input size, augment, encode CenterNet targets."""

    def __init__(
        self,
        datasets: Sequence[KittiDriveDataset],
        input_hw: tuple[int, int],
        num_classes: int,
        det_stride: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment | None,
        seed: int = 0,
        max_objects: int = 64,
    ) -> None:
        self.parts = list(datasets)
        self.concat: ConcatDataset[Sample] = ConcatDataset(self.parts)
        self.input_hw = input_hw
        self.num_classes = num_classes
        self.det_stride = det_stride
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.max_objects = max_objects

    def __len__(self) -> int:
        return len(self.concat)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        sample = fit_to_input(self.concat[i], self.input_hw)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            sample = self.augment(sample, rng)
        rgb = sample.image_bgr[..., ::-1].astype(np.float32) / 255.0
        image = torch.from_numpy(((rgb - self.mean) / self.std).transpose(2, 0, 1).copy())
        targets = encode_targets(
            sample.boxes_xyxy,
            sample.class_ids,
            sample.object_depth_m,
            self.num_classes,
            self.input_hw,
            self.det_stride,
            self.max_objects,
        )
        return image, targets, torch.from_numpy(np.ascontiguousarray(sample.depth_m))


def collate(items: list[tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]) -> Batch:
    images, targets, depth = zip(*items, strict=True)
    return Batch(torch.stack(images), stack_targets(list(targets)), torch.stack(depth))


def make_augment(config: DataConfig) -> Augment:
    a = config.augment
    return Augment(
        AugmentConfig(
            hflip_p=a.hflip_p,
            scale_p=a.scale_p,
            scale_range=a.scale_range,
            colour_p=a.colour_p,
            depth_mode="rescale",
        )
    )


def open_datasets(
    roots: Sequence[Path], config: DataConfig, classes: Sequence[str] = CLASSES
) -> list[KittiDriveDataset]:
    type_map = config.kitti.type_map if config.kind == "kitti" else None
    return [KittiDriveDataset(r, classes=classes, type_map=type_map) for r in roots]
