"""The `grefel-hf` command: `grefel-hf evaluate --model_dir M --dataset NAME_OR_PATH --output_dir OUT [...]`, and
`predict`, `export-onnx` and `explain` (`grefel_hf.inference.commands`), `calibrate`
(`grefel_hf.calibration.command`) and `demo` (`grefel_hf.demo.command`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from .calibration.command import add_calibrate_parser, run_calibrate_command
from .demo.command import add_demo_parser, run_demo_command
from .evaluation.runner import EvaluationOptions, add_split_arguments, run_evaluation
from .inference.commands import COMMANDS as INFERENCE_COMMANDS
from .inference.commands import add_inference_parsers, run_inference_command

logger = logging.getLogger("grefel_hf")


def _evaluate_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a saved model on a dataset split",
        description="Write metrics.json, confusion_matrix.png, reliability_diagram.png, risk_coverage.png "
                    "(selective prediction ranked by top probability, reliability and their product), "
                    "training_curves.png (when trainer_state.json is beside the model), report.md and report.tex "
                    "to --output_dir.",
    )
    p.add_argument("--model_dir", required=True, help="saved GReFEL folder (train_hf.py output) or hub id")
    p.add_argument("--output_dir", required=True, help="where to write the metrics, figures and reports")
    add_split_arguments(p, "test", "split to evaluate", "evaluate only the first N images")
    p.add_argument("--tta_views", type=int, default=1,
                   help="test-time augmentation: average over the first N of the views identity, mirror, shift "
                        "left, right, up, down (1 = no TTA, at most 6)")
    p.add_argument("--tta", action="store_const", const=6, dest="tta_views", help="the same as --tta_views 6")
    p.add_argument("--tta_shift", type=float, default=0.05,
                   help="TTA shift as a fraction of the image size, in (0, 0.25]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grefel-hf", description="GReFEL facial-expression recognition tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _evaluate_parser(subparsers)
    add_inference_parsers(subparsers)
    add_calibrate_parser(subparsers)
    add_demo_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `grefel-hf` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.command in INFERENCE_COMMANDS:
        return run_inference_command(args)
    if args.command == "demo":
        return run_demo_command(args)
    if args.command == "calibrate":
        return run_calibrate_command(args)
    try:
        options = EvaluationOptions(
            model_dir=args.model_dir, dataset=args.dataset, output_dir=args.output_dir, data_dir=args.data_dir,
            split=args.split, label_mode=args.label_mode, batch_size=args.batch_size, tta_views=args.tta_views,
            tta_shift=args.tta_shift, max_samples=args.max_samples, num_workers=args.num_workers,
            cache_dir=args.cache_dir, progress=not args.no_progress,
        )
        run_evaluation(options)
    except (OSError, ValueError) as err:
        logger.error("grefel-hf evaluate: %s", err)
        return 2
    logger.info("wrote the evaluation to %s", args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
