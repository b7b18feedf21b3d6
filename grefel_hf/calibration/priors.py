"""Post-hoc logit adjustment by the class priors: fewer faces of the rare classes taken for the common ones.

A model trained on imbalanced classes learns their frequencies π (the training-set class priors) along with the
faces. Shifting its log-probabilities by −τ·log π_c before taking the most probable class moves the decisions
toward the rare classes: τ = 0 changes nothing, and τ = 1 divides the priors out, which under the label-shift view
maximises balanced accuracy (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021). Every step of τ
trades accuracy on the common classes for recall on the rare ones, so τ is one scalar chosen on a validation split
by the project's rule (`choose_tau`): among the τ of `TAU_GRID` whose accuracy is at most `MAX_ACCURACY_DROP` below
the unadjusted model's, the one with the highest balanced accuracy (mean per-class recall; the smaller τ on a tie),
and τ = 0 when none raises the balanced accuracy.

The shift is a per-class bias, the one `GReFELConfig.calibration_bias` stores (`fitting.fit_prior_adjustment`
composes it with the temperature). `held_out_estimates` says how much of the gain is the choice fitting its split:
τ is chosen on one interleaved half (even or odd positions) and scored on the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..metrics.classification import balanced_accuracy

MAX_ACCURACY_DROP = 0.005
"""The most accuracy (a fraction: 0.5 point) the adjustment may cost on the split it is chosen on."""

TAU_GRID = tuple(round(0.05 * step, 2) for step in range(41))
"""The strengths `choose_tau` considers: 0 to 2 in steps of 0.05 (1 divides the priors out)."""


@dataclass(frozen=True)
class TauScore:
    """Accuracy and balanced accuracy of the decisions argmax(log p − τ·log π) on a split."""

    tau: float
    accuracy: float
    balanced_accuracy: float


def class_priors(dataset) -> np.ndarray:
    """The class priors of a training split (a `datasets.Dataset` with a `label` ClassLabel): the mean of its
    `soft_label` targets when it has them (FER+'s vote distributions, what a model trained on soft labels learnt),
    else each class's share of the `label` column.

    Raises:
        ValueError: a class has no training images (its prior would be 0 and its shift infinite).
    """
    names = dataset.features["label"].names
    if "soft_label" in dataset.column_names:
        priors = np.asarray(dataset["soft_label"], dtype=np.float64).mean(axis=0)
    else:
        priors = np.bincount(np.asarray(dataset["label"]), minlength=len(names)).astype(np.float64)
    priors = priors / priors.sum()
    missing = [name for name, prior in zip(names, priors, strict=True) if prior <= 0]
    if missing:
        raise ValueError(f"the training split has no images of {missing}: the prior adjustment needs every class")
    return priors


def adjusted_log_probs(log_probs: np.ndarray, log_priors: np.ndarray, tau: float) -> np.ndarray:
    """log p − τ·log π, row by row (not renormalised: its argmax is the adjusted decision)."""
    return np.asarray(log_probs, dtype=np.float64) - tau * np.asarray(log_priors, dtype=np.float64)


def tau_curve(log_probs: np.ndarray, labels: np.ndarray, log_priors: np.ndarray,
              grid: tuple[float, ...] = TAU_GRID) -> list[TauScore]:
    """Accuracy and balanced accuracy at each τ of `grid` (which must start at 0, the unadjusted model)."""
    if not grid or grid[0] != 0:
        raise ValueError(f"the τ grid must start at 0 (the unadjusted model), got {grid[:1]}")
    num_classes = log_probs.shape[1]
    curve = []
    for tau in grid:
        predicted = adjusted_log_probs(log_probs, log_priors, tau).argmax(axis=1)
        curve.append(TauScore(float(tau), float((predicted == labels).mean()),
                              balanced_accuracy(labels, predicted, num_classes)))
    return curve


def choose_tau(curve: list[TauScore], max_accuracy_drop: float = MAX_ACCURACY_DROP) -> TauScore:
    """The point of `curve` the rule picks (module docstring): the highest balanced accuracy among the τ that cost at
    most `max_accuracy_drop` accuracy, the smaller τ on a tie; `curve[0]` (τ = 0) when none raises it."""
    base = curve[0]
    allowed = [point for point in curve if point.accuracy >= base.accuracy - max_accuracy_drop - 1e-12]
    best = max(allowed, key=lambda point: (point.balanced_accuracy, -point.tau))
    return best if best.balanced_accuracy > base.balanced_accuracy else base


def held_out_estimates(log_probs: np.ndarray, labels: np.ndarray, log_priors: np.ndarray) -> list[dict[str, Any]]:
    """τ chosen on one interleaved half of the split (even or odd positions) and scored on the other, both ways:
    per direction the halves, the τ, and the other half's accuracy and balanced accuracy before and after."""
    log_probs, labels = np.asarray(log_probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    even = np.arange(labels.size) % 2 == 0
    estimates = []
    for fit_name, fit, score_name, score in (("even", even, "odd", ~even), ("odd", ~even, "even", even)):
        tau = choose_tau(tau_curve(log_probs[fit], labels[fit], log_priors)).tau
        scored = tau_curve(log_probs[score], labels[score], log_priors, (0.0, tau) if tau else (0.0,))
        before, after = scored[0], scored[-1]
        estimates.append({"fit_half": fit_name, "score_half": score_name, "tau": tau,
                          "num_images": int(score.sum()), "before": asdict(before), "after": asdict(after)})
    return estimates


__all__ = ["MAX_ACCURACY_DROP", "TAU_GRID", "TauScore", "adjusted_log_probs", "choose_tau", "class_priors",
           "held_out_estimates", "tau_curve"]
