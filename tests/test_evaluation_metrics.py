"""Tests for grefel_hf.metrics.classification against independent, loop-based computations."""

import json
import math

import numpy as np
import pytest

from grefel_hf.metrics.classification import (
    as_variants,
    calibration_bins,
    compute_classification_metrics,
    flat_summary,
    hard_label_metrics,
    read_metrics_json,
    write_metrics_json,
)

NAMES = ["angry", "happy", "sad"]
# Hand-made example: confusion rows (true) angry [2, 1, 1], happy [1, 2, 0], sad [0, 1, 2].
REFS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]


def loop_reference(refs, preds, num_classes):
    """Scores computed the slow, obvious way, independently of the module under test."""
    n = len(refs)
    correct = sum(1 for r, p in zip(refs, preds, strict=True) if r == p)
    precision, recall, f1, support = [], [], [], []
    for c in range(num_classes):
        tp = sum(1 for r, p in zip(refs, preds, strict=True) if r == c and p == c)
        n_pred = sum(1 for p in preds if p == c)
        n_true = sum(1 for r in refs if r == c)
        prec = tp / n_pred if n_pred else None
        rec = tp / n_true if n_true else None
        if n_pred == 0 and n_true == 0:
            f = None
        elif not prec or not rec:
            f = 0.0
        else:
            f = 2 * prec * rec / (prec + rec)
        precision.append(prec)
        recall.append(rec)
        f1.append(f)
        support.append(n_true)
    present = [f for f in f1 if f is not None]
    weighted = sum(f * s for f, s in zip(f1, support, strict=True) if f is not None) / n
    recalled = [r for r in recall if r is not None]
    return {"accuracy": correct / n, "precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": sum(present) / len(present), "weighted_f1": weighted,
            "balanced_accuracy": sum(recalled) / len(recalled)}


def loop_ece(confidences, correct, n_bins):
    """ECE with an explicit loop over bins (lo, hi]; confidence 0 goes to the first bin."""
    n = len(confidences)
    ece = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidences[i] for i in members) / len(members)
            ece += len(members) / n * abs(acc - conf)
    return ece


def one_hot_probs(preds, num_classes, confidence):
    """Probabilities with ``confidence`` on the predicted class and the rest spread evenly."""
    probs = np.full((len(preds), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(preds)), preds] = confidence
    return probs


def test_hand_made_example_matches_loop_reference():
    ref = loop_reference(REFS, PREDS, 3)
    got = hard_label_metrics(REFS, PREDS, label_names=NAMES)
    assert got["num_images"] == 10
    assert got["accuracy"] == pytest.approx(ref["accuracy"])
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert got["weighted_f1"] == pytest.approx(ref["weighted_f1"])
    assert got["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    for i, name in enumerate(NAMES):
        scores = got["per_class"][name]
        assert scores["precision"] == pytest.approx(ref["precision"][i])
        assert scores["recall"] == pytest.approx(ref["recall"][i])
        assert scores["accuracy"] == pytest.approx(ref["recall"][i])
        assert scores["f1"] == pytest.approx(ref["f1"][i])
        assert scores["support"] == ref["support"][i]


def test_random_predictions_match_loop_reference():
    rng = np.random.default_rng(1)
    refs = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 5))
    logits[np.arange(300), refs] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = compute_classification_metrics(refs, probs, n_bins=10)
    preds = probs.argmax(axis=1)
    ref = loop_reference(refs.tolist(), preds.tolist(), 5)
    assert got["accuracy"] == pytest.approx(ref["accuracy"])
    assert got["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert got["weighted_f1"] == pytest.approx(ref["weighted_f1"])
    assert got["balanced_accuracy"] == pytest.approx(ref["balanced_accuracy"])
    correct = (preds == refs).tolist()
    assert got["ece"] == pytest.approx(loop_ece(probs.max(axis=1).tolist(), correct, 10))
    assert got["labels"] == [f"class_{i}" for i in range(5)]


def test_absent_class_is_undefined_not_zero():
    # Class 2 never occurs and is never predicted: it must not drag macro-F1 down.
    got = hard_label_metrics([0, 0, 1, 1], [0, 1, 1, 1], label_names=NAMES)
    ref = loop_reference([0, 0, 1, 1], [0, 1, 1, 1], 3)
    assert got["per_class"]["sad"] == {"precision": None, "recall": None, "f1": None, "accuracy": None,
                                       "support": 0}
    assert got["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert got["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert got["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # the class without images is left out


def test_balanced_accuracy_counts_every_class_alike():
    # 90 of class 0 all right, 10 of class 1 all called class 0: accuracy 0.9, balanced accuracy 0.5.
    got = hard_label_metrics([0] * 90 + [1] * 10, [0] * 100, num_classes=2)
    assert got["accuracy"] == pytest.approx(0.9)
    assert got["balanced_accuracy"] == pytest.approx(0.5)
    assert flat_summary(got)["balanced_accuracy"] == pytest.approx(0.5)


def test_ece_of_perfectly_calibrated_predictions_is_zero():
    # Three confidence levels in three different bins; in each, the accuracy equals the confidence.
    conf_levels = [(0.6, 5, 3), (0.7, 10, 7), (0.75, 4, 3)]
    labels, probs = [], []
    for confidence, count, n_correct in conf_levels:
        for i in range(count):
            labels.append(0 if i < n_correct else 1)
            probs.append([confidence, 1 - confidence])
    got = compute_classification_metrics(labels, probs)
    assert got["ece"] == pytest.approx(0.0, abs=1e-12)
    calibration = got["calibration"]
    filled = [b for b, count in enumerate(calibration["bin_count"]) if count]
    assert [calibration["bin_count"][b] for b in filled] == [5, 10, 4]
    assert [calibration["bin_accuracy"][b] for b in filled] == pytest.approx([0.6, 0.7, 0.75])
    assert [calibration["bin_confidence"][b] for b in filled] == pytest.approx([0.6, 0.7, 0.75])


def test_ece_of_overconfident_predictions():
    # Every confidence is 0.9 but only 6 of 10 predictions are right: ECE = |0.6 - 0.9| = 0.3.
    labels = [0] * 6 + [1] * 4
    got = compute_classification_metrics(labels, one_hot_probs([0] * 10, 2, 0.9))
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["ece"] == pytest.approx(0.3)
    calibration = got["calibration"]
    assert calibration["n_bins"] == 15
    assert len(calibration["bin_edges"]) == 16
    assert sum(calibration["bin_count"]) == 10
    bin_of_09 = int(math.ceil(0.9 * 15)) - 1
    assert calibration["bin_count"][bin_of_09] == 10
    assert calibration["bin_accuracy"][bin_of_09] == pytest.approx(0.6)
    assert calibration["bin_accuracy"][0] is None


def test_bin_edges_are_right_closed():
    bins = calibration_bins(np.array([0.0, 0.5, 0.51, 1.0]), np.array([True, True, False, True]), n_bins=2)
    assert bins["bin_count"] == [2, 2]
    assert bins["bin_accuracy"] == [1.0, 0.5]


def test_mean_reliability_of_correct_and_wrong():
    labels = [0, 0, 1, 1]
    probs = one_hot_probs([0, 1, 1, 0], 2, 0.8)
    got = compute_classification_metrics(labels, probs, reliability=[0.9, 0.2, 0.7, 0.4])
    assert got["mean_reliability_correct"] == pytest.approx((0.9 + 0.7) / 2)
    assert got["mean_reliability_wrong"] == pytest.approx((0.2 + 0.4) / 2)
    without = compute_classification_metrics(labels, probs)
    assert without["mean_reliability_correct"] is None
    all_right = compute_classification_metrics([0, 1], one_hot_probs([0, 1], 2, 0.8), reliability=[[0.5], [0.7]])
    assert all_right["mean_reliability_wrong"] is None
    assert all_right["mean_reliability_correct"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("labels", "probs", "kwargs", "message"),
    [
        ([0, 3], [[0.5, 0.5], [0.5, 0.5]], {}, "outside the label set"),
        ([0, -1], [[0.5, 0.5], [0.5, 0.5]], {}, "outside the label set"),
        ([0, 1], [[0.5, 0.6], [0.5, 0.5]], {}, "sum to 1"),
        ([0, 1], [[2.0, -1.0], [0.5, 0.5]], {}, "non-negative"),
        ([], np.zeros((0, 2)), {}, "non-empty"),
        ([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]], {}, "shape"),
        ([0.0, 1.0], [[0.5, 0.5], [0.5, 0.5]], {}, "integer"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"reliability": [0.5, 1.5]}, "reliability"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], {"label_names": ["a", "b", "c"]}, "label_names"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], {}, "NaN"),
    ],
)
def test_bad_input_raises_clear_value_error(labels, probs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_classification_metrics(labels, probs, **kwargs)


def test_metrics_json_round_trip_and_schema(tmp_path):
    metrics = compute_classification_metrics(REFS, one_hot_probs(PREDS, 3, 0.7), label_names=NAMES,
                                             reliability=np.linspace(0, 1, 10))
    path = write_metrics_json({"raw": metrics, "ema": metrics}, tmp_path / "out" / "metrics.json")
    loaded = read_metrics_json(path)
    assert loaded == json.loads(json.dumps({"raw": metrics, "ema": metrics}))
    assert set(as_variants(loaded)) == {"raw", "ema"}
    assert set(metrics) == {"num_images", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "ece",
                            "mean_reliability_correct",
                            "mean_reliability_wrong", "labels", "per_class", "confusion_matrix", "calibration",
                            "selective"}
    (tmp_path / "bad.json").write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(ValueError, match="missing metrics.json key"):
        read_metrics_json(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_metrics_json(tmp_path / "nope.json")


def test_flat_summary_keys():
    metrics = compute_classification_metrics(REFS, one_hot_probs(PREDS, 3, 0.7), label_names=NAMES)
    summary = flat_summary(metrics)
    assert summary["accuracy"] == pytest.approx(0.6)
    assert summary["ece"] == pytest.approx(metrics["ece"])
    assert summary["accuracy_angry"] == pytest.approx(0.5)
    assert summary["accuracy_happy"] == pytest.approx(2 / 3)
    assert "ece" not in flat_summary(hard_label_metrics(REFS, PREDS))
