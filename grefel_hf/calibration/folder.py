"""Calibrating a saved model folder on a validation split (`grefel-hf calibrate`).

The model's uncalibrated log-probabilities on the split are collected (the stored calibration set aside), a
calibration is fitted to them (`fitting.fit_calibration`; the prior adjustment also reads the class priors of the
training split, `priors_split`, with the same dataset options), and the folder is updated: the calibration fields of
`config.json` (nothing else in it changes), `calibration.json` with the fit's record, and `model.onnx` exported
again when the folder has one, so that ONNX Runtime computes the calibrated probabilities too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..evaluation.runner import check_loader_numbers
from .fitting import METHODS, CalibrationRecord, fit_calibration

logger = logging.getLogger(__name__)


@dataclass
class CalibrationOptions:
    """What to calibrate and on which data (the `grefel-hf calibrate` options; the data fields are those of
    `EvaluationOptions`, which `evaluation.runner.load_split` reads). `priors_split` is the split whose class
    priors the `"prior_adjustment"` method divides out (the training split the model learnt from; with FER+, its
    labels follow `label_mode`, so pass the model's own)."""

    model_dir: str
    dataset: str
    data_dir: str | None = None
    split: str = "validation"
    label_mode: str | None = None
    method: str = "temperature"
    batch_size: int = 64
    max_samples: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None
    progress: bool = True
    priors_split: str = "train"

    def __post_init__(self) -> None:
        """Refuse a test split, an unknown method, impossible numbers or a model that is not a saved folder."""
        for option, split in (("--split", self.split), ("--priors_split", self.priors_split)):
            if "test" in split.lower():
                raise ValueError(f"{option} {split!r} looks like a test split; a calibration is fitted on a "
                                 "validation split (and its priors read from a training split), so that test "
                                 "figures stay unbiased")
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        check_loader_numbers(self)
        if not (Path(self.model_dir) / "config.json").is_file():
            raise FileNotFoundError(f"--model {self.model_dir} is not a saved model folder (no config.json)")


def set_identity_calibration(config) -> None:
    """Set `config`'s calibration aside: the model then returns its uncalibrated log-probabilities."""
    config.calibration_temperature = 1.0
    config.calibration_bias = None


def uncalibrated_predictions(options: CalibrationOptions) -> tuple[np.ndarray, np.ndarray]:
    """(labels, uncalibrated log-probabilities) of the folder's model on the split.

    Raises:
        ValueError: the model is not GReFEL (only GReFEL stores a calibration), or the split does not fit it.
    """
    from ..evaluation.runner import evaluation_loader, load_split, load_variant, predict

    model, processor = load_variant(options.model_dir)
    if model.config.model_type != "grefel":
        raise ValueError(f"{options.model_dir} holds a {model.config.model_type!r} model; only GReFEL models store "
                         "a calibration")
    set_identity_calibration(model.config)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    dataset = load_split(options, names)
    labels, probs, _ = predict(model, evaluation_loader(dataset, processor, options), 1, 0.05, options.progress)
    return labels, np.log(np.clip(probs, 1e-12, None))


def training_priors(options: CalibrationOptions, label_names: list[str]) -> tuple[np.ndarray, str]:
    """The class priors of `options.priors_split` (`priors.class_priors`) and where they come from, in words."""
    from ..evaluation.runner import load_split
    from .priors import class_priors

    dataset = load_split(replace(options, split=options.priors_split, max_samples=None), label_names)
    targets = "the mean of its soft labels" if "soft_label" in dataset.column_names else "its label frequencies"
    mode = f", {options.label_mode} labels" if options.label_mode else ""
    return class_priors(dataset), (f"the {options.priors_split!r} split of {options.dataset} ({len(dataset)} "
                                   f"images{mode}): {targets}")


def write_calibration(folder: str | Path, record: CalibrationRecord) -> list[Path]:
    """Store `record`'s calibration in the folder: the config's calibration fields, `calibration.json`, and
    `model.onnx` exported again when there is one. Returns the files written."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(record.config_values())
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written = [config_path, record.write(folder)]
    onnx_file = folder / "model.onnx"
    if onnx_file.is_file():
        from ..inference.onnx_export import export_onnx

        report = export_onnx(folder, onnx_file)
        logger.info("exported %s again: %s", onnx_file, report.describe())
        written.append(onnx_file)
    return written


def calibrate_folder(options: CalibrationOptions) -> CalibrationRecord:
    """Fit the calibration of the model in `options.model_dir` on the split and store it there (see the module
    docstring); returns the record."""
    priors, priors_from = None, None
    if options.method == "prior_adjustment":  # read first: a split without some class fails before the long pass
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(options.model_dir)
        priors, priors_from = training_priors(options, [config.id2label[i] for i in range(config.num_labels)])
    labels, log_probs = uncalibrated_predictions(options)
    record = fit_calibration(log_probs, labels, options.method, options.dataset, options.split, priors, priors_from)
    write_calibration(options.model_dir, record)
    logger.info("%s", record.describe())
    return record


__all__ = ["CalibrationOptions", "calibrate_folder", "set_identity_calibration", "training_priors",
           "uncalibrated_predictions", "write_calibration"]
