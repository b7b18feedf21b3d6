"""Selective prediction: how accuracy grows when a model may abstain on the faces it is least sure of.

A ranking orders the faces by a confidence score, most confident first; accepting the first k of N faces gives
coverage k / N and risk (errors among them) / k. The scores ranked here are the top class probability, the model's
reliability and their product. Definitions, exactly as computed:

- faces with equal scores keep their dataset order (a stable sort on the score, descending);
- accuracy at coverage c: the accuracy of the first k = ceil(c · N) faces (at least one); the threshold at c is the
  score of the k-th face, so `--min_score` (top probability) or `--min_reliability` set to it keeps those faces;
- AURC, the area under the risk-coverage curve: the mean of the risk over k = 1..N (lower is better);
  `optimal_aurc` is the AURC of the ideal ranking (every right answer before every wrong one), the floor any score
  can reach with these answers;
- at a threshold t (0.5, 0.6, ..., 0.9): the coverage and accuracy of the faces whose score is at least t, what
  `--min_score t` (top probability) or `--min_reliability t` gives (accuracy None when no face is kept).

`selective_prediction` returns the `selective` entry of `metrics.json`:

``coverages`` (list of float): the coverages of the table, from 1.0 down.
``rankings`` (dict name -> dict): per ranking, ``aurc``, ``accuracy_at`` and ``threshold_at`` (dicts keyed by the
    coverage written as a string, e.g. ``"0.8"``), ``at_threshold`` (dict keyed by the threshold as a string, each
    ``{"coverage", "accuracy"}``) and ``curve`` (``coverage`` and ``risk`` at coverage 1 %, 2 %, ..., 100 %, for
    the plot).
``best_ranking`` (str): the ranking with the lowest AURC (the first listed on a tie).
``optimal_aurc`` (float), ``num_images`` (int).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RANKINGS = ("top_probability", "reliability", "product")
"""The rankings `grefel-hf evaluate` compares, in its table's order."""

RANKING_NAMES = {"top_probability": "top probability", "reliability": "reliability",
                 "product": "top probability × reliability"}
"""How reports name each ranking."""

DEFAULT_COVERAGES = (1.0, 0.9, 0.8, 0.5)
"""The coverages of the selective-prediction table."""

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""The score thresholds whose coverage and accuracy are reported."""

CURVE_POINTS = 100
"""Points of the stored risk-coverage curve (coverage 1 %, 2 %, ..., 100 %)."""


def accepted_count(coverage: float, num_images: int) -> int:
    """k = ceil(coverage · N), at least 1: how many faces a coverage accepts."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"a coverage must be in (0, 1], got {coverage}")
    return max(1, math.ceil(coverage * num_images - 1e-9))


def risk_coverage_curve(correct: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coverage, risk, score) after accepting the first k = 1..N faces, ranked by `scores` descending (ties in
    dataset order)."""
    correct, scores = np.asarray(correct, dtype=bool), np.asarray(scores, dtype=np.float64)
    if correct.ndim != 1 or correct.shape != scores.shape or not correct.size:
        raise ValueError(f"correct and scores must be non-empty 1-D arrays of one length, got {correct.shape} and "
                         f"{scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("selective-prediction scores must be finite")
    order = np.argsort(-scores, kind="stable")
    accepted = np.arange(1, correct.size + 1)
    risk = np.cumsum(~correct[order]) / accepted
    return accepted / correct.size, risk, scores[order]


def at_threshold(correct: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Coverage and accuracy of the faces whose score is at least `threshold` (accuracy None when none is)."""
    kept = np.asarray(scores) >= threshold
    accuracy = float(np.asarray(correct, dtype=bool)[kept].mean()) if kept.any() else None
    return {"coverage": float(kept.mean()), "accuracy": accuracy}


def ranking_summary(correct: np.ndarray, scores: np.ndarray, coverages: Sequence[float] = DEFAULT_COVERAGES,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """AURC, accuracy and threshold at each coverage, coverage and accuracy at each threshold, and the curve at
    `CURVE_POINTS` coverages, of one ranking."""
    coverage, risk, ranked = risk_coverage_curve(correct, scores)
    count = coverage.size
    at = {str(c): accepted_count(c, count) - 1 for c in coverages}
    points = [accepted_count(i / CURVE_POINTS, count) - 1 for i in range(1, CURVE_POINTS + 1)]
    return {
        "aurc": float(risk.mean()),
        "accuracy_at": {key: float(1.0 - risk[i]) for key, i in at.items()},
        "threshold_at": {key: float(ranked[i]) for key, i in at.items()},
        "at_threshold": {str(t): at_threshold(correct, scores, t) for t in thresholds},
        "curve": {"coverage": [float(coverage[i]) for i in points], "risk": [float(risk[i]) for i in points]},
    }


def optimal_aurc(correct: np.ndarray) -> float:
    """The AURC of the ideal ranking of these answers: every right answer before every wrong one."""
    errors = np.sort(~np.asarray(correct, dtype=bool))  # the right answers (False) first
    return float((np.cumsum(errors) / np.arange(1, errors.size + 1)).mean())


def ranking_scores(probs: np.ndarray, reliability: np.ndarray | None) -> dict[str, np.ndarray]:
    """The scores of `RANKINGS` that these outputs give: the top probability always, reliability and the product
    when a reliability is given."""
    top = np.asarray(probs, dtype=np.float64).max(axis=1)
    if reliability is None:
        return {"top_probability": top}
    reliability = np.asarray(reliability, dtype=np.float64)
    return {"top_probability": top, "reliability": reliability, "product": top * reliability}


def ordered_rankings(rankings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The `(name, summary)` pairs of a `rankings` entry in `RANKINGS` order (a metrics.json read back may have
    them sorted by name), any other ranking after them."""
    known = [name for name in RANKINGS if name in rankings]
    return [(name, rankings[name]) for name in known + sorted(set(rankings) - set(known))]


def selective_prediction(correct: np.ndarray, scores: Mapping[str, np.ndarray],
                         coverages: Sequence[float] = DEFAULT_COVERAGES) -> dict[str, Any]:
    """The `selective` entry of `metrics.json` (see the module docstring) for answers `correct` (N,) and one score
    array (N,) per ranking name."""
    if not scores:
        raise ValueError("give at least one ranking score")
    rankings = {name: ranking_summary(correct, values, coverages) for name, values in scores.items()}
    return {
        "num_images": int(np.asarray(correct).size),
        "coverages": [float(c) for c in coverages],
        "rankings": rankings,
        "best_ranking": min(rankings, key=lambda name: rankings[name]["aurc"]),
        "optimal_aurc": optimal_aurc(correct),
    }


__all__ = ["CURVE_POINTS", "DEFAULT_COVERAGES", "DEFAULT_THRESHOLDS", "RANKINGS", "RANKING_NAMES", "accepted_count",
           "at_threshold", "optimal_aurc", "ordered_rankings", "ranking_scores", "ranking_summary", "risk_coverage_curve",
           "selective_prediction"]
