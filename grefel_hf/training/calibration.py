"""The calibration step of a training run (`--calibrate`, on by default): after the weights and the inference mode
are chosen, a temperature is fitted to the model's final log-probabilities on the validation split and stored in
its config, so that the saved model's probabilities are calibrated (see `grefel_hf.calibration`)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..calibration.fitting import CalibrationRecord, fit_calibration
from ..calibration.folder import set_identity_calibration

logger = logging.getLogger(__name__)


def stores_calibration(model) -> bool:
    """Whether the model's config stores a calibration (GReFEL's does; the baseline's does not)."""
    return getattr(model.config, "model_type", None) == "grefel"


def drop_stale_calibration(model) -> None:
    """Set the calibration of a model loaded for fine-tuning aside: it was fitted to the weights training changes
    (`--calibrate` fits a new one at the end)."""
    config = model.config
    if stores_calibration(model) and (config.calibration_temperature != 1.0 or config.calibration_bias is not None):
        logger.info("the loaded model's calibration (temperature %s) was fitted to its old weights: training starts "
                    "uncalibrated", config.calibration_temperature)
        set_identity_calibration(config)


@torch.no_grad()
def validation_log_probs(trainer, model) -> tuple[np.ndarray, np.ndarray]:
    """(labels, log-probabilities) of `model` on the trainer's evaluation split, one view per image, gathered over
    processes."""
    was_training = model.training
    model.eval()
    labels, log_probs = [], []
    try:
        for batch in trainer.get_eval_dataloader():
            logits = model(pixel_values=batch["pixel_values"]).logits.float()
            logits, batch_labels = trainer.accelerator.gather_for_metrics((logits, batch["labels"]))
            log_probs.append(logits.cpu().numpy())
            labels.append(batch_labels.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(labels), np.concatenate(log_probs)


def calibrate_on_validation(trainer, dataset: str, split: str) -> CalibrationRecord | None:
    """Fit the temperature of the trainer's model on its evaluation (validation) split and store it in the model's
    config; returns the record, or None (nothing changed) for a model that stores no calibration."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not stores_calibration(model):
        logger.info("not calibrated: only GReFEL models store a calibration")
        return None
    set_identity_calibration(model.config)
    labels, log_probs = validation_log_probs(trainer, model)
    record = fit_calibration(log_probs, labels, "temperature", dataset, split)
    for name, value in record.config_values().items():
        setattr(model.config, name, value)
    logger.info("%s", record.describe())
    return record


__all__ = ["calibrate_on_validation", "drop_stale_calibration", "stores_calibration", "validation_log_probs"]
