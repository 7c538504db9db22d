"""`perception train CONFIG.yaml [--resume] [--out DIR]`: train the detection + depth network."""

from __future__ import annotations

import argparse
import logging

from perception.training.config import load_train_config


def cmd_train(args: argparse.Namespace) -> int:
    from perception.training.loop import Trainer  # torch import only when training

    config = load_train_config(args.config)
    if args.out:
        config.out_dir = args.out
    if args.threads:
        config.threads = args.threads
    if args.device:
        config.device = args.device
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    trainer = Trainer(config, resume=args.resume, progress=not args.no_progress)
    path = trainer.run()
    print(f"checkpoint: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the detection + depth network from a YAML config",
        description="Train a network (nano, small, base) on synthetic drives (rendered once "
        "into a cache folder) or on folders in KITTI layout, as the YAML config says: "
        "multi-task loss (focal heatmap, L1 box size/offset/object depth, SILog + L1 dense "
        "log-depth), AdamW, warm-up + cosine schedule per phase, bf16 autocast on CUDA. "
        "Writes OUT/checkpoint.safetensors (self-describing, with provenance), "
        "OUT/phase<k>.safetensors at each phase end, OUT/state.pt (resume state) and "
        "OUT/metrics.jsonl (one JSON object per epoch). Configs: perception/configs/"
        "train_{nano,small,base}.yaml; see docs/training.md.",
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="training configuration (YAML)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its last saved step",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default: the config's out_dir)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the config's)")
    p.add_argument("--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ... (default: config's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
