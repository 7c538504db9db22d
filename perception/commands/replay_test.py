"""`perception replay-test DRIVE --refs REFS`: golden regression of the stack on a drive."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from perception.errors import UserError


def cmd_replay_test(args: argparse.Namespace) -> int:
    from perception.recording.golden import (
        compare,
        format_report,
        load_outputs,
        run_stack,
        tolerances_from,
    )

    drive, refs = Path(args.drive), Path(args.refs)
    if not drive.is_file():
        raise UserError(f"drive {drive} does not exist")
    if not args.update_refs and not refs.is_file():
        raise UserError(f"references {refs} do not exist (create them with --update-refs)")
    tolerances = tolerances_from(args.tolerances)
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "outputs.mcap"
        log = Path(args.log) if args.log else Path(tmp) / "stack.log"
        print(f"replay-test: replaying {drive} through detector and tracker (lockstep)", flush=True)
        run_stack(drive, output, checkpoint=args.checkpoint, log=log)
        if args.update_refs:
            refs.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(output, refs)
            counts = {t: len(m) for t, m in load_outputs(refs).items()}
            print(f"replay-test: wrote references {refs}: {counts}")
            return 0
        report = compare(load_outputs(output), load_outputs(refs), tolerances)
    print(format_report(report))
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay-test",
        help="golden regression: replay a drive through the stack, compare with references",
        description="Replays DRIVE (an MCAP recording with camera frames) through the detector "
        "and tracker in lockstep (every frame processed, whatever the machine's speed) and "
        "compares every output (detections, depth, tracks) with the reference recording, "
        "field by field with tolerances, ignoring timing fields. Prints which frame, which "
        "object and how far for each difference; exits 1 when any tolerance is exceeded.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("drive", help="MCAP recording with camera/frames (and camera/info)")
    p.add_argument("--refs", required=True, help="reference outputs (MCAP)")
    p.add_argument("--update-refs", action="store_true", help="write REFS from this run")
    p.add_argument("--checkpoint", default="", help="network (default: the shipped one)")
    p.add_argument("--tolerances", default="", help="YAML of Tolerances fields to override")
    p.add_argument("--log", default="", help="keep the stack's log in this file")
    p.set_defaults(func=cmd_replay_test)
