"""Synthetic drive generator speed: frames rendered per second (sequential and random access).

Renders frames of a few seeds on one thread (OpenCV's thread pool is set to the requested
size), and reports wall-clock and process CPU time per frame, plus the mean scene size. Prints
one JSON object per access pattern. With --write, also times encoding the frames to a drive
folder (PNG image + depth + labels) in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perception.camera import CameraModel

DEFAULT_CALIBRATION = "calibration/synthetic_front.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=60, help="frames timed per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="drives to render")
    parser.add_argument("--calibration", default=DEFAULT_CALIBRATION, help="camera YAML")
    parser.add_argument("--width", type=int, help="render width (intrinsics scaled)")
    parser.add_argument("--height", type=int, help="render height (intrinsics scaled)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = one core)")
    parser.add_argument("--write", action="store_true", help="also time writing a drive folder")


def _camera(args: argparse.Namespace) -> CameraModel:
    from perception.camera import CameraModel
    from perception.paths import resolve_data_path

    cam = CameraModel.load(resolve_data_path(args.calibration))
    if args.width or args.height:
        w = args.width or round(cam.width * args.height / cam.height)
        h = args.height or round(cam.height * w / cam.width)
        cam = cam.scaled(w, h)
    return cam


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from perception.synth import SyntheticDrive

    cv2.setNumThreads(args.threads)
    camera = _camera(args)
    for pattern in ("sequential", "random"):
        wall, cpu, objects, faces = [], [], [], []
        for seed in args.seeds:
            drive = SyntheticDrive(seed, camera)
            drive.frame(0)  # warm caches and allocations
            if pattern == "sequential":
                indices = list(range(1, args.frames + 1))
            else:
                indices = np.random.default_rng(seed).integers(0, 100_000, args.frames).tolist()
            for i in indices:
                t0, c0 = time.perf_counter(), time.process_time()
                f = drive.frame(int(i))
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                objects.append(len(f.objects))
                faces.append(f.faces_drawn)
        print(
            json.dumps(
                {
                    "bench": "synth",
                    "access": pattern,
                    "width": camera.width,
                    "height": camera.height,
                    "threads": args.threads,
                    "frames": len(wall),
                    "frames_per_s": round(len(wall) / sum(wall), 2),
                    "cpu_frames_per_s": round(len(cpu) / sum(cpu), 2),
                    "ms_per_frame_median": round(statistics.median(wall) * 1e3, 2),
                    "ms_per_frame_p90": round(float(np.percentile(wall, 90)) * 1e3, 2),
                    "objects_per_frame": round(statistics.mean(objects), 2),
                    "faces_per_frame": round(statistics.mean(faces), 1),
                }
            ),
            flush=True,
        )
    if args.write:
        from perception.data.drive import DriveWriter

        drive = SyntheticDrive(args.seeds[0], camera)
        with tempfile.TemporaryDirectory() as tmp:
            writer = DriveWriter(tmp, camera, fps=drive.config.fps, seed=args.seeds[0])
            frames = [drive.frame(i) for i in range(args.frames)]
            t0 = time.perf_counter()
            for f in frames:
                writer.write(f)
            writer.close()
            dt = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "bench": "synth_write",
                    "frames": len(frames),
                    "frames_per_s": round(len(frames) / dt, 2),
                    "width": camera.width,
                    "height": camera.height,
                }
            ),
            flush=True,
        )
    return 0
