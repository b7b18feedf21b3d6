"""Metrics for ``transformers.Trainer``: a ``compute_metrics`` factory and the offline ``fer_accuracy`` module.

Both delegate the arithmetic to ``grefel_hf.metrics.classification`` so that training logs, the evaluation CLI
and the model card report identical numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grefel_hf.metrics.classification import DEFAULT_N_BINS, compute_classification_metrics, flat_summary

logger = logging.getLogger(__name__)

FER_ACCURACY_DIR = Path(__file__).resolve().parent.parent / "metrics" / "fer_accuracy"
# exp() of bf16/fp16 log-probabilities does not sum to 1 as tightly as fp32; the rows are renormalised.
_EVAL_SUM_TOLERANCE = 2e-2


def load_fer_accuracy_metric(**kwargs: Any):
    """Load the shipped ``fer_accuracy`` evaluate module by path; works offline (no Hub look-up).

    Keyword arguments are passed to ``evaluate.load`` (e.g. ``experiment_id`` for parallel runs).
    """
    import evaluate  # deferred: evaluate pulls in datasets, which only this helper needs

    script = FER_ACCURACY_DIR / "fer_accuracy.py"
    if not script.is_file():
        raise FileNotFoundError(f"the fer_accuracy metric module is missing from the installation: {script}")
    return evaluate.load(str(FER_ACCURACY_DIR), **kwargs)


def _first_array(value: Any, what: str) -> np.ndarray:
    """Return ``value`` as an array, taking element 0 when Trainer passes a tuple/list of arrays."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError(f"EvalPrediction.{what} is an empty tuple")
        value = value[0]
    return np.asarray(value)


def _named_predictions(predictions: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(log-probabilities, reliability or None) from ``EvalPrediction.predictions``: a mapping read by name
    (``logits``, and ``reliability`` when present: what ``GReFELTrainer`` gathers), or the logits alone (an array,
    or a tuple whose first element is the logits, as plain ``Trainer`` gathers them)."""
    if isinstance(predictions, Mapping):
        if "logits" not in predictions:
            raise ValueError(f"EvalPrediction.predictions has no 'logits', only {sorted(predictions)}")
        reliability = predictions.get("reliability")
        return (np.asarray(predictions["logits"]),
                None if reliability is None else np.asarray(reliability, dtype=np.float64))
    return _first_array(predictions, "predictions"), None


def _hard_labels(label_ids: Any, num_classes: int) -> np.ndarray:
    """Turn int (N,) label ids or soft (N, C) label distributions into int (N,) class ids."""
    labels = _first_array(label_ids, "label_ids")
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"soft label_ids must have shape (N, {num_classes}), got {labels.shape}")
        return labels.argmax(axis=1)
    if labels.ndim != 1:
        raise ValueError(f"label_ids must have shape (N,) or (N, {num_classes}), got {labels.shape}")
    if np.issubdtype(labels.dtype, np.floating):
        # Trainer concatenates label tensors as-is; float class ids are only accepted when integral.
        if not np.all(labels == np.round(labels)):
            raise ValueError("1-D label_ids must be integer class ids, got non-integral floats")
        labels = labels.astype(np.int64)
    return labels


def build_compute_metrics(
    label_names: Sequence[str], n_bins: int = DEFAULT_N_BINS
) -> Callable[[Any], dict[str, float]]:
    """Return a ``compute_metrics(EvalPrediction) -> dict`` for ``Trainer``.

    The returned dict holds ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``ece``, ``accuracy_<class name>``
    for every class with images in the split and, when the predictions carry a reliability, ``mean_reliability_correct`` /
    ``_wrong``.

    Args:
        label_names: class names, index i = class id i.
        n_bins: confidence bins for the ECE.

    ``EvalPrediction.predictions`` is read by name: a mapping with ``logits`` and optionally ``reliability``
    (``GReFELTrainer`` gathers them so), or else the logits alone (see ``_named_predictions``). GReFEL's logits are
    the log of its final distribution, so ``probs = exp(logits)``. ``label_ids`` may be int (N,) or soft (N, C)
    targets (FER+ votes, CutMix), which are reduced to their argmax.
    """
    names = [str(n) for n in label_names]
    if len(names) < 2:
        raise ValueError(f"label_names must name at least 2 classes, got {names}")

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        """Compute the evaluation metrics of one Trainer evaluation run."""
        log_probs, reliability = _named_predictions(eval_pred.predictions)
        metrics = compute_classification_metrics(
            _hard_labels(eval_pred.label_ids, len(names)),
            np.exp(log_probs.astype(np.float64)),
            reliability=reliability,
            label_names=names,
            n_bins=n_bins,
            sum_tolerance=_EVAL_SUM_TOLERANCE,
        )
        result = flat_summary(metrics)
        if reliability is not None:
            result["mean_reliability_correct"] = metrics["mean_reliability_correct"]
            result["mean_reliability_wrong"] = metrics["mean_reliability_wrong"]
        # Loggers (TensorBoard, trainer_state.json) take numbers only; undefined scores are left out.
        undefined = sorted(k for k, v in result.items() if v is None)
        if undefined:
            logger.info("Metrics undefined on this split (no images of the class or group): %s", undefined)
        return {k: float(v) for k, v in result.items() if v is not None}

    return compute_metrics
