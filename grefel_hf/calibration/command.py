"""The `grefel-hf calibrate` subcommand: fit a saved model folder's calibration on a validation split."""

from __future__ import annotations

import argparse
import logging

from ..evaluation.runner import add_split_arguments
from .fitting import METHODS

logger = logging.getLogger("grefel_hf")


def add_calibrate_parser(subparsers) -> None:
    """Add `calibrate` to the `grefel-hf` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "calibrate", help="fit a saved model's probability calibration on a validation split",
        description="Fits a temperature (and with --method temperature_bias a per-class bias) to the model's "
                    "uncalibrated log-probabilities on the split, by negative log-likelihood, and stores it in the "
                    "folder: the calibration fields of config.json, calibration.json (the values and the ECE, NLL, "
                    "accuracy and balanced accuracy before and after, which push_to_hub.py's model card shows), "
                    "and model.onnx exported again when the folder has one. --method prior_adjustment first shifts "
                    "the log-probabilities by -tau * log(training-set class prior), tau chosen on the split for the "
                    "highest balanced accuracy that costs at most 0.5 point of accuracy, then fits the temperature "
                    "to the shifted ones. Test splits are refused.")
    p.add_argument("--model", required=True, help="saved GReFEL folder (train_hf.py or save_grefel_folder output)")
    add_split_arguments(p, "validation", "the validation split to fit on", "fit on only the first N images")
    p.add_argument("--method", default="temperature", choices=METHODS,
                   help="temperature: never changes a predicted label; temperature_bias: also a per-class bias, "
                        "which can; prior_adjustment: the class-prior shift for balanced accuracy, then a "
                        "temperature (default: temperature)")
    p.add_argument("--priors_split", default="train",
                   help="prior_adjustment: the split whose class priors are divided out, the training split the "
                        "model learnt from (FER+: its labels follow --label_mode, so pass the model's own, e.g. "
                        "crossentropy for soft labels) (default: train)")


def run_calibrate_command(args) -> int:
    """Run `grefel-hf calibrate`; user errors are one log line and exit status 2."""
    from .folder import CalibrationOptions, calibrate_folder

    try:
        options = CalibrationOptions(
            model_dir=args.model, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
            label_mode=args.label_mode, method=args.method, batch_size=args.batch_size,
            max_samples=args.max_samples, num_workers=args.num_workers, cache_dir=args.cache_dir,
            progress=not args.no_progress, priors_split=args.priors_split,
        )
        record = calibrate_folder(options)
    except (OSError, ValueError, ImportError) as err:
        logger.error("grefel-hf calibrate: %s", err)
        return 2
    logger.info("%s", record.describe())
    logger.info("wrote the calibration into %s", args.model)
    return 0


__all__ = ["add_calibrate_parser", "run_calibrate_command"]
