"""Post-hoc calibration of a model's probabilities, fitted on a validation split and stored with the model
(`GReFELConfig.calibration_temperature` / `calibration_bias`): the fit (`fitting`), a saved folder's calibration
(`folder`, `grefel-hf calibrate`) and the command (`command`)."""

from .fitting import CALIBRATION_FILE, METHODS, CalibrationRecord, fit_calibration

__all__ = ["CALIBRATION_FILE", "METHODS", "CalibrationRecord", "fit_calibration"]
