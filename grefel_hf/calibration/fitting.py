"""Fitting a post-hoc calibration to a model's log-probabilities on a validation split, and recording the fit.

The calibration is the one `GReFELConfig` stores and the model applies (`layers_grefel.calibrate_log_probs`):
log_softmax(log_probs / T + b). Both fits minimise the negative log-likelihood (NLL) of the validation labels:

- `"temperature"`: T alone (b = 0). The NLL is convex in 1 / T, so a golden-section search over log T finds it.
  It never changes the predicted class.
- `"temperature_bias"`: T and a per-class bias b together (L-BFGS from the temperature fit; b centred to mean 0,
  which changes nothing). A bias can change predicted classes; the record counts how many changed.

A fit is applied only when it does not raise the expected calibration error (ECE) of the top probability on the
data it was fitted on: the NLL also rewards getting the other classes' probabilities right, and a model whose top
probability is already calibrated can see its ECE rise under the NLL-optimal temperature (the bundled FER2013 model
does). A fit that is not applied leaves the model's probabilities as they are (the identity calibration).

`CalibrationRecord` is what a fit did, as `calibration.json` beside the model's weights holds it and the model card
shows it: the values, the data, the ECE, NLL and accuracy before and after, and whether it was applied.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..json_files import read_json_file
from ..layers_grefel import calibrate_log_probs
from ..metrics.classification import calibration_bins, expected_calibration_error

CALIBRATION_FILE = "calibration.json"
"""The record of a model folder's calibration, beside its weights."""

METHODS = ("temperature", "temperature_bias")
"""The calibrations `fit_calibration` fits (see the module docstring)."""

_LOG_T_RANGE = (math.log(0.02), math.log(50.0))
"""The temperatures the search covers."""


@dataclass
class CalibrationRecord:
    """One fitted calibration and what it did on the data it was fitted on.

    Args:
        method: one of `METHODS`.
        temperature: the fitted T; bias: the fitted per-class b, or None (temperature only).
        dataset, split: the data it was fitted on (a validation split); num_images: how many faces.
        ece_before, ece_after: expected calibration error (15 equal-width bins of the top probability).
        nll_before, nll_after: mean negative log-likelihood of the true class.
        accuracy_before, accuracy_after: accuracy of the predicted class.
        labels_changed: faces whose predicted class the calibration changed (0 for temperature alone).
        applied: whether the model uses it: False when it would have raised the ECE (the "after" figures are then
            those the fit would have given; the model keeps the identity calibration).
    """

    method: str
    temperature: float
    bias: list[float] | None
    dataset: str
    split: str
    num_images: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy_before: float
    accuracy_after: float
    labels_changed: int
    applied: bool = True

    def config_values(self) -> dict[str, Any]:
        """The config fields that store this calibration (the identity when it is not applied)."""
        if not self.applied:
            return {"calibration_temperature": 1.0, "calibration_bias": None}
        return {"calibration_temperature": self.temperature, "calibration_bias": self.bias}

    def describe(self) -> str:
        bias = "" if self.bias is None else f", bias {[round(b, 3) for b in self.bias]}"
        verdict = "" if self.applied else "; NOT applied, since it would raise the ECE (the model stays uncalibrated)"
        return (f"{self.method} calibration on {self.dataset} ({self.split}, {self.num_images} images): temperature "
                f"{self.temperature:.4f}{bias}; ECE {self.ece_before:.4f} -> {self.ece_after:.4f}, NLL "
                f"{self.nll_before:.4f} -> {self.nll_after:.4f}, accuracy {self.accuracy_before:.4f} -> "
                f"{self.accuracy_after:.4f}, {self.labels_changed} predicted labels changed{verdict}")

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> CalibrationRecord | None:
        """The record in `folder`, or None when it has none.

        Raises:
            ValueError: the file is not a calibration record (the message names it).
        """
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        values = read_json_file(path, "calibration record")
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"{path} is not a calibration record: {err}") from err


def calibrated(log_probs: np.ndarray, temperature: float, bias: list[float] | None = None) -> np.ndarray:
    """`log_probs` (N, C) after the calibration, computed by the model's own function."""
    return calibrate_log_probs(torch.as_tensor(log_probs, dtype=torch.float64), temperature, bias).numpy()


def _nll(log_probs: torch.Tensor, labels: torch.Tensor, inverse_t: torch.Tensor, bias: torch.Tensor | None):
    scaled = log_probs * inverse_t + (0.0 if bias is None else bias)
    return torch.nn.functional.cross_entropy(scaled, labels)


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The temperature that minimises the NLL of `labels` under log_softmax(log_probs / T) (golden-section search
    over log T in [0.02, 50])."""
    z, y = torch.as_tensor(log_probs, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)

    def loss(log_t: float) -> float:
        return float(_nll(z, y, torch.tensor(math.exp(-log_t), dtype=torch.float64), None))

    low, high = _LOG_T_RANGE
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return math.exp((low + high) / 2.0)


def fit_temperature_and_bias(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """T and a per-class bias b (centred to mean 0) that minimise the NLL together, from the temperature fit."""
    z, y = torch.as_tensor(log_probs, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.long)
    inverse_t = torch.tensor(1.0 / fit_temperature(log_probs, labels), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([inverse_t, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = _nll(z, y, inverse_t, bias)
        loss.backward()
        return loss

    optimizer.step(closure)
    inverse_t, bias = float(inverse_t.detach()), bias.detach()
    if not inverse_t > 0:
        raise ValueError(f"the temperature-and-bias fit did not converge to a positive temperature (1/T = "
                         f"{inverse_t})")
    return 1.0 / inverse_t, [float(b) for b in bias - bias.mean()]


def calibration_scores(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(ECE, NLL, accuracy, predicted classes) of log-probabilities (N, C) for hard labels (N,)."""
    probs = np.exp(log_probs)
    predicted = probs.argmax(axis=1)
    correct = predicted == labels
    ece = expected_calibration_error(calibration_bins(probs.max(axis=1), correct))
    nll = float(-log_probs[np.arange(len(labels)), labels].mean())
    return ece, nll, float(correct.mean()), predicted


def fit_calibration(log_probs: np.ndarray, labels: np.ndarray, method: str = "temperature", dataset: str = "",
                    split: str = "validation") -> CalibrationRecord:
    """Fit `method` to the uncalibrated log-probabilities `log_probs` (N, C) of hard `labels` (N,), and record it
    (applied only when it does not raise the ECE; see the module docstring).

    Raises:
        ValueError: an unknown method, or arrays that do not fit together.
    """
    if method not in METHODS:
        raise ValueError(f"the calibration method must be one of {METHODS}, got {method!r}")
    log_probs, labels = np.asarray(log_probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if log_probs.ndim != 2 or labels.shape != (log_probs.shape[0],) or not labels.size:
        raise ValueError(f"log_probs must be (N, C) and labels (N,), got {log_probs.shape} and {labels.shape}")
    if method == "temperature":
        temperature, bias = fit_temperature(log_probs, labels), None
    else:
        temperature, bias = fit_temperature_and_bias(log_probs, labels)
    ece_before, nll_before, accuracy_before, before = calibration_scores(log_probs, labels)
    ece_after, nll_after, accuracy_after, after = calibration_scores(calibrated(log_probs, temperature, bias), labels)
    return CalibrationRecord(method=method, temperature=temperature, bias=bias, dataset=dataset, split=split,
                             num_images=int(labels.size), ece_before=ece_before, ece_after=ece_after,
                             nll_before=nll_before, nll_after=nll_after, accuracy_before=accuracy_before,
                             accuracy_after=accuracy_after, labels_changed=int((before != after).sum()),
                             applied=ece_after <= ece_before)


__all__ = ["CALIBRATION_FILE", "METHODS", "CalibrationRecord", "calibrated", "calibration_scores", "fit_calibration",
           "fit_temperature", "fit_temperature_and_bias"]
