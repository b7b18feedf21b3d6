"""Classification and calibration metrics for facial-expression recognition (pure numpy).

This module is the single implementation of every metric in grefel_hf: the evaluation CLI, the
``fer_accuracy`` evaluate module, ``Trainer``'s ``compute_metrics`` and the model card all call it.

``compute_classification_metrics`` returns the ``metrics.json`` schema (all values JSON-serialisable):

``num_images`` (int)
    Number of evaluated images N.
``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``weighted_f1`` (float in [0, 1])
    Top-1 accuracy; balanced accuracy, the unweighted mean of the per-class recalls over the classes that have
    images (each class counts alike however rare it is); unweighted mean of per-class F1; support-weighted mean of
    per-class F1.
    Both F1 averages run over the classes present in the references *or* the predictions (as
    scikit-learn does without ``labels=``), so a class absent from a small split does not count as 0.
``ece`` (float in [0, 1])
    Expected calibration error over ``calibration["n_bins"]`` equal-width bins of the max probability:
    ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``.
``mean_reliability_correct``, ``mean_reliability_wrong`` (float or null)
    Mean per-image reliability score of correct / wrong predictions; null when no reliability was
    given or no image falls in the group.
``labels`` (list of str)
    Class names, index i = class id i.
``per_class`` (dict name -> dict)
    ``precision``, ``recall``, ``f1``, ``accuracy`` (= recall: the fraction of the class's images
    classified correctly) and ``support`` (int, number of images of that class). Precision is null for
    a class that was never predicted; recall, accuracy and F1 are null for a class with no images.
``confusion_matrix`` (list of lists of int, C x C)
    Row = true class, column = predicted class.
``calibration`` (dict)
    ``n_bins`` (int), ``bin_edges`` (n_bins + 1 floats from 0 to 1), ``bin_count`` (int per bin),
    ``bin_accuracy`` and ``bin_confidence`` (float per bin, null for an empty bin). Bin b holds the
    images whose max probability lies in ``(bin_edges[b], bin_edges[b + 1]]`` (bin 0 also holds 0).
``selective`` (dict)
    Selective prediction (abstaining on the least confident images), ranked by the top probability and, when a
    reliability is given, by it and by their product: accuracy and threshold at 100/90/80/50 % coverage, the area
    under the risk-coverage curve and the curve itself (schema and definitions in ``grefel_hf.metrics.selective``).

``hard_label_metrics`` returns the subset that needs only hard predictions (``num_images``,
``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``weighted_f1``, ``labels``, ``per_class``, ``confusion_matrix``).
``flat_summary`` turns either into the flat scalar dict logged during training
(``accuracy``, ``balanced_accuracy`` when present, ``macro_f1``, ``ece`` when present, ``accuracy_<class name>``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..json_files import read_json_file
from .selective import ranking_scores, selective_prediction

logger = logging.getLogger(__name__)

DEFAULT_N_BINS = 15
# Keys every metrics.json must have; ``read_metrics_json`` checks them.
REQUIRED_KEYS = ("num_images", "accuracy", "macro_f1", "weighted_f1", "labels", "per_class", "confusion_matrix")


def _as_label_array(labels: Any, num_classes: int, name: str) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array, raising ValueError unless every entry is in [0, num_classes)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: need at least one image to compute metrics")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} value(s) outside the label set [0, {num_classes - 1}], "
            f"first at index {first}: {int(array[first])}"
        )
    return array


def _resolve_label_names(label_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """Return ``label_names`` as a list checked against ``num_classes``, or default names ``class_<i>``."""
    if label_names is None:
        return [f"class_{i}" for i in range(num_classes)]
    names = [str(n) for n in label_names]
    if len(names) != num_classes:
        raise ValueError(f"label_names has {len(names)} names but there are {num_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique, got {names}")
    return names


def validate_probabilities(probs: Any, num_images: int, sum_tolerance: float = 1e-3) -> np.ndarray:
    """Check that ``probs`` is an (N, C) matrix of probability rows and return it renormalised as float64.

    Rows must be finite, non-negative and sum to 1 within ``sum_tolerance``; the small residue is then
    divided out so that confidences are exact probabilities.
    """
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != num_images or array.shape[1] < 2:
        raise ValueError(f"probs must have shape (N={num_images}, C>=2), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("probs contains NaN or infinite values")
    if (array < 0).any():
        raise ValueError(f"probs must be non-negative, minimum is {array.min():.4g}")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > sum_tolerance
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probs rows must sum to 1 (tolerance {sum_tolerance}); {int(off.sum())} row(s) do not, "
            f"first row {first} sums to {sums[first]:.6g}. Pass probabilities, not raw logits."
        )
    return array / sums[:, None]


def _validate_reliability(reliability: Any, num_images: int) -> np.ndarray:
    """Return ``reliability`` as a float64 (N,) array with every value in [0, 1]; (N, 1) is accepted too."""
    array = np.asarray(reliability, dtype=np.float64)
    if array.shape == (num_images, 1):
        array = array[:, 0]
    if array.shape != (num_images,):
        raise ValueError(f"reliability must have shape ({num_images},), got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any() or (array > 1).any():
        raise ValueError("reliability values must be finite and in [0, 1]")
    return array


def confusion_matrix(references: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the (C, C) int64 confusion matrix; row = true class, column = predicted class."""
    flat = references * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator with NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _none_if_nan(value: float) -> float | None:
    """Map NaN to None so that undefined scores serialise as JSON null."""
    return None if np.isnan(value) else float(value)


def class_recalls(references: Any, predictions: Any, num_classes: int) -> list[float | None]:
    """The recall of each class (the fraction of its images predicted as it), None for a class without images."""
    refs = _as_label_array(references, num_classes, "references")
    preds = _as_label_array(predictions, num_classes, "predictions")
    cm = confusion_matrix(refs, preds, num_classes)
    return [_none_if_nan(r) for r in _safe_ratio(np.diag(cm).astype(np.float64), cm.sum(axis=1))]


def balanced_accuracy(references: Any, predictions: Any, num_classes: int) -> float:
    """The mean recall over the classes that have images (``balanced_accuracy`` of the module docstring)."""
    return float(np.mean([r for r in class_recalls(references, predictions, num_classes) if r is not None]))


def scores_from_confusion(cm: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1 and per-class scores from a confusion matrix (see module docstring)."""
    cm = np.asarray(cm, dtype=np.int64)
    true_positive = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_ratio(true_positive, predicted)
    recall = _safe_ratio(true_positive, support)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted); 0 when a present class is never hit.
    f1 = _safe_ratio(2.0 * true_positive, (support + predicted).astype(np.float64))
    present = (support + predicted) > 0
    total = int(cm.sum())
    per_class = {
        name: {
            "precision": _none_if_nan(precision[i]),
            "recall": _none_if_nan(recall[i]),
            "f1": _none_if_nan(f1[i]),
            "accuracy": _none_if_nan(recall[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    return {
        "num_images": total,
        "accuracy": float(true_positive.sum() / total),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1[present] * support[present]).sum() / total),
        "labels": list(label_names),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def hard_label_metrics(
    references: Any, predictions: Any, label_names: Sequence[str] | None = None, num_classes: int | None = None
) -> dict[str, Any]:
    """Metrics that need only hard predictions: accuracy, macro/weighted F1, per-class scores, confusion matrix.

    The number of classes comes from ``label_names``, else ``num_classes``, else the largest id seen + 1.
    """
    if label_names is not None:
        num_classes = len(label_names)
    elif num_classes is None:
        if np.size(references) == 0 or np.size(predictions) == 0:
            raise ValueError("references and predictions must be non-empty")
        num_classes = int(max(np.max(references), np.max(predictions))) + 1
    refs = _as_label_array(references, num_classes, "references")
    preds = _as_label_array(predictions, num_classes, "predictions")
    if refs.shape != preds.shape:
        raise ValueError(f"references and predictions differ in length: {refs.shape[0]} vs {preds.shape[0]}")
    names = _resolve_label_names(label_names, num_classes)
    return scores_from_confusion(confusion_matrix(refs, preds, num_classes), names)


def calibration_bins(confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> dict[str, Any]:
    """Per-bin accuracy, mean confidence and count over equal-width confidence bins (reliability diagram data)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted on the inner edges puts a confidence c into the bin with edges[b] < c <= edges[b+1].
    index = np.searchsorted(edges[1:-1], confidences, side="left")
    count = np.bincount(index, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidences, minlength=n_bins)
    bin_accuracy = _safe_ratio(acc_sum, count)
    bin_confidence = _safe_ratio(conf_sum, count)
    return {
        "n_bins": int(n_bins),
        "bin_edges": edges.tolist(),
        "bin_accuracy": [_none_if_nan(v) for v in bin_accuracy],
        "bin_confidence": [_none_if_nan(v) for v in bin_confidence],
        "bin_count": count.astype(int).tolist(),
    }


def expected_calibration_error(calibration: dict[str, Any]) -> float:
    """ECE = sum over bins of |B_b| / N * |acc(B_b) - conf(B_b)|, from the output of ``calibration_bins``."""
    total = sum(calibration["bin_count"])
    if total == 0:
        raise ValueError("calibration bins are all empty")
    ece = 0.0
    for count, acc, conf in zip(
        calibration["bin_count"], calibration["bin_accuracy"], calibration["bin_confidence"], strict=True
    ):
        if count:
            ece += count / total * abs(acc - conf)
    return float(ece)


def _mean_or_none(values: np.ndarray) -> float | None:
    """Mean of ``values``, or None for an empty array."""
    return float(values.mean()) if values.size else None


def compute_classification_metrics(
    labels: Any,
    probs: Any,
    reliability: Any = None,
    label_names: Sequence[str] | None = None,
    n_bins: int = DEFAULT_N_BINS,
    sum_tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Compute the full ``metrics.json`` dict (schema in the module docstring).

    Args:
        labels: (N,) integer true class ids.
        probs: (N, C) predicted probabilities; each row must sum to 1 within ``sum_tolerance``.
        reliability: optional (N,) per-image reliability scores in [0, 1].
        label_names: optional C class names (default ``class_<i>``).
        n_bins: number of equal-width confidence bins for ECE and the reliability diagram.
        sum_tolerance: allowed deviation of a probability row sum from 1 (looser for bf16 outputs).
    """
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or label_array.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {label_array.shape}")
    prob_array = validate_probabilities(probs, label_array.shape[0], sum_tolerance)
    num_classes = prob_array.shape[1]
    label_array = _as_label_array(label_array, num_classes, "labels")
    predictions = prob_array.argmax(axis=1)
    metrics = hard_label_metrics(label_array, predictions, _resolve_label_names(label_names, num_classes))
    correct = predictions == label_array
    metrics["calibration"] = calibration_bins(prob_array.max(axis=1), correct, n_bins)
    metrics["ece"] = expected_calibration_error(metrics["calibration"])
    metrics["mean_reliability_correct"] = None
    metrics["mean_reliability_wrong"] = None
    rel = None
    if reliability is not None:
        rel = _validate_reliability(reliability, label_array.shape[0])
        metrics["mean_reliability_correct"] = _mean_or_none(rel[correct])
        metrics["mean_reliability_wrong"] = _mean_or_none(rel[~correct])
    metrics["selective"] = selective_prediction(correct, ranking_scores(prob_array, rel))
    return metrics


def flat_summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Flatten a metrics dict into ``accuracy``, ``balanced_accuracy`` and ``ece`` (when present), ``macro_f1`` and
    ``accuracy_<name>``.

    These are the scalar keys logged during training and returned by the ``fer_accuracy`` evaluate module;
    a class with no images gets ``accuracy_<name>: None``.
    """
    summary: dict[str, float | None] = {"accuracy": metrics["accuracy"]}
    if "balanced_accuracy" in metrics:
        summary["balanced_accuracy"] = metrics["balanced_accuracy"]
    summary["macro_f1"] = metrics["macro_f1"]
    if "ece" in metrics:
        summary["ece"] = metrics["ece"]
    for name, scores in metrics["per_class"].items():
        summary[f"accuracy_{name}"] = scores["accuracy"]
    return summary


def write_metrics_json(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write ``metrics`` (one metrics dict or a dict of named variants) as indented JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: undefined scores must already be None, a NaN here is a bug upstream.
    path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def check_metrics_dict(metrics: Any, source: str = "metrics") -> None:
    """Raise ValueError unless ``metrics`` has the required keys of the metrics.json schema."""
    if not isinstance(metrics, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(metrics).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{source}: missing metrics.json key(s) {missing}")


def as_variants(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return ``{variant name: metrics dict}``; a single metrics dict becomes ``{"": metrics}``.

    A metrics file holds either one metrics dict or several named ones (e.g. ``{"raw": ..., "ema": ...}``).
    """
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError("metrics must be a non-empty dict")
    if "accuracy" in metrics:
        check_metrics_dict(metrics)
        return {"": metrics}
    for name, variant in metrics.items():
        check_metrics_dict(variant, f"metrics variant {name!r}")
    return dict(metrics)


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read a metrics.json written by ``write_metrics_json`` and check the schema of each variant."""
    metrics = read_json_file(path, "metrics file")
    try:
        as_variants(metrics)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return metrics
