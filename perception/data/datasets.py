"""Datasets (torch.utils.data.Dataset) of `Sample`s: drive folders on disk in KITTI layout, and
synthetic frames rendered on the fly.

Per-object depth is the z of the 3D box centre in the camera frame (KITTI: the z of the
label's location; the bottom centre and the centre share z for a level camera). Labels whose
KITTI type maps to None (DontCare, Misc, Tram by default) become ignore boxes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from perception.camera import CameraModel
from perception.data import kitti
from perception.data.augment import Augment
from perception.data.drive import DEPTH_DIR, IMAGE_DIR, LABEL_DIR, read_drive_info
from perception.data.sample import Sample
from perception.errors import UserError
from perception.synth.classes import CLASSES
from perception.synth.config import DriveConfig
from perception.synth.drive import SyntheticDrive, SynthFrame


def sample_from_frame(frame: SynthFrame, K: np.ndarray, classes: Sequence[str] = CLASSES) -> Sample:
    """A synthetic frame as a sample (objects of classes not in `classes` are ignore boxes)."""
    index = {c: i for i, c in enumerate(classes)}
    keep = [o for o in frame.objects if o.class_name in index]
    ignore = [o.box_xyxy for o in frame.ignored] + [
        o.box_xyxy for o in frame.objects if o.class_name not in index
    ]
    return Sample(
        image_bgr=frame.image_bgr,
        boxes_xyxy=np.array([o.box_xyxy for o in keep], np.float32).reshape(-1, 4),
        class_ids=np.array([index[o.class_name] for o in keep], np.int64),
        object_depth_m=np.array([o.depth_m for o in keep], np.float32),
        track_ids=np.array([o.track_id for o in keep], np.int64),
        depth_m=frame.depth_m,
        K=np.asarray(K, np.float64).copy(),
        ignore_boxes_xyxy=np.array(ignore, np.float32).reshape(-1, 4),
        instance_map=frame.instance_map,
        stamp_ns=frame.stamp_ns,
        index=frame.index,
    )


class _Augmented:
    """Shared augmentation plumbing: a generator per (seed, epoch, index), so items are
    reproducible whatever worker renders them."""

    augment: Augment | None
    augment_seed: int
    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Draw different augmentations in a new epoch (call from the training loop)."""
        self.epoch = int(epoch)

    def _augment(self, s: Sample, index: int) -> Sample:
        if self.augment is None:
            return s
        rng = np.random.default_rng([self.augment_seed, self.epoch, index])
        return self.augment(s, rng)


class KittiDriveDataset(Dataset, _Augmented):
    """A folder in KITTI layout: image_2/*.png, optional label_2/*.txt (object or tracking
    lines), depth/*.png (16-bit, m x 256), calib.txt or calib/<frame>.txt, timestamps.txt.
    Drive folders written by `perception synth` are such folders."""

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = CLASSES,
        type_map: Mapping[str, str | None] | None = None,
        augment: Augment | None = None,
        augment_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not (self.root / IMAGE_DIR).is_dir():
            raise UserError(f"{self.root} has no {IMAGE_DIR}/ folder (not a KITTI-layout drive)")
        self.images = sorted((self.root / IMAGE_DIR).glob("*.png"))
        if not self.images:
            raise UserError(f"{self.root / IMAGE_DIR} holds no .png images")
        self.classes = list(classes)
        self.type_map = dict(kitti.DEFAULT_TYPE_MAP if type_map is None else type_map)
        self.augment, self.augment_seed, self.epoch = augment, augment_seed, 0
        self.info = read_drive_info(self.root)
        self._calib = (
            kitti.read_calib(self.root / "calib.txt")
            if (self.root / "calib.txt").exists()
            else None
        )
        ts = self.root / "timestamps.txt"
        self.stamps_ns = kitti.read_timestamps(ts) if ts.exists() else None
        if self.stamps_ns is not None and len(self.stamps_ns) != len(self.images):
            raise UserError(f"{ts} has {len(self.stamps_ns)} lines for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def K(self, stem: str) -> np.ndarray:
        if self._calib is not None:
            return self._calib.K
        per_frame = self.root / "calib" / f"{stem}.txt"
        if per_frame.exists():
            return kitti.read_calib(per_frame).K
        raise UserError(f"{self.root}: no calib.txt nor calib/{stem}.txt")

    def labels(self, stem: str) -> list[kitti.KittiObject]:
        path = self.root / LABEL_DIR / f"{stem}.txt"
        return kitti.read_labels(path) if path.exists() else []

    def raw(self, i: int) -> Sample:
        """Item i without augmentation."""
        path = self.images[i]
        stem = path.stem
        image = kitti.read_image(path)
        h, w = image.shape[:2]
        depth_path = self.root / DEPTH_DIR / f"{stem}.png"
        depth = (
            kitti.read_depth_png(depth_path)
            if depth_path.exists()
            else np.zeros((h, w), np.float32)
        )
        if depth.shape != (h, w):
            raise UserError(
                f"{depth_path}: size {depth.shape[::-1]} differs from the image's {(w, h)}"
            )
        boxes, cls, zs, ids, ignore = [], [], [], [], []
        for o in self.labels(stem):
            name = self.type_map.get(o.type)
            if name is None or name not in self.classes:
                ignore.append(o.bbox_xyxy)
                continue
            boxes.append(o.bbox_xyxy)
            cls.append(self.classes.index(name))
            zs.append(o.location_xyz[2])
            ids.append(-1 if o.track_id is None else o.track_id)
        return Sample(
            image_bgr=image,
            boxes_xyxy=np.array(boxes, np.float32).reshape(-1, 4),
            class_ids=np.array(cls, np.int64),
            object_depth_m=np.array(zs, np.float32),
            track_ids=np.array(ids, np.int64),
            depth_m=depth,
            K=self.K(stem),
            ignore_boxes_xyxy=np.array(ignore, np.float32).reshape(-1, 4),
            stamp_ns=self.stamps_ns[i] if self.stamps_ns is not None else 0,
            index=int(stem) if stem.isdigit() else i,
        )

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._augment(self.raw(i), i)


class SyntheticDataset(Dataset, _Augmented):
    """Frames of synthetic drives rendered on demand: item i is frame
    ``start_frame + (i % frames_per_seed) * frame_stride`` of seed ``seeds[i // frames_per_seed]``.

    Drives are built lazily in each worker process (a few are kept), so the dataset pickles
    cheaply into DataLoader workers.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        frames_per_seed: int,
        camera: CameraModel,
        config: DriveConfig | None = None,
        frame_stride: int = 1,
        start_frame: int = 0,
        classes: Sequence[str] = CLASSES,
        augment: Augment | None = None,
        augment_seed: int = 0,
        keep_drives: int = 4,
    ) -> None:
        if frames_per_seed <= 0 or frame_stride <= 0 or not seeds:
            raise UserError("need at least one seed and positive frames_per_seed, frame_stride")
        self.seeds = [int(s) for s in seeds]
        self.frames_per_seed = frames_per_seed
        self.frame_stride = frame_stride
        self.start_frame = start_frame
        self.camera = camera
        self.config = config or DriveConfig()
        self.config.validate()
        self.classes = list(classes)
        self.augment, self.augment_seed, self.epoch = augment, augment_seed, 0
        self.keep_drives = keep_drives
        self._drives: OrderedDict[int, SyntheticDrive] = OrderedDict()

    def __len__(self) -> int:
        return len(self.seeds) * self.frames_per_seed

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_drives"] = OrderedDict()  # rebuilt in the worker
        return state

    def drive(self, seed: int) -> SyntheticDrive:
        d = self._drives.get(seed)
        if d is None:
            d = SyntheticDrive(seed, self.camera, self.config)
            self._drives[seed] = d
            if len(self._drives) > self.keep_drives:
                self._drives.popitem(last=False)
        else:
            self._drives.move_to_end(seed)
        return d

    def locate(self, i: int) -> tuple[int, int]:
        """(seed, frame index) of item i."""
        seed = self.seeds[i // self.frames_per_seed]
        return seed, self.start_frame + (i % self.frames_per_seed) * self.frame_stride

    def raw(self, i: int) -> Sample:
        seed, frame = self.locate(i)
        return sample_from_frame(self.drive(seed).frame(frame), self.camera.K, self.classes)

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._augment(self.raw(i), i)
