"""PNG figures for evaluation results: confusion matrix, reliability diagram, risk-coverage curves and training
curves.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``),
not through ``pyplot``: that needs no display, leaves the global backend alone and leaks no figures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grefel_hf.metrics.classification import expected_calibration_error
from grefel_hf.metrics.selective import RANKING_NAMES, ordered_rankings

from ..json_files import read_json_file

logger = logging.getLogger(__name__)

_DPI = 120


def _new_figure(width: float, height: float, ncols: int = 1):
    """Create an Agg-backed figure with ``ncols`` axes side by side; return (figure, list of axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI)
    return path


def _draw_matrix(axis: Any, values: np.ndarray, label_names: Sequence[str], title: str, fmt: str) -> None:
    """Draw one confusion-matrix heat map with a number in every cell."""
    image = axis.imshow(values, cmap="Blues", vmin=0)
    ticks = np.arange(len(label_names))
    axis.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    axis.set_yticks(ticks, labels=label_names)
    axis.set_xlabel("Predicted")
    axis.set_ylabel("True")
    axis.set_title(title)
    threshold = np.nanmax(values) / 2 if np.isfinite(values).any() else 0
    for (row, col), value in np.ndenumerate(values):
        color = "white" if value > threshold else "black"
        axis.text(col, row, format(value, fmt), ha="center", va="center", color=color, fontsize=8)
    axis.figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)


def plot_confusion_matrix(cm: Any, label_names: Sequence[str], path: str | Path) -> Path:
    """Plot counts (left) and row-normalised rates (right) of a (C, C) confusion matrix; return the PNG path.

    Rows are true classes and columns predicted classes, as in ``metrics.json``. A class with no images
    has an all-zero normalised row.
    """
    counts = np.asarray(cm, dtype=np.int64)
    size = len(label_names)
    if counts.shape != (size, size):
        raise ValueError(f"confusion matrix must have shape ({size}, {size}) for {size} labels, got {counts.shape}")
    row_sums = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)
    side = max(4.0, 0.55 * size + 2.0)
    figure, (left, right) = _new_figure(2 * side + 1.0, side, ncols=2)
    _draw_matrix(left, counts, label_names, "Confusion matrix (counts)", "d")
    _draw_matrix(right, rates, label_names, "Row-normalised (recall)", ".2f")
    return _save(figure, path)


def plot_reliability_diagram(calibration: dict[str, Any], path: str | Path) -> Path:
    """Plot per-bin accuracy against confidence (with the diagonal of perfect calibration); return the path.

    ``calibration`` is the ``calibration`` entry of ``metrics.json`` (see ``grefel_hf.metrics.classification``).
    """
    for key in ("bin_edges", "bin_accuracy", "bin_confidence", "bin_count"):
        if key not in calibration:
            raise ValueError(f"calibration dict is missing {key!r}")
    edges = np.asarray(calibration["bin_edges"], dtype=np.float64)
    counts = np.asarray(calibration["bin_count"], dtype=np.int64)
    accuracy = np.array([np.nan if v is None else v for v in calibration["bin_accuracy"]], dtype=np.float64)
    confidence = np.array([np.nan if v is None else v for v in calibration["bin_confidence"]], dtype=np.float64)
    if not (len(edges) - 1 == len(counts) == len(accuracy) == len(confidence)):
        raise ValueError("calibration lists must have n_bins entries and n_bins + 1 edges")
    filled = counts > 0
    widths = np.diff(edges)
    figure, (axis,) = _new_figure(5.0, 5.0)
    axis.bar(edges[:-1][filled], accuracy[filled], width=widths[filled], align="edge",
             edgecolor="black", color="tab:blue", label="Accuracy")
    # The gap between bar and diagonal is the bin's calibration error.
    axis.bar(edges[:-1][filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=widths[filled],
             align="edge", edgecolor="tab:red", fill=False, hatch="//", label="Gap to mean confidence")
    axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("Confidence (max probability)")
    axis.set_ylabel("Accuracy")
    ece = expected_calibration_error(calibration)
    axis.set_title(f"Reliability diagram ({int(counts.sum())} images, ECE {100 * ece:.2f}%)")
    axis.legend(loc="upper left")
    return _save(figure, path)


def plot_risk_coverage(selective: dict[str, Any], path: str | Path) -> Path:
    """Plot the risk (error rate of the accepted images) against the coverage for every ranking of the `selective`
    entry of ``metrics.json`` (see ``grefel_hf.metrics.selective``), each labelled with its AURC; return the path."""
    rankings = selective.get("rankings") if isinstance(selective, dict) else None
    if not rankings:
        raise ValueError("selective-prediction metrics need at least one ranking with a curve")
    figure, (axis,) = _new_figure(6.0, 4.5)
    for name, summary in ordered_rankings(rankings):
        curve = summary["curve"]
        best = " (best)" if name == selective.get("best_ranking") else ""
        axis.plot(100 * np.asarray(curve["coverage"]), 100 * np.asarray(curve["risk"]),
                  label=f"{RANKING_NAMES.get(name, name)}{best}: AURC {100 * summary['aurc']:.2f} %")
    axis.set_xlim(0, 100)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("Coverage (% of images answered, most confident first)")
    axis.set_ylabel("Risk (% of answered images wrong)")
    ideal = selective.get("optimal_aurc")
    note = f", ideal ranking's AURC {100 * ideal:.2f} %" if ideal is not None else ""
    axis.set_title(f"Risk-coverage ({selective.get('num_images', '?')} images{note})", fontsize=10)
    axis.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def _read_log_history(trainer_state_json_path: str | Path) -> list[dict[str, Any]]:
    """Return the ``log_history`` list of a transformers ``trainer_state.json``."""
    path = Path(trainer_state_json_path)
    state = read_json_file(path, "trainer state file")
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{path}: expected a trainer_state.json with a 'log_history' list")
    return [entry for entry in history if isinstance(entry, dict)]


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every log entry that has a numeric ``key`` (x = step, else epoch, else index)."""
    steps, values = [], []
    for index, entry in enumerate(history):
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            steps.append(entry.get("step", entry.get("epoch", index)))
            values.append(float(value))
    return steps, values


def _plot_panel(axis: Any, history: list[dict[str, Any]], keys: Sequence[str], ylabel: str) -> int:
    """Plot every key of ``keys`` found in ``history`` on ``axis``; return how many were plotted."""
    plotted = 0
    for key in keys:
        steps, values = _series(history, key)
        if values:
            marker = "o" if len(values) < 30 else None
            axis.plot(steps, values, marker=marker, markersize=3, label=key)
            plotted += 1
    axis.set_xlabel("Step")
    axis.set_ylabel(ylabel)
    if plotted:
        axis.legend()
        axis.grid(alpha=0.3)
    else:
        axis.text(0.5, 0.5, f"no {ylabel.lower()} logged", ha="center", va="center", transform=axis.transAxes)
    return plotted


def plot_training_curves(trainer_state_json_path: str | Path, path: str | Path) -> Path:
    """Plot losses (train, eval, EMA eval) and eval accuracies from a ``trainer_state.json``; return the path.

    Keys missing from ``log_history`` (e.g. no EMA, no evaluation) are skipped; an empty panel says so.
    """
    history = _read_log_history(trainer_state_json_path)
    figure, (loss_axis, accuracy_axis) = _new_figure(11.0, 4.5, ncols=2)
    n_loss = _plot_panel(loss_axis, history, ["loss", "eval_loss", "eval_ema_loss"], "Loss")
    n_acc = _plot_panel(
        accuracy_axis, history, ["eval_accuracy", "eval_ema_accuracy", "eval_macro_f1", "eval_ema_macro_f1"],
        "Score",
    )
    if n_loss + n_acc == 0:
        logger.warning("%s has no loss or accuracy entries in log_history", trainer_state_json_path)
    loss_axis.set_title("Loss")
    accuracy_axis.set_title("Evaluation accuracy / macro-F1")
    return _save(figure, path)
