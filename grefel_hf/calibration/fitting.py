"""Fitting a post-hoc calibration to a model's log-probabilities on a validation split, and recording the fit.

The calibration is the one `GReFELConfig` stores and the model applies (`layers_grefel.calibrate_log_probs`):
log_softmax(log_probs / T + b). Both fits minimise the negative log-likelihood (NLL) of the validation labels:

- `"temperature"`: T alone (b = 0). The NLL is convex in 1 / T, so a golden-section search over log T finds it.
  It never changes the predicted class.
- `"temperature_bias"`: T and a per-class bias b together (L-BFGS from the temperature fit; b centred to mean 0,
  which changes nothing). A bias can change predicted classes; the record counts how many changed.
- `"prior_adjustment"`: the logit adjustment by the training-set class priors π (`priors`): the decisions become
  argmax(log p − τ·log π), with the one scalar τ chosen for balanced accuracy under the project's rule (at most
  0.5 point of accuracy lost on the split; `priors.choose_tau`), then T fitted by NLL to the adjusted
  log-probabilities, so that the temperature changes no adjusted decision. Stored as T and b = −(τ / T)·log π
  (centred), since log_softmax(log p / T + b) = log_softmax((log p − τ·log π) / T).

A temperature (alone, or the one after the adjustment) is applied only when it does not raise the expected
calibration error (ECE) of the top probability on the data it was fitted on: the NLL also rewards getting the other
classes' probabilities right, and a model whose top probability is already calibrated can see its ECE rise under the
NLL-optimal temperature (the bundled FER2013 model does). A temperature fit that is not applied leaves the model's
probabilities as they are (the identity calibration); after an adjustment, T is then 1. The adjustment itself is
applied when its rule chose a τ above 0, whatever it does to the ECE.

`CalibrationRecord` is what a fit did, as `calibration.json` beside the model's weights holds it and the model card
shows it: the values, the data, the ECE, NLL, accuracy, balanced accuracy and per-class recall before and after, and
whether it was applied; for the adjustment also τ, the priors and a held-out estimate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..json_files import read_json_file
from ..layers_grefel import calibrate_log_probs
from ..metrics.classification import calibration_bins, class_recalls, expected_calibration_error
from .priors import adjusted_log_probs, choose_tau, held_out_estimates, tau_curve

CALIBRATION_FILE = "calibration.json"
"""The record of a model folder's calibration, beside its weights."""

METHODS = ("temperature", "temperature_bias", "prior_adjustment")
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
        applied: whether the model uses it: False when a temperature fit would have raised the ECE (the "after"
            figures are then those the fit would have given; the model keeps the identity calibration), or when the
            prior adjustment's rule kept τ = 0 and its temperature was not applied either.
        balanced_accuracy_before, balanced_accuracy_after: mean per-class recall (None in records written before
            it was recorded).
        recall_before, recall_after: each class's recall, in class-id order (None for a class without images).
        prior_tau: the τ of `"prior_adjustment"` (in units of the uncalibrated log-probabilities; 0 when its rule
            found none that helps), None for the other methods.
        class_priors: the training-set class priors π the adjustment divides out, in class-id order.
        priors_from: where the priors come from, in words (the split, its size, its labels).
        held_out: the held-out estimate (`priors.held_out_estimates`): τ chosen on one half of the split, scored on
            the other, both ways.
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
    balanced_accuracy_before: float | None = None
    balanced_accuracy_after: float | None = None
    recall_before: list[float | None] | None = None
    recall_after: list[float | None] | None = None
    prior_tau: float | None = None
    class_priors: list[float] | None = None
    priors_from: str | None = None
    held_out: list[dict[str, Any]] | None = None

    def config_values(self) -> dict[str, Any]:
        """The config fields that store this calibration (the identity when it is not applied)."""
        if not self.applied:
            return {"calibration_temperature": 1.0, "calibration_bias": None}
        return {"calibration_temperature": self.temperature, "calibration_bias": self.bias}

    def describe(self) -> str:
        tau = "" if self.prior_tau is None else f"prior adjustment tau {self.prior_tau:g}, "
        bias = "" if self.bias is None else f", bias {[round(b, 3) for b in self.bias]}"
        balanced = ("" if self.balanced_accuracy_before is None else
                    f", balanced accuracy {self.balanced_accuracy_before:.4f} -> {self.balanced_accuracy_after:.4f}")
        verdict = "" if self.applied else "; NOT applied, since it would raise the ECE (the model stays uncalibrated)"
        return (f"{self.method} calibration on {self.dataset} ({self.split}, {self.num_images} images): {tau}"
                f"temperature {self.temperature:.4f}{bias}; ECE {self.ece_before:.4f} -> {self.ece_after:.4f}, NLL "
                f"{self.nll_before:.4f} -> {self.nll_after:.4f}, accuracy {self.accuracy_before:.4f} -> "
                f"{self.accuracy_after:.4f}{balanced}, {self.labels_changed} predicted labels changed{verdict}")

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


def top_probability_ece(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """The ECE of the top probability of normalised log-probabilities (N, C)."""
    probs = np.exp(log_probs)
    return expected_calibration_error(calibration_bins(probs.max(axis=1), probs.argmax(axis=1) == labels))


def fit_prior_adjustment(log_probs: np.ndarray, labels: np.ndarray,
                         priors: np.ndarray) -> tuple[float, list[float] | None, float]:
    """(T, b, τ) of the prior adjustment (module docstring): τ by `priors.choose_tau`, then T by NLL on the adjusted
    log-probabilities, kept only when it does not raise their ECE (else T = 1); b is None when τ is 0."""
    log_priors = np.log(np.asarray(priors, dtype=np.float64))
    if log_priors.shape != (log_probs.shape[1],) or not np.isfinite(log_priors).all():
        raise ValueError(f"the class priors must be {log_probs.shape[1]} positive numbers, got {list(priors)}")
    tau = choose_tau(tau_curve(log_probs, labels, log_priors)).tau
    shifted = adjusted_log_probs(log_probs, log_priors, tau)

    def bias_at(temperature: float) -> list[float] | None:
        bias = -(tau / temperature) * (log_priors - log_priors.mean())
        return [float(b) for b in bias] if tau else None

    temperature = fit_temperature(shifted, labels)
    unscaled = top_probability_ece(calibrated(log_probs, 1.0, bias_at(1.0)), labels)
    if top_probability_ece(calibrated(log_probs, temperature, bias_at(temperature)), labels) > unscaled:
        temperature = 1.0
    return temperature, bias_at(temperature), tau


def calibration_scores(log_probs: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(ECE, NLL, accuracy, predicted classes) of log-probabilities (N, C) for hard labels (N,)."""
    predicted = log_probs.argmax(axis=1)
    nll = float(-log_probs[np.arange(len(labels)), labels].mean())
    return top_probability_ece(log_probs, labels), nll, float((predicted == labels).mean()), predicted


def _fit_values(log_probs: np.ndarray, labels: np.ndarray, method: str,
                class_priors: Sequence[float] | None) -> tuple[float, list[float] | None, float | None]:
    """(T, b, τ) of `method`; τ is None for the methods without a prior adjustment."""
    if method == "temperature":
        return fit_temperature(log_probs, labels), None, None
    if method == "temperature_bias":
        return (*fit_temperature_and_bias(log_probs, labels), None)
    if class_priors is None:
        raise ValueError("the prior_adjustment calibration needs the training split's class priors")
    return fit_prior_adjustment(log_probs, labels, np.asarray(class_priors, dtype=np.float64))


def _class_scores(labels: np.ndarray, before: np.ndarray, after: np.ndarray, num_classes: int) -> dict[str, Any]:
    """The record's balanced accuracy and per-class recall before and after."""
    scores = {}
    for when, predicted in (("before", before), ("after", after)):
        recalls = class_recalls(labels, predicted, num_classes)
        scores[f"recall_{when}"] = recalls
        scores[f"balanced_accuracy_{when}"] = float(np.mean([r for r in recalls if r is not None]))
    return scores


def fit_calibration(log_probs: np.ndarray, labels: np.ndarray, method: str = "temperature", dataset: str = "",
                    split: str = "validation", class_priors: Sequence[float] | None = None,
                    priors_from: str | None = None) -> CalibrationRecord:
    """Fit `method` to the uncalibrated log-probabilities `log_probs` (N, C) of hard `labels` (N,), and record it
    (see the module docstring for when it is applied). `class_priors` (C training-set priors) and `priors_from`
    (where they come from, in words) are the prior adjustment's.

    Raises:
        ValueError: an unknown method, arrays that do not fit together, or the prior adjustment without priors.
    """
    if method not in METHODS:
        raise ValueError(f"the calibration method must be one of {METHODS}, got {method!r}")
    log_probs, labels = np.asarray(log_probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if log_probs.ndim != 2 or labels.shape != (log_probs.shape[0],) or not labels.size:
        raise ValueError(f"log_probs must be (N, C) and labels (N,), got {log_probs.shape} and {labels.shape}")
    temperature, bias, tau = _fit_values(log_probs, labels, method, class_priors)
    ece_before, nll_before, accuracy_before, before = calibration_scores(log_probs, labels)
    ece_after, nll_after, accuracy_after, after = calibration_scores(calibrated(log_probs, temperature, bias), labels)
    applied = ece_after <= ece_before if tau is None else bool(tau > 0 or temperature != 1.0)
    prior_fields = {} if tau is None else {
        "prior_tau": tau, "class_priors": [float(p) for p in class_priors], "priors_from": priors_from,
        "held_out": held_out_estimates(log_probs, labels, np.log(np.asarray(class_priors, dtype=np.float64)))}
    return CalibrationRecord(method=method, temperature=temperature, bias=bias, dataset=dataset, split=split,
                             num_images=int(labels.size), ece_before=ece_before, ece_after=ece_after,
                             nll_before=nll_before, nll_after=nll_after, accuracy_before=accuracy_before,
                             accuracy_after=accuracy_after, labels_changed=int((before != after).sum()),
                             applied=applied, **_class_scores(labels, before, after, log_probs.shape[1]),
                             **prior_fields)


__all__ = ["CALIBRATION_FILE", "METHODS", "CalibrationRecord", "calibrated", "calibration_scores", "fit_calibration",
           "fit_prior_adjustment", "fit_temperature", "fit_temperature_and_bias", "top_probability_ece"]
